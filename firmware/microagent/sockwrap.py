# Socket wrapper collector for applications on boards: a drop-in socket
# whose connect/accept/close are reported to the agent.
import io
import socket as _socket

from . import ipaddr


class MonitoredSocket(io.IOBase):
    """A socket that reports its connections to an agent.

    Behaves as the socket it wraps (every other attribute is passed
    through) and is a stream, so ssl/tls.wrap_socket() accepts it.
    connect(addr) reports the attempt before connecting, so a connection to
    a suspicious address is reported even when it fails; only a connection
    that succeeded counts as active until close().
    """

    def __init__(self, agent, sock):
        self._agent = agent
        self._sock = sock
        self._counted = False

    def _report(self, addr, inbound):
        # decode here: a unix-port sockaddr is 16 raw bytes, which the agent
        # would otherwise take for an IPv6 address
        try:
            remote, port = ipaddr.from_sockaddr(addr)
        except Exception as e:
            self._agent._fault("socket", e)
            return False
        self._agent.connection_opened(remote, port, inbound)
        return True

    def connect(self, addr):
        a = self._agent
        if not self._report(addr, False):
            self._sock.connect(addr)   # unknown address family: not watched
            return
        try:
            self._sock.connect(addr)
        except Exception:
            a.connection_closed()
            raise
        self._counted = True

    def accept(self):
        s, addr = self._sock.accept()
        w = MonitoredSocket(self._agent, s)
        w._counted = self._report(addr, True)
        return w, addr

    def close(self):
        if self._counted:
            self._counted = False
            self._agent.connection_closed()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # stream protocol, so TLS can wrap this object
    def readinto(self, buf, n=-1):
        return self._sock.readinto(buf) if n < 0 else self._sock.readinto(buf, n)

    def write(self, buf):
        return self._sock.write(buf)

    def ioctl(self, req, arg):
        # py/stream.h: MP_STREAM_POLL = 3, MP_STREAM_CLOSE = 4. A TLS layer
        # closes and polls its underlying stream through these.
        if req == 4:
            self.close()
            return 0
        if req == 3:
            import select
            p = select.poll()
            p.register(self._sock, arg)
            r = p.poll(0)
            return r[0][1] if r else 0
        return -1

    def fileno(self):
        return self._sock.fileno()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def socket(agent, *args):
    """A new MonitoredSocket: socket(agent[, af, type, proto])."""
    return MonitoredSocket(agent, _socket.socket(*args))
