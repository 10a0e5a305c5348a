# PEM (RFC 7468) certificate blocks read for x509.py: base64 validated
# character by character (binascii.a2b_base64 alone skips bad ones) and
# decoded line by line into one reused DER buffer. A separate module so a
# device that only meets DER (TLS peers) does not load it.
import binascii

from . import der
from .der import DERError
from .x509 import _show, room

_BEGIN = b"-----BEGIN "
_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_CERT_END = b"-----END CERTIFICATE-----"
_LINE = 128  # file read buffer; a longer line is read in pieces


class BufLines:
    # Lines of a buffer without copying: after next() is True the line is
    # buf[s:e] (no newline); bol: it starts a line. left(): input bytes
    # from the current line on.
    def __init__(self, mv):
        self.buf = mv
        self.view = mv
        self.s = 0
        self.e = 0
        self.bol = True
        self._p = 0

    def next(self):
        mv = self.buf
        p = self._p
        n = len(mv)
        if p >= n:
            return False
        j = p
        while j < n and mv[j] != 10:
            j += 1
        self.s = p
        self.e = j
        self._p = j + 1
        return True

    def left(self):
        return len(self.buf) - self.s


class FileLines:
    # The same over a file, through one fixed buffer of _LINE bytes.
    def __init__(self, f, size):
        self.f = f
        self.size = size
        self.buf = bytearray(_LINE)
        self._mv = self.view = memoryview(self.buf)
        self.s = 0
        self.e = 0
        self.bol = True
        self._n = 0  # bytes in buf
        self._p = 0  # next unread byte in buf
        self._base = 0  # file offset of buf[0]
        self._eof = False
        self._eol = True  # the previous piece ended its line

    def next(self):
        buf = self.buf
        if self._p >= self._n:
            self._fill()
            if self._n == 0:
                return False
        j = self._p
        while j < self._n and buf[j] != 10:
            j += 1
        if j == self._n and not self._eof and self._p > 0:
            # the line goes on past the buffer: move it to the front, read on
            self._fill()
            j = self._p
            while j < self._n and buf[j] != 10:
                j += 1
        self.bol = self._eol
        self.s = self._p
        self.e = j
        self._eol = j < self._n or self._eof
        self._p = j + 1 if j < self._n else j
        return True

    def _fill(self):
        # keep the unread tail, then fill the rest of the buffer
        buf = self.buf
        k = self._n - self._p
        for i in range(k):
            buf[i] = buf[self._p + i]
        self._base += self._p
        self._p = 0
        r = self.f.readinto(self._mv[k:]) if not self._eof else 0
        if not r:
            self._eof = True
            r = 0
        self._n = k + r

    def left(self):
        return self.size - self._base - self.s


def _lstrip(buf, s, e):
    while s < e and (buf[s] == 32 or buf[s] == 9):
        s += 1
    return s


def _rstrip(buf, s, e):
    while e > s and buf[e - 1] in (13, 32, 9):
        e -= 1
    return e


class _Body:
    # base64 bodies of CERTIFICATE blocks, validated character by
    # character (binascii.a2b_base64 would skip bad ones) and decoded a
    # line at a time, straight from the line buffer, into one buffer
    # reused from certificate to certificate (grown to the largest DER
    # size, known from the first decoded bytes and checked against what
    # the rest of the input can hold before anything is allocated for it):
    # a file of many certificates does not fragment the heap
    def __init__(self, src):
        self.src = src
        self.carry = bytearray(4)  # a quantum split across lines
        self.store = None

    def begin(self):
        self.nc = 0  # characters in carry
        self.total = 0  # characters seen
        self.pad = 0
        self.out = None  # the DER being decoded: store or a view of it
        self.head = None  # the first decoded bytes, until the DER size is known
        self.filled = 0

    def add(self, buf, s, e, lineno):
        for i in range(s, e):
            ch = buf[i]
            if ch == 61:  # '='
                self.pad += 1
                if self.pad > 2:
                    raise DERError("PEM line %d: too much '=' padding" % lineno)
            elif self.pad:
                raise DERError("PEM line %d: base64 after the '=' padding" % lineno)
            elif not (65 <= ch <= 90 or 97 <= ch <= 122 or 48 <= ch <= 57 or ch == 43 or ch == 47):
                raise DERError("PEM line %d: invalid base64 character %s at column %d"
                               % (lineno, _show(buf, i, i + 1), i - self.src.s + 1))
        self.total += e - s
        carry = self.carry
        while self.nc and s < e:
            carry[self.nc] = buf[s]
            self.nc += 1
            s += 1
            if self.nc == 4:
                self.nc = 0
                self._put(binascii.a2b_base64(carry))
        k = s + (e - s) // 4 * 4
        if k > s:
            self._put(binascii.a2b_base64(self.src.view[s:k]))
        while k < e:
            carry[self.nc] = buf[k]
            self.nc += 1
            k += 1

    def _put(self, d, last=False):
        out = self.out
        if out is None:
            if self.head is not None:
                d = self.head + d
            if len(d) < 6 and not last:
                self.head = d
                return
            self.head = None
            r = der.Reader(d)
            r.header(0, len(d))
            total = r.end
            most = len(d) + (self.src.left() * 3) // 4
            if total > most:
                raise DERError("PEM: DER length %d runs past the end (the input holds at most %d bytes)" % (total, most))
            if total < len(d):
                raise DERError("PEM: %d bytes after the certificate" % (len(d) - total))
            out = self.out = room(self, total)
        f = self.filled
        if f + len(d) > len(out):
            raise DERError("PEM: %d bytes after the certificate" % (f + len(d) - len(out)))
        out[f:f + len(d)] = d
        self.filled = f + len(d)

    def finish(self, lineno):
        if self.nc:
            raise DERError("PEM line %d: base64 length not a multiple of 4" % lineno)
        if not self.total:
            raise DERError("PEM line %d: empty CERTIFICATE block" % lineno)
        if self.out is None:
            self._put(self.head, True)
        out = self.out
        if self.filled != len(out):
            raise DERError("PEM: truncated (DER length %d, base64 holds %d)" % (len(out), self.filled))
        self.out = None
        return out


def blocks(src):
    """Each CERTIFICATE block's DER (a bytearray or a view of one, reused:
    read it before asking for the next) from a line source (BufLines or
    FileLines). Raises DERError."""
    lineno = 0
    found = False
    skip = None  # END line of a non-certificate block being skipped
    body = _Body(src)
    inside = False
    while src.next():
        buf = src.buf
        if src.bol:
            lineno += 1
        s = _lstrip(buf, src.s, src.e)
        e = _rstrip(buf, s, src.e)
        marker = src.bol and e - s >= 5 and buf[s] == 45 and buf[s + 1] == 45  # "--"
        if inside:
            if marker:
                if not der.equals(buf, s, e, _CERT_END):
                    raise DERError("PEM line %d: expected -----END CERTIFICATE-----" % lineno)
                out = body.finish(lineno)
                inside = False
                found = True
                yield out
                out = None
            else:
                body.add(buf, s, e, lineno)
        elif skip is not None:
            if marker and der.equals(buf, s, e, skip):
                skip = None
        elif marker and e - s >= len(_BEGIN) and der.equals(buf, s, s + len(_BEGIN), _BEGIN):
            if der.equals(buf, s, e, _CERT_BEGIN):
                body.begin()
                inside = True
            elif e - s > 16 and der.equals(buf, e - 5, e, b"-----"):
                # another PEM block (a private key, parameters): skip it
                skip = b"-----END " + bytes(buf[s + 11:e])
            else:
                raise DERError("PEM line %d: malformed BEGIN line" % lineno)
        # any other text outside a block is explanatory (RFC 7468 5.2)
    if inside:
        raise DERError("PEM: no -----END CERTIFICATE----- line")
    if skip is not None:
        raise DERError("PEM: no %s line" % skip.decode())
    if not found:
        raise DERError("neither DER nor a PEM CERTIFICATE block")
