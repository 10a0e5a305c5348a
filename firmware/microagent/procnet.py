# Unix-port collector: reads /proc/net/{tcp,tcp6,udp,udp6} each interval and
# turns what changed into connection_opened/closed events, so the agent can
# watch the whole machine (proc(5), "/proc/net/tcp").
import sys

# TCP states that hold a connection (include/net/tcp_states.h): ESTABLISHED,
# SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING.
# TIME_WAIT, CLOSE and LISTEN do not.
_OPEN = (0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0B)
LISTEN = 0x0A
_LITTLE = sys.byteorder == "little"


def _hexaddr(h):
    # /proc/net prints each 32-bit word of the address in host byte order.
    n = len(h)
    if n not in (8, 32):
        raise ValueError("address of %d hex digits" % n)
    out = bytearray(n // 2)
    for w in range(0, n, 8):
        for i in range(4):
            b = int(h[w + 2 * i:w + 2 * i + 2], 16)
            out[w // 2 + (3 - i if _LITTLE else i)] = b
    return bytes(out)


def _endpoint(text):
    c = text.find(":")
    if c < 0:
        raise ValueError("endpoint without ':'")
    port = int(text[c + 1:], 16)
    if not 0 <= port <= 65535 or c + 5 != len(text):
        raise ValueError("bad port")
    return _hexaddr(text[:c]), port


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
    st = int(f[3], 16)
    return la, lp, ra, rp, st, int(f[9])


def _zero(a):
    for b in a:
        if b:
            return False
    return True


class ProcNet:
    """Watch this machine's sockets through /proc/net.

    ProcNet(agent, root="/proc/net"). poll() reads the four tables and
    reports each connection that appeared (agent.connection_opened) and
    disappeared (agent.connection_closed). A TCP connection whose local port
    is a listening port is inbound, any other outbound; a UDP socket counts
    only when connected (it has a remote address). Unparseable lines are
    skipped and counted in `skipped`. Connections shorter than the poll
    interval can be missed: use the socket wrapper where that matters.
    """

    TABLES = (("tcp", 0), ("tcp6", 0), ("udp", 1), ("udp6", 1))

    def __init__(self, agent, root="/proc/net", limit=4096):
        self.agent = agent
        self.root = root
        self.limit = limit  # most connections tracked (bounded state)
        self.skipped = 0
        self.missing = []
        self._seen = {}

    def _read(self):
        rows = []
        listen = {}
        for name, udp in self.TABLES:
            try:
                f = open(self.root + "/" + name)
            except OSError:
                if name not in self.missing:
                    self.missing.append(name)
                continue
            try:
                f.readline()  # header
                while True:
                    line = f.readline()
                    if not line:
                        break
                    try:
                        la, lp, ra, rp, st, ino = parse_line(line)
                    except (ValueError, IndexError):
                        self.skipped += 1
                        continue
                    if udp:
                        if rp and not _zero(ra):
                            rows.append((name, la, lp, ra, rp, False))
                    elif st == LISTEN:
                        listen[lp] = 1
                    elif st in _OPEN:
                        rows.append((name, la, lp, ra, rp, None))
            finally:
                f.close()
        return rows, listen

    def poll(self):
        """Read the tables once and report what changed. Never raises."""
        try:
            rows, listen = self._read()
        except Exception as e:
            self.agent._fault("procnet", e)
            return
        cur = {}
        for name, la, lp, ra, rp, inbound in rows:
            key = (name, la, lp, ra, rp)
            cur[key] = 1
            if key in self._seen or len(self._seen) >= self.limit:
                continue
            self._seen[key] = 1
            if inbound is None:
                inbound = lp in listen
            self.agent.connection_opened(ra, rp, inbound)
        gone = [k for k in self._seen if k not in cur]
        for k in gone:
            del self._seen[k]
            self.agent.connection_closed()
