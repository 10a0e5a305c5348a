# PEM (RFC 7468) certificate blocks read for x509.py: base64 validated
# character by character (binascii.a2b_base64 alone skips bad ones) and
# decoded line by line into one reused DER buffer, sized from the base64
# the block really holds (counted before anything is allocated). A
# separate module so a device that only meets DER (TLS peers) does not
# load it.
#
# A buffer and a file are read as the same sequence of pieces: a line
# (up to a newline) in chunks of at most _LINE bytes, so every decision
# and every error message is the same for both. Error messages give line
# numbers, columns and the one character that is not base64; the only
# text ever quoted from the input is a block's label, and only when it is
# 1 to 40 of A-Z, 0-9 and space (it can then be nothing but a label).
import binascii

from . import der
from .der import DERError
from .x509 import room

_BEGIN = b"-----BEGIN "
_DASHES = b"-----"
_LINE = 128  # longest piece of a line; the file buffer holds one more byte
_MAXLABEL = 40
# the labels read as certificates: OpenSSL writes and reads all three
_CERT = b"CERTIFICATE"
_X509 = b"X509 CERTIFICATE"
_TRUSTED = b"TRUSTED CERTIFICATE"


class BufLines:
    # Pieces of the lines of a buffer, without copying: after next() is
    # True the piece is buf[s:e] (no newline); bol: it starts a line; eol:
    # it ends one. mark()/rewind() return to the start of a line.
    def __init__(self, mv):
        self.buf = self.view = mv
        self.s = self.e = 0
        self.bol = self.eol = True
        self._p = 0

    def next(self):
        p = self._p
        if p >= len(self.buf):
            return False
        return self._cut(self.buf, p, len(self.buf))

    def _cut(self, buf, p, n):
        # the next piece of buf[p:n]: up to the newline or _LINE bytes
        self.bol = self.eol
        lim = p + _LINE
        if lim > n:
            lim = n
        j = p
        while j < lim and buf[j] != 10:
            j += 1
        self.s = p
        self.e = j
        if j < lim or j == n:
            self.eol = True
            self._p = j + 1
        elif buf[j] == 10:  # exactly _LINE bytes, then the newline
            self.eol = True
            self._p = j + 1
        else:
            self.eol = False
            self._p = j
        return True

    def mark(self):
        return self._p

    def rewind(self, m):
        self._p = m
        self.eol = True


class FileLines(BufLines):
    # The same pieces from a file, through one fixed buffer of _LINE + 1
    # bytes (the extra byte tells whether a full piece ends its line).
    def __init__(self, f, start=0):
        self.f = f
        self.buf = bytearray(_LINE + 1)
        self.view = self._mv = memoryview(self.buf)
        self.s = self.e = 0
        self.bol = True
        self.rewind(start)

    def rewind(self, m):
        self.f.seek(m)
        self._base = m  # file offset of buf[0]
        self._n = 0  # bytes in buf
        self._p = 0  # next unread byte in buf
        self._eof = False
        self.eol = True

    def mark(self):
        return self._base + self._p

    def _fill(self):
        # keep the unread tail at the front, then fill the rest
        buf = self.buf
        p = self._p
        k = self._n - p
        if p:
            buf[0:k] = self._mv[p:p + k]
            self._base += p
            self._p = 0
        while k < len(buf) and not self._eof:
            got = self.f.readinto(self._mv[k:])
            if got:
                k += got
            else:
                self._eof = True
        self._n = k

    def next(self):
        if self._n - self._p <= _LINE and not self._eof:
            self._fill()
        if self._p >= self._n:
            return False
        return self._cut(self.buf, self._p, self._n)


def _ws(b):
    return b == 32 or b == 9 or b == 13


def _char(b):
    # one character for an error message (it is never a base64 digit)
    return "'%s'" % chr(b) if 32 <= b < 127 and b != 39 else "'\\x%02x'" % b


class _Reader:
    # The state of blocks(): the line number, and per line whether only
    # whitespace was seen so far (lead) and where a whitespace run at the
    # end of the previous piece started (ws_col, ws_ch): whitespace is
    # allowed only at the start and the end of a line, whatever the
    # pieces are.
    def __init__(self, src):
        self.src = src
        self.lineno = 0
        self.col = 0  # column (0-based) of the piece's first byte in its line
        self._len = 0
        self.lead = True
        self.ws_col = -1
        self.ws_ch = 0
        self.carry = bytearray(4)  # a base64 quantum split across pieces
        self.store = None  # the DER buffer, reused from block to block

    def next(self):
        # the next piece; returns the marker range (s, e) for a piece that
        # starts a line with "--" after leading whitespace, else None
        src = self.src
        if not src.next():
            return False
        if src.bol:
            self.lineno += 1
            self.col = 0
            self.lead = True
            self.ws_col = -1
        else:
            self.col += self._len
        self._len = src.e - src.s
        if src.bol:
            buf = src.buf
            s = src.s
            e = src.e
            while s < e and _ws(buf[s]):
                s += 1
            if e - s >= 2 and buf[s] == 45 and buf[s + 1] == 45:
                if src.eol:
                    while e > s and _ws(buf[e - 1]):
                        e -= 1
                self.ms = s
                self.me = e
                return True
        self.ms = -1
        return True

    def body(self, check=True):
        # (s, e) of the base64 in this piece: leading whitespace of the
        # line and trailing whitespace at its end stripped; whitespace
        # anywhere else is an invalid character (raised when `check`)
        src = self.src
        buf = src.buf
        s = src.s
        e = src.e
        if self.lead:
            while s < e and _ws(buf[s]):
                s += 1
            if s < e:
                self.lead = False
        t = e
        while t > s and _ws(buf[t - 1]):
            t -= 1
        if t > s and self.ws_col >= 0 and check:
            self._bad(self.ws_ch, self.ws_col)
        if t < e and not src.eol and self.ws_col < 0:
            self.ws_col = self.col + t - src.s
            self.ws_ch = buf[t]
        return s, t

    def _bad(self, ch, col):
        raise DERError("PEM line %d: invalid base64 character %s at column %d" % (self.lineno, _char(ch), col + 1))

    def count(self):
        # base64 characters up to the next marker line (or the end): an
        # upper bound of what the block decodes to, before any allocation
        n = 0
        while self.next():
            if self.ms >= 0:
                break
            s, e = self.body(False)
            n += e - s
        return n

    def decode(self, size, label):
        # validate and decode the block's body into a buffer of `size`
        # bytes (from count()); stops after its END line. Returns a view
        # of the decoded bytes.
        src = self.src
        out = room(self, size)
        if not isinstance(out, memoryview):
            out = memoryview(out)
        filled = 0
        total = 0
        pad = 0
        nc = 0
        carry = self.carry
        while self.next():
            buf = src.buf
            if self.ms >= 0:
                if not (src.eol and self.me - self.ms == len(label) + 14 and der.equals(buf, self.ms, self.ms + 9, b"-----END ")
                        and der.equals(buf, self.ms + 9, self.me - 5, label) and der.equals(buf, self.me - 5, self.me, _DASHES)):
                    raise DERError("PEM line %d: expected -----END %s-----" % (self.lineno, label.decode()))
                if nc:
                    raise DERError("PEM line %d: base64 length not a multiple of 4" % self.lineno)
                if not total:
                    raise DERError("PEM line %d: empty %s block" % (self.lineno, label.decode()))
                return out[:filled]
            s, e = self.body()
            for i in range(s, e):
                ch = buf[i]
                if ch == 61:  # '='
                    pad += 1
                    if pad > 2:
                        raise DERError("PEM line %d: too much '=' padding" % self.lineno)
                elif pad:
                    raise DERError("PEM line %d: base64 after the '=' padding" % self.lineno)
                elif not (65 <= ch <= 90 or 97 <= ch <= 122 or 48 <= ch <= 57 or ch == 43 or ch == 47):
                    self._bad(ch, self.col + i - src.s)
            total += e - s
            while nc and s < e:
                carry[nc] = buf[s]
                nc += 1
                s += 1
                if nc == 4:
                    nc = 0
                    filled = _put(out, filled, binascii.a2b_base64(carry))
            k = s + (e - s) // 4 * 4
            if k > s:
                filled = _put(out, filled, binascii.a2b_base64(src.view[s:k]))
            while k < e:
                carry[nc] = buf[k]
                nc += 1
                k += 1
        raise DERError("PEM: no -----END %s----- line" % label.decode())


def _put(out, filled, d):
    # count() bounds the decoded size: running past it would be a bug
    if filled + len(d) > len(out):
        raise DERError("PEM: base64 longer than counted")
    out[filled:filled + len(d)] = d
    return filled + len(d)


def _label(buf, s, e):
    # the end of the label of a BEGIN line buf[s:e] (that starts with
    # "-----BEGIN "), or -1 unless the line is exactly "-----BEGIN ",
    # 1 to 40 of A-Z 0-9 and space, "-----"
    i = s + len(_BEGIN)
    lim = i + _MAXLABEL
    if lim > e:
        lim = e
    j = i
    while j < lim and (65 <= buf[j] <= 90 or 48 <= buf[j] <= 57 or buf[j] == 32):
        j += 1
    if j == i or j + 5 != e or not der.equals(buf, j, e, _DASHES):
        return -1
    return j


def blocks(src, derr=None):
    """Each certificate's DER (a bytearray or a view of one, reused: read
    it before asking for the next) from the CERTIFICATE, X509
    CERTIFICATE and TRUSTED CERTIFICATE blocks of a line source (BufLines
    or FileLines). Other blocks are skipped up to their END line; text
    outside blocks is explanatory (RFC 7468 s5.2). A TRUSTED CERTIFICATE
    block holds the certificate then OpenSSL's trust settings: the
    certificate is given, the rest must be one strict DER SEQUENCE (or
    nothing) and is otherwise ignored.

    derr: the DERError to raise when the input has no BEGIN line at all
    (it started like DER: that answer says more than "not PEM").
    Raises DERError; its message quotes nothing of the input but a
    label of 1 to 40 of A-Z, 0-9 and space, and one non-base64 character.
    Marker lines must fit in 128 bytes, whitespace included.
    """
    rd = _Reader(src)
    found = False
    seen = False
    skip = None  # the label of a non-certificate block being skipped
    while rd.next():
        if rd.ms < 0:
            continue
        buf = src.buf
        s = rd.ms
        e = rd.me
        if skip is not None:
            if (src.eol and e - s == len(skip) + 14 and der.equals(buf, s, s + 9, b"-----END ")
                    and der.equals(buf, s + 9, e - 5, skip) and der.equals(buf, e - 5, e, _DASHES)):
                skip = None
            continue
        if e - s < len(_BEGIN) or not der.equals(buf, s, s + len(_BEGIN), _BEGIN):
            continue  # explanatory text that starts with "--"
        seen = True
        j = _label(buf, s, e) if src.eol else -1
        if j < 0:
            raise DERError("PEM line %d: malformed BEGIN line%s" % (rd.lineno, _why(buf, s, e)))
        ls = s + len(_BEGIN)
        if der.equals(buf, ls, j, _CERT) or der.equals(buf, ls, j, _X509) or der.equals(buf, ls, j, _TRUSTED):
            label = _CERT if j - ls == len(_CERT) else (_X509 if j - ls == len(_X509) else _TRUSTED)
            m = src.mark()
            lineno = rd.lineno
            size = rd.count() // 4 * 3
            src.rewind(m)
            rd.lineno = lineno
            out = rd.decode(size, label)
            if label is _TRUSTED:
                out = _trusted(out)
            found = True
            yield out
            out = None
        else:
            skip = bytes(buf[ls:j])
    if skip is not None:
        raise DERError("PEM: no -----END %s----- line" % skip.decode())
    if not found:
        if not seen and derr is not None:
            raise derr
        raise DERError("neither DER nor a PEM CERTIFICATE block")


def _why(buf, s, e):
    # what is wrong with a BEGIN line longer than a piece: a CR inside it
    # means CR-only line ends
    for i in range(s, e):
        if buf[i] == 13:
            return " (a CR inside the line: CR-only line ends are not PEM)"
    return ""


def _trusted(out):
    # TRUSTED CERTIFICATE: the certificate, then X509_CERT_AUX (OpenSSL)
    r = der.Reader(out)
    n = len(out)
    r.read(0, n)
    e = r.end
    if e < n:
        r.expect(e, n, der.SEQUENCE)
        if r.end != n:
            raise DERError("%d bytes after the trust settings (offset %d)" % (n - r.end, r.end))
        r.walk(e, n)
    return out[:e]
