# A tiny DER tree (de)serializer for making malformed variants of real
# certificates in tests, on CPython and MicroPython alike. Not strict:
# it reads what the fixtures hold and writes what it is told to.


def parse(b, p=0, end=None):
    """[tag, content, header_len] nodes of b[p:end]; content is bytes for a
    primitive element, a list of nodes for a constructed one."""
    end = len(b) if end is None else end
    out = []
    while p < end:
        t = b[p]
        n = b[p + 1]
        q = p + 2
        if n & 0x80:
            k = n & 0x7F
            n = 0
            for i in range(q, q + k):
                n = (n << 8) | b[i]
            q += k
        out.append([t, parse(b, q, q + n) if t & 0x20 else bytes(b[q:q + n]), q - p])
        p = q + n
    return out


def length(n):
    """The shortest DER length octets of n."""
    if n < 0x80:
        return bytes([n])
    k = 1
    while n >> (8 * k):
        k += 1
    return bytes([0x80 | k]) + n.to_bytes(k, "big")


def paths(nodes, pre=()):
    """Every node's path (a tuple of child indexes), parents first."""
    out = []
    for i in range(len(nodes)):
        p = pre + (i,)
        out.append(p)
        if isinstance(nodes[i][1], list):
            out += paths(nodes[i][1], p)
    return out


def node(nodes, path):
    for i in path[:-1]:
        nodes = nodes[i][1]
    return nodes[path[-1]]


def ser(nodes, target=None, form=None):
    """DER of the nodes; the node at path `target` is written in `form`:
    "long" (its length in one more octet than needed: not minimal),
    "indef" (indefinite length and end-of-contents octets), "junk" (a
    constructed node's content followed by one 0x00 byte) or bytes (new
    content for a primitive node). Built as one join of small parts (a
    64 KB heap makes hundreds of these)."""
    out = []
    _emit(nodes, target, form, (), out)
    return b"".join(out)


def _body_len(node, target, form, p):
    t, c, h = node
    f = form if p == target else None
    if isinstance(f, bytes):
        n = len(f)
    elif isinstance(c, list):
        n = 0
        for i in range(len(c)):
            n += _total(c[i], target, form, p + (i,))
    else:
        n = len(c)
    return n + 1 if f == "junk" else n


def _total(node, target, form, p):
    n = _body_len(node, target, form, p)
    f = form if p == target else None
    if f == "indef":
        return 2 + n + 2
    if f == "long":
        return 2 + len(length(n)) + n
    return 1 + len(length(n)) + n


def _emit(nodes, target, form, pre, out):
    for i in range(len(nodes)):
        t, c, h = nodes[i]
        p = pre + (i,)
        f = form if p == target else None
        n = _body_len(nodes[i], target, form, p)
        if f == "indef":
            out.append(bytes([t, 0x80]))
        elif f == "long":
            k = len(length(n))  # one octet more than the shortest form needs
            out.append(bytes([t, 0x80 | k]) + n.to_bytes(k, "big"))
        else:
            out.append(bytes([t]) + length(n))
        if isinstance(f, bytes):
            out.append(f)
        elif isinstance(c, list):
            _emit(c, target, form, p, out)
        else:
            out.append(c)
        if f == "junk":
            out.append(b"\x00")
        elif f == "indef":
            out.append(b"\x00\x00")
