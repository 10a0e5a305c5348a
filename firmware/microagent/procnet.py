# Unix-port collector: reads /proc/net/{tcp,tcp6,udp,udp6} each interval and
# turns what changed into connection_opened/closed events, so the agent can
# watch the whole machine (proc(5), "/proc/net/tcp").
import sys
from array import array

# TCP states that hold a connection (include/net/tcp_states.h): ESTABLISHED,
# SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING.
# TIME_WAIT, CLOSE and LISTEN do not.
_OPEN = (0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0B)
LISTEN = 0x0A
_LITTLE = sys.byteorder == "little"


def _hex(text):
    # int(text, 16) also takes "+", "-", "_" and spaces: /proc/net never does
    for c in text:
        if c not in "0123456789ABCDEFabcdef":
            raise ValueError("not hex")
    return int(text, 16)


def _hexaddr(h):
    # /proc/net prints each 32-bit word of the address in host byte order.
    n = len(h)
    if n not in (8, 32):
        raise ValueError("address of %d hex digits" % n)
    out = bytearray(n // 2)
    for w in range(0, n, 8):
        for i in range(4):
            out[w // 2 + (3 - i if _LITTLE else i)] = _hex(h[w + 2 * i:w + 2 * i + 2])
    return bytes(out)


def _endpoint(text):
    c = text.find(":")
    if c < 0 or c + 5 != len(text):
        raise ValueError("endpoint must be ADDRESS:PORT in hex")
    return _hexaddr(text[:c]), _hex(text[c + 1:])


def parse_line(line):
    """Parse one entry line of /proc/net/tcp, tcp6, udp or udp6.

    line: str. Returns (local address bytes, local port, remote address
    bytes, remote port, state int, inode int); address bytes are 4 or 16
    long in network order (IPv4-mapped addresses are left as 16 bytes).
    Raises ValueError for a line that is not an entry (header included).
    """
    f = line.split()
    if len(f) < 10 or not f[0].endswith(":"):
        raise ValueError("not a socket entry")
    la, lp = _endpoint(f[1])
    ra, rp = _endpoint(f[2])
    if len(f[3]) != 2:
        raise ValueError("bad state")
    for c in f[9]:
        if c not in "0123456789":
            raise ValueError("bad inode")
    return la, lp, ra, rp, _hex(f[3]), int(f[9])


def _key(udp, la, lp, ra, rp):
    # FNV-1a over protocol, ports and both addresses, kept to 62 bits so it
    # is a small int on a 64-bit unix port and fits array("q"); never 0.
    h = 0xCBF29CE484222325 ^ (udp << 32 | lp << 16 | rp)
    for b in la:
        h = ((h ^ b) * 0x100000001B3) & 0x3FFFFFFFFFFFFFFF
    for b in ra:
        h = ((h ^ b) * 0x100000001B3) & 0x3FFFFFFFFFFFFFFF
    return h or 1


def _zero(a):
    for b in a:
        if b:
            return False
    return True


class SocketTable:
    """A fixed-capacity set of socket keys (non-zero ints) with a poll
    generation each: open addressing with linear probing and backward-shift
    deletion, all memory taken once at start, so a busy machine can neither
    grow nor fragment the heap (a dict resize needs one large free block).

    SocketTable(capacity): holds up to `capacity` keys.
    """

    def __init__(self, capacity):
        size = 8
        while size < 2 * capacity:
            size <<= 1
        self.capacity = capacity
        self.mask = size - 1
        self.keys = array("q", bytes(8 * size))
        self.gens = bytearray(size)
        self.stale = array("q", bytes(8 * capacity))
        self.count = 0

    def _home(self, k):
        return (k ^ (k >> 13) ^ (k >> 29)) & self.mask

    def mark(self, k, gen):
        """Set k's generation; returns True if k was present, False if it
        was added, None if it is absent and the table is full."""
        keys = self.keys
        i = self._home(k)
        while True:
            v = keys[i]
            if v == k:
                self.gens[i] = gen
                return True
            if v == 0:
                break
            i = (i + 1) & self.mask
        if self.count >= self.capacity:
            return None
        keys[i] = k
        self.gens[i] = gen
        self.count += 1
        return False

    def sweep(self, gen):
        """Remove every key not marked with `gen`; returns how many."""
        keys = self.keys
        gens = self.gens
        n = 0
        for i in range(len(keys)):
            if keys[i] and gens[i] != gen:
                self.stale[n] = keys[i]
                n += 1
        for j in range(n):
            self._delete(self.stale[j])
        return n

    def _delete(self, k):
        keys = self.keys
        mask = self.mask
        i = self._home(k)
        while keys[i] != k:
            if keys[i] == 0:
                return
            i = (i + 1) & mask
        j = i
        while True:
            keys[i] = 0
            while True:
                j = (j + 1) & mask
                if keys[j] == 0:
                    self.count -= 1
                    return
                h = self._home(keys[j])
                # keys[j] may stay unless its home lies cyclically in (i, j]
                if (i < h <= j) if i <= j else (h > i or h <= j):
                    continue
                break
            keys[i] = keys[j]
            self.gens[i] = self.gens[j]
            i = j


class ProcNet:
    """Watch this machine's sockets through /proc/net.

    ProcNet(agent, root="/proc/net", limit=512). poll() reads the four
    tables and reports each connection that appeared
    (agent.connection_opened) and disappeared (agent.connection_closed).
    A TCP connection whose local port is a listening port is inbound, any
    other outbound; a UDP socket counts only when connected (it has a
    remote address). Unparseable lines are skipped and counted in
    `skipped`; connections beyond `limit` are not tracked (nor counted as
    active); `untracked` is the most seen in one poll (memory is fixed by
    `limit` at start, never by the machine). Connections shorter than the poll interval can be
    missed: use the socket wrapper where that matters.
    """

    TABLES = (("tcp", 0), ("tcp6", 0), ("udp", 1), ("udp6", 1))

    def __init__(self, agent, root="/proc/net", limit=512):
        self.agent = agent
        self.root = root
        self.limit = limit
        self.skipped = 0
        self.untracked = 0
        self.missing = []
        self._table = SocketTable(limit)
        self._gen = 0

    def _lines(self, name):
        try:
            f = open(self.root + "/" + name)
        except OSError:
            if name not in self.missing:
                self.missing.append(name)
            return
        try:
            f.readline()  # header
            while True:
                line = f.readline()
                if not line:
                    break
                yield line
        finally:
            f.close()

    def _listen_ports(self):
        ports = {}
        for name in ("tcp", "tcp6"):
            for line in self._lines(name):
                f = line.split()
                # state is field 3; only LISTEN rows matter in this pass
                if len(f) > 3 and f[3] == "0A":
                    try:
                        ports[_endpoint(f[1])[1]] = 1
                    except ValueError:
                        pass
        return ports

    def poll(self):
        """Read the tables once and report what changed. Never raises: a
        fault (MemoryError included) is one agent_error finding and the
        tracked state stays as it was."""
        try:
            self._poll()
        except Exception as e:
            self.agent._fault("procnet", e)

    def _poll(self):
        listen = self._listen_ports()
        gen = self._gen = (self._gen + 1) & 0xFF
        table = self._table
        over = 0
        for name, udp in self.TABLES:
            for line in self._lines(name):
                try:
                    la, lp, ra, rp, st, ino = parse_line(line)
                except Exception:  # whatever the line holds, skip it
                    self.skipped += 1
                    continue
                if udp:
                    if not rp or _zero(ra):
                        continue
                elif st not in _OPEN:
                    continue
                # keyed by its endpoints, not its inode: a socket keeps its
                # endpoints until it is gone, while its inode drops to 0 as
                # soon as the process closes it (FIN_WAIT2, orphans)
                key = _key(udp, la, lp, ra, rp)
                seen = table.mark(key, gen)
                if seen is None:
                    over += 1
                elif not seen:
                    inbound = not udp and lp in listen
                    # inbound: the service port is the port that matters
                    self.agent.connection_opened(ra, lp if inbound else rp, inbound)
        if over > self.untracked:
            self.untracked = over
        for i in range(table.sweep(gen)):
            self.agent.connection_closed()
