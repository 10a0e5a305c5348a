# IP address and CIDR parsing and matching for the device.
# socket.inet_pton exists on the unix port only, so addresses are parsed here.
# An address is bytes of length 4 (IPv4) or 16 (IPv6); an IPv4-mapped IPv6
# address (::ffff:a.b.c.d) is always turned into its 4-byte IPv4 form, so it
# matches IPv4 networks and prints as IPv4 (alerts.md).

from .platform import is_decimal

_HEX = "0123456789abcdef"
_MAPPED = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff"


def _v4(text, start, end, out, pos):
    # Strict dotted quad (RFC 6943 s3.1.1 "strict" form): exactly four decimal
    # parts, no leading zeros, each 0..255. Refuses 010.1.1.1, 0x0a.0.0.1, 10.1.
    part = 0
    val = 0
    digits = 0
    lead0 = False
    i = start
    while i <= end:
        c = text[i] if i < end else "."
        if c == ".":
            if digits == 0 or part > 3:
                raise ValueError("not a dotted-quad IPv4 address")
            out[pos + part] = val
            part += 1
            val = 0
            digits = 0
            lead0 = False
        elif "0" <= c <= "9":
            if lead0:
                raise ValueError("leading zero in IPv4 part (octal is ambiguous)")
            if digits == 0 and c == "0":
                lead0 = True
            val = val * 10 + ord(c) - 48
            digits += 1
            if val > 255:
                raise ValueError("IPv4 part above 255")
        else:
            raise ValueError("not a dotted-quad IPv4 address")
        i += 1
    if part != 4:
        raise ValueError("IPv4 address needs four decimal parts")


def _groups(s, last_may_be_v4):
    # ':'-separated 16-bit hex groups; the last may be a dotted quad.
    if not s:
        return []
    out = []
    parts = s.split(":")
    last = len(parts) - 1
    for idx in range(len(parts)):
        p = parts[idx]
        if idx == last and last_may_be_v4 and "." in p:
            b = bytearray(4)
            _v4(p, 0, len(p), b, 0)
            out.append(b[0] << 8 | b[1])
            out.append(b[2] << 8 | b[3])
            continue
        if not 1 <= len(p) <= 4:
            raise ValueError("IPv6 group must be 1 to 4 hex digits")
        v = 0
        for c in p:
            d = _HEX.find(c.lower())
            if d < 0:
                raise ValueError("bad hex digit in IPv6 address")
            v = v << 4 | d
        out.append(v)
    return out


def _v6(text, out):
    # RFC 4291 s2.2 text forms; no zone index (fe80::1%eth0), no brackets.
    dc = text.find("::")
    if dc >= 0:
        if text.find("::", dc + 1) >= 0:
            raise ValueError("more than one '::' in IPv6 address")
        left = _groups(text[:dc], False)
        right = _groups(text[dc + 2:], True)
        if len(left) + len(right) > 7:
            raise ValueError("'::' must stand for at least one group")
    else:
        left = _groups(text, True)
        right = ()
        if len(left) != 8:
            raise ValueError("IPv6 address needs eight groups or '::'")
    p = 0
    for v in left:
        out[p] = v >> 8
        out[p + 1] = v & 255
        p += 2
    p = 16 - 2 * len(right)
    for v in right:
        out[p] = v >> 8
        out[p + 1] = v & 255
        p += 2


def parse_ip(text):
    """Parse IP address text into its bytes.

    text: str, an IPv4 dotted quad ("10.1.2.3") or IPv6 text (RFC 4291 s2.2,
    "2001:db8::1", "::ffff:10.1.2.3").
    Returns bytes: 4 for IPv4 (an IPv4-mapped IPv6 address included), 16 for
    IPv6. Raises ValueError with the reason for anything else, including the
    ambiguous IPv4 forms inet_aton accepts ("010.1.1.1", "0x0a.0.0.1", "10.1").
    """
    if not isinstance(text, str) or not text:
        raise ValueError("empty or non-text address")
    if ":" in text:
        b = bytearray(16)
        _v6(text, b)
        if b[:12] == _MAPPED:
            return bytes(b[12:])
        return bytes(b)
    b = bytearray(4)
    _v4(text, 0, len(text), b, 0)
    return bytes(b)


def from_sockaddr(addr):
    """Address bytes of a socket address, or None if it has no IP.

    addr: a (host, port[, flow, scope]) tuple as lwIP ports use, or a raw
    struct sockaddr (bytes) as the unix port's getaddrinfo returns.
    Returns (address bytes, port); IPv4-mapped IPv6 becomes 4 bytes.
    Raises ValueError for a malformed address.
    """
    if isinstance(addr, tuple):
        return parse_ip(addr[0]), addr[1]
    b = bytes(addr)
    fam = b[0] | b[1] << 8  # sa_family is host order (little-endian hosts)
    port = b[2] << 8 | b[3]
    if fam == 2 and len(b) >= 8:
        return b[4:8], port
    if fam == 10 and len(b) >= 24:
        a = b[8:24]
        if a[:12] == _MAPPED:
            a = a[12:]
        return a, port
    raise ValueError("unsupported socket address family %d" % fam)


def format_ip(addr):
    """Canonical text of address bytes (alerts.md): IPv4 dotted decimal,
    IPv6 compressed lower case per RFC 5952 (longest run of two or more zero
    groups becomes '::', first run on a tie). An IPv4-mapped IPv6 address
    prints as IPv4. Raises ValueError for a length other than 4 or 16."""
    n = len(addr)
    if n == 16 and addr[:12] == _MAPPED:
        addr = addr[12:]
        n = 4
    if n == 4:
        return "%d.%d.%d.%d" % (addr[0], addr[1], addr[2], addr[3])
    if n != 16:
        raise ValueError("address must be 4 or 16 bytes")
    g = [addr[i] << 8 | addr[i + 1] for i in range(0, 16, 2)]
    best = -1
    blen = 1
    i = 0
    while i < 8:
        if g[i] == 0:
            j = i
            while j < 8 and g[j] == 0:
                j += 1
            if j - i > blen:
                best = i
                blen = j - i
            i = j
        else:
            i += 1
    if best < 0:
        return ":".join("%x" % v for v in g)
    left = ":".join("%x" % v for v in g[:best])
    right = ":".join("%x" % v for v in g[best + blen:])
    return left + "::" + right


def parse_network(text):
    """Parse a CIDR or single address (RFC 4632, RFC 4291 s2.3).

    text: "10.0.0.0/8", "2001:db8::/32", "203.0.113.7" (a /32 or /128).
    Returns (network bytes, prefix length, warning) where warning is None or
    a sentence saying host bits were set and cleared ("203.0.113.77/24" is
    read as 203.0.113.0/24, never as one host). An IPv4-mapped IPv6 network
    with a prefix of 96 or more becomes the IPv4 network it stands for.
    Raises ValueError for a bad address or prefix.
    """
    if not isinstance(text, str):
        raise ValueError("network must be text")
    slash = text.find("/")
    if slash < 0:
        a = parse_ip(text)
        return a, 8 * len(a), None
    head = text[:slash]
    ptext = text[slash + 1:]
    if len(ptext) > 3 or not is_decimal(ptext) or (len(ptext) > 1 and ptext[0] == "0"):
        raise ValueError("prefix length must be a decimal number without leading zeros")
    plen = int(ptext)
    a = parse_ip(head)
    if len(a) == 4 and ":" in head:
        # mapped network written in IPv6 form: ::ffff:10.0.0.0/104
        if plen < 96:
            raise ValueError("IPv4-mapped network needs a prefix of 96 or more")
        if plen > 128:
            raise ValueError("prefix length above 128")
        plen -= 96
    if plen > 8 * len(a):
        raise ValueError("prefix length above %d" % (8 * len(a)))
    net = bytearray(a)
    warn = None
    for i in range(len(net)):
        keep = plen - 8 * i
        if keep >= 8:
            continue
        mask = 0 if keep <= 0 else (0xFF << (8 - keep)) & 0xFF
        if net[i] & ~mask & 0xFF:
            net[i] &= mask
            warn = True
    net = bytes(net)
    if warn:
        warn = "%s has host bits set; read as %s/%d" % (text, format_ip(net), plen)
    return net, plen, warn


def in_network(addr, net, plen):
    """True if address bytes `addr` lie in network `net`/`plen` (same family
    only: 0.0.0.0/0 covers IPv4 and never IPv6). Allocates nothing."""
    if len(addr) != len(net):
        return False
    i = 0
    while plen >= 8:
        if addr[i] != net[i]:
            return False
        i += 1
        plen -= 8
    if plen:
        mask = (0xFF << (8 - plen)) & 0xFF
        return (addr[i] & mask) == net[i]
    return True


class NetList:
    """Networks packed for a small heap: IPv4 entries as 5 bytes (address,
    prefix) in one bytearray, IPv6 entries as 17 in another, instead of a
    tuple and a bytes object each (about 100 bytes apiece on a board).

    add(net, plen) appends; match(addr) is True if address bytes `addr`
    lie in any network of their family (allocates nothing); len() is the
    number of networks; items() lists them as (bytes, prefix) tuples.
    """

    def __init__(self, n4=0, n6=0):
        # sized up front when the counts are known: no growth, no copies
        self.v4 = bytearray(5 * n4)
        self.v6 = bytearray(17 * n6)
        self._n4 = 0
        self._n6 = 0

    def add(self, net, plen):
        """Append network bytes `net` (4 or 16) with prefix `plen`."""
        if len(net) == 4:
            b, off, n = self.v4, 5 * self._n4, 4
            self._n4 += 1
        else:
            b, off, n = self.v6, 17 * self._n6, 16
            self._n6 += 1
        if off + n + 1 > len(b):
            b.extend(bytes(n + 1))  # more than the sized capacity
        b[off:off + n] = net
        b[off + n] = plen

    def __len__(self):
        return self._n4 + self._n6

    def items(self):
        out = []
        for b, n, count in ((self.v4, 4, self._n4), (self.v6, 16, self._n6)):
            for off in range(0, count * (n + 1), n + 1):
                out.append((bytes(b[off:off + n]), b[off + n]))
        return out

    def match(self, addr):
        n = len(addr)
        if n == 4:
            b, end = self.v4, 5 * self._n4
        else:
            b, end = self.v6, 17 * self._n6
        step = n + 1
        off = 0
        while off < end:
            plen = b[off + n]
            i = 0
            while plen >= 8:
                if addr[i] != b[off + i]:
                    break
                i += 1
                plen -= 8
            else:
                if not plen or (addr[i] & ((0xFF << (8 - plen)) & 0xFF)) == b[off + i]:
                    return True
            off += step
        return False
