# Socket wrapper collector for applications on boards: a drop-in socket
# whose connect/accept/close are reported to the agent.
import io
import socket as _socket

import errno

from . import ipaddr

# a non-blocking connect that has not finished yet (lwIP and POSIX)
_PENDING = (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN)


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
        self._port = 0

    def _report(self, addr, inbound, port=None):
        # decode here: a unix-port sockaddr is 16 raw bytes, which the agent
        # would otherwise take for an IPv6 address
        try:
            remote, rport = ipaddr.from_sockaddr(addr)
        except Exception as e:
            self._agent._fault("socket", e)
            return False
        self._agent.connection_opened(remote, rport if port is None else port, inbound)
        return True

    def bind(self, addr):
        """socket.bind(addr); the port is kept to name the service in the
        findings of connections accept() takes on it."""
        self._sock.bind(addr)
        try:
            self._port = ipaddr.from_sockaddr(addr)[1]
        except Exception:
            self._port = 0

    def connect(self, addr):
        """socket.connect(addr), reported to the agent before it is tried.
        A failed connect is uncounted again; one still in progress on a
        non-blocking socket (EINPROGRESS) stays counted until close(). A
        connected UDP socket connecting elsewhere is one connection with a
        new destination, not a second connection."""
        a = self._agent
        if self._counted:
            self._counted = False
            a.connection_closed()
        if not self._report(addr, False):
            self._sock.connect(addr)   # unknown address family: not watched
            return
        try:
            self._sock.connect(addr)
        except OSError as e:
            if e.args and e.args[0] in _PENDING:
                self._counted = True
            else:
                a.connection_closed()
            raise
        except Exception:
            a.connection_closed()
            raise
        self._counted = True

    def accept(self):
        """socket.accept(); the connection is reported as inbound, with the
        device's own (bound) port as its port, and returned wrapped."""
        s, addr = self._sock.accept()
        w = MonitoredSocket(self._agent, s)
        w._counted = self._report(addr, True, self._port)
        return w, addr

    def close(self):
        """socket.close(); a counted connection stops being active."""
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
        """Stream protocol (for TLS): the wrapped socket's readinto."""
        return self._sock.readinto(buf) if n < 0 else self._sock.readinto(buf, n)

    def write(self, buf):
        """Stream protocol (for TLS): the wrapped socket's write."""
        return self._sock.write(buf)

    def ioctl(self, req, arg):
        """Stream protocol: close (4) and poll (3) requests from a TLS
        layer; others return -1 (not supported)."""
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
        """The wrapped socket's file descriptor (unix port)."""
        return self._sock.fileno()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def socket(agent, *args):
    """A new MonitoredSocket: socket(agent[, af, type, proto])."""
    return MonitoredSocket(agent, _socket.socket(*args))
