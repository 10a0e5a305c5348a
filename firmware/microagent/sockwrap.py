# Socket wrapper collector for applications on boards: a drop-in socket
# whose connect/accept/close are reported to the agent.
import io
import socket as _socket


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

    def connect(self, addr):
        a = self._agent
        a.connection_opened(addr, 0)
        try:
            self._sock.connect(addr)
        except Exception:
            a.connection_closed()
            raise
        self._counted = True

    def accept(self):
        s, addr = self._sock.accept()
        w = MonitoredSocket(self._agent, s)
        self._agent.connection_opened(addr, 0, True)
        w._counted = True
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
        return self._sock.ioctl(req, arg)

    def fileno(self):
        return self._sock.fileno()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def socket(agent, *args):
    """A new MonitoredSocket: socket(agent[, af, type, proto])."""
    return MonitoredSocket(agent, _socket.socket(*args))
