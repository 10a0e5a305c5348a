# X.509 certificates (RFC 5280) read from DER or PEM (RFC 7468) on the
# device: the fields the agent checks and the thumbprints IoT Hub shows.
# A certificate is read in place from its DER bytes (a memoryview is
# fine, e.g. the one tls.SSLContext.verify_callback hands over); the
# Certificate keeps only small copies, never the buffer.
import binascii
import hashlib

from . import der
from .der import DERError

CertError = DERError  # every refusal here is a ValueError of this class

# OID content octets
_CN = b"\x55\x04\x03"                                  # 2.5.4.3
_RSA = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"          # 1.2.840.113549.1.1.1
_EC = b"\x2a\x86\x48\xce\x3d\x02\x01"                   # 1.2.840.10045.2.1
_ED25519 = b"\x2b\x65\x70"                              # 1.3.101.112
_ED448 = b"\x2b\x65\x71"                                # 1.3.101.113
_CURVES = (
    (b"\x2a\x86\x48\xce\x3d\x03\x01\x07", "P-256", 256),  # 1.2.840.10045.3.1.7
    (b"\x2b\x81\x04\x00\x22", "P-384", 384),              # 1.3.132.0.34
    (b"\x2b\x81\x04\x00\x23", "P-521", 521),              # 1.3.132.0.35
    (b"\x2b\x81\x04\x00\x0a", "secp256k1", 256),          # 1.3.132.0.10
)

_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# GeneralizedTime 99991231235959Z: "no well-defined expiration date"
# (RFC 5280 4.1.2.5); a tuple, so nothing overflows.
NO_EXPIRY = (9999, 12, 31, 23, 59, 59)


class Certificate:
    """What the agent knows about one certificate.

    version (1-3); serial (int, signed); serial_bytes (bytes, the INTEGER's
    content octets); issuer_cn, subject_cn (str, or None without a CN);
    not_before, not_after: (Y, M, D, h, m, s) UTC tuples (compare them as
    tuples; NO_EXPIRY for 99991231235959Z); key_type ("RSA", "EC",
    "Ed25519", "Ed448" or the algorithm's dotted OID); key_bits (int or
    None); curve ("P-256", "P-384", "P-521", "secp256k1", a dotted OID, or
    None); sha1, sha256: thumbprints over the exact DER bytes, upper-case
    hex without colons (as IoT Hub shows them); size: DER length in bytes.
    """

    def key_text(self):
        """Short key description: "RSA 2048", "EC P-256", "Ed25519"."""
        if self.key_type == "EC":
            return "EC " + (self.curve or "?")
        if self.key_type == "RSA":
            return "RSA %d" % self.key_bits
        return self.key_type

    def label(self):
        """The subject CN, or "(no CN)"."""
        return self.subject_cn if self.subject_cn is not None else "(no CN)"

    def matches(self, expected):
        """Compare with an expected thumbprint: upper-case hex of 40 digits
        (SHA-1) or 64 (SHA-256), as config.parse() leaves it.
        Returns (equal: bool, rule: "sha1"/"sha256", actual: str).
        Raises ValueError for any other length."""
        if len(expected) == 40:
            return expected == self.sha1, "sha1", self.sha1
        if len(expected) == 64:
            return expected == self.sha256, "sha256", self.sha256
        raise ValueError("thumbprint must be 40 (SHA-1) or 64 (SHA-256) hex digits")


def _hex(digest):
    return binascii.hexlify(digest).decode().upper()


def thumbprints(buf):
    """(sha1, sha256) upper-case hex of the bytes buf (a DER certificate)."""
    return _hex(hashlib.sha1(buf).digest()), _hex(hashlib.sha256(buf).digest())


def parse(buf):
    """Read one DER certificate (RFC 5280 4.1) that fills `buf` exactly.

    buf: bytes, bytearray or memoryview. Returns a Certificate (which does
    not keep buf). Raises DERError (a ValueError) naming the problem and
    its byte offset: not strict DER, not a certificate, bytes after it,
    a time not in the DER form RFC 5280 4.1.2.5 requires.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(mv)
    s, e = der.expect(mv, 0, end, der.SEQUENCE)
    if e != end:
        raise DERError("%d bytes after the certificate (offset %d)" % (end - e, e))
    c = Certificate()
    c.size = end
    ts, te = der.expect(mv, s, e, der.SEQUENCE)  # tbsCertificate
    p = ts
    c.version = 1
    if p < te and mv[p] == 0xA0:
        vs, ve = der.expect(mv, p, te, 0xA0)
        is_, ie = der.expect(mv, vs, ve, der.INTEGER)
        if ie != ve:
            raise DERError("bytes after the version at offset %d" % ie)
        v = der.small_int(mv, is_, ie)
        if v > 2:
            raise DERError("unknown certificate version %d" % (v + 1))
        c.version = v + 1
        p = ve
    ss, se = der.expect(mv, p, te, der.INTEGER)
    c.serial = der.integer(mv, ss, se)
    c.serial_bytes = bytes(mv[ss:se])
    p = _skip(mv, se, te, der.SEQUENCE)  # signature AlgorithmIdentifier
    ns, ne = der.expect(mv, p, te, der.SEQUENCE)
    c.issuer_cn = _cn(mv, ns, ne)
    vs, ve = der.expect(mv, ne, te, der.SEQUENCE)  # validity
    c.not_before, q = read_time(mv, vs, ve)
    c.not_after, q = read_time(mv, q, ve)
    if q != ve:
        raise DERError("bytes after notAfter at offset %d" % q)
    ns, ne = der.expect(mv, ve, te, der.SEQUENCE)
    c.subject_cn = _cn(mv, ns, ne)
    ks, ke = der.expect(mv, ne, te, der.SEQUENCE)
    _key(c, mv, ks, ke)
    p = ke
    last = 0
    while p < te:  # issuerUniqueID [1], subjectUniqueID [2], extensions [3]
        t, xs, xe = der.tlv(mv, p, te)
        n = t & 0x1F if t in (0x81, 0xA1, 0x82, 0xA2, 0xA3) else 0
        if n <= last:
            raise DERError("unexpected tag 0x%02x in tbsCertificate at offset %d" % (t, p))
        last = n
        p = xe
    p = _skip(mv, te, e, der.SEQUENCE)  # signatureAlgorithm
    p = _skip(mv, p, e, der.BIT_STRING)  # signatureValue
    if p != e:
        raise DERError("bytes after the signature at offset %d" % p)
    c.sha1, c.sha256 = thumbprints(mv)
    return c


def _skip(mv, p, end, tag):
    s, e = der.expect(mv, p, end, tag)
    return e


def _cn(mv, s, e):
    # Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF
    # AttributeTypeAndValue); the first CN wins.
    cn = None
    p = s
    while p < e:
        rs, re_ = der.expect(mv, p, e, der.SET)
        q = rs
        while q < re_:
            as_, ae = der.expect(mv, q, re_, der.SEQUENCE)
            os_, oe = der.expect(mv, as_, ae, der.OID)
            t, vs, ve = der.tlv(mv, oe, ae)
            if ve != ae:
                raise DERError("bytes after an attribute value at offset %d" % ve)
            if cn is None and der.equals(mv, os_, oe, _CN):
                cn = _string(mv, t, vs, ve)
            q = ae
        p = re_
    return cn


def _string(mv, tag, s, e):
    """A DirectoryString (RFC 5280 4.1.2.4) as str."""
    if tag == 0x1E:  # BMPString: UCS-2 big-endian
        if (e - s) % 2:
            raise DERError("BMPString of odd length at offset %d" % s)
        return "".join(chr((mv[i] << 8) | mv[i + 1]) for i in range(s, e, 2))
    if tag == 0x1C:  # UniversalString: UCS-4 big-endian
        if (e - s) % 4:
            raise DERError("UniversalString length not a multiple of 4 at offset %d" % s)
        return "".join(chr((mv[i] << 24) | (mv[i + 1] << 16) | (mv[i + 2] << 8) | mv[i + 3]) for i in range(s, e, 4))
    if tag == 0x0C or tag == 0x13 or tag == 0x16 or tag == 0x1A or tag == 0x14:
        b = bytes(mv[s:e])
        if tag == 0x0C:
            try:
                return b.decode("utf-8")
            except UnicodeError:
                raise DERError("UTF8String is not valid UTF-8 at offset %d" % s)
        for ch in b:
            if ch >= 0x80:  # T.61 and stray 8-bit text: read as Latin-1
                return "".join(chr(x) for x in b)
        return b.decode()
    raise DERError("unsupported string type 0x%02x at offset %d" % (tag, s))


def _digits(mv, i):
    a = mv[i] - 48
    b = mv[i + 1] - 48
    if not (0 <= a <= 9 and 0 <= b <= 9):
        return -1
    return a * 10 + b


def read_time(mv, p, end):
    """Read the Time TLV at mv[p] (before offset `end`): UTCTime
    YYMMDDHHMMSSZ (years 50-99 are 19xx, 00-49 are 20xx) or
    GeneralizedTime YYYYMMDDHHMMSSZ, the only forms RFC 5280 4.1.2.5.1/.2
    allows. Returns ((Y, M, D, h, m, s), offset after the TLV). Raises
    DERError for fractions, offsets, missing seconds, a missing Z, other
    tags, or a date or time out of range.
    """
    t, s, e = der.tlv(mv, p, end)
    n = e - s
    if t == der.UTC_TIME:
        want = 13
        form = "UTCTime must be YYMMDDHHMMSSZ"
    elif t == der.GENERALIZED_TIME:
        want = 15
        form = "GeneralizedTime must be YYYYMMDDHHMMSSZ"
    else:
        raise DERError("expected UTCTime or GeneralizedTime at offset %d, found tag 0x%02x" % (p, t))
    if n != want or mv[e - 1] != 0x5A:
        raise DERError("%s (no fractions, offsets or missing seconds; ends in Z), got %s at offset %d"
                       % (form, _show(mv, s, e), p))
    f = []
    for i in range(s, e - 1, 2):
        v = _digits(mv, i)
        if v < 0:
            raise DERError("%s, got %s at offset %d" % (form, _show(mv, s, e), p))
        f.append(v)
    if t == der.UTC_TIME:
        y = f[0] + (1900 if f[0] >= 50 else 2000)  # RFC 5280 4.1.2.5.1
        f = f[1:]
    else:
        y = f[0] * 100 + f[1]
        f = f[2:]
    mo, d, h, mi, sec = f
    if not (1 <= mo <= 12 and 1 <= d <= _MDAYS[mo - 1] + (1 if mo == 2 and _leap(y) else 0)
            and h < 24 and mi < 60 and sec < 60):
        raise DERError("time out of range: %s at offset %d" % (_show(mv, s, e), p))
    return (y, mo, d, h, mi, sec), e


def _show(mv, s, e):
    # quoted printable text of a (short) field for error messages
    out = []
    for i in range(s, min(e, s + 24)):
        b = mv[i]
        out.append(chr(b) if 32 <= b < 127 and b != 39 else "\\x%02x" % b)
    return "'" + "".join(out) + ("...'" if e - s > 24 else "'")


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _key(c, mv, s, e):
    # SubjectPublicKeyInfo (RFC 5280 4.1.2.7): algorithm and key size.
    as_, ae = der.expect(mv, s, e, der.SEQUENCE)
    os_, oe = der.expect(mv, as_, ae, der.OID)
    bs, be = der.expect(mv, ae, e, der.BIT_STRING)
    if be != e:
        raise DERError("bytes after the public key at offset %d" % be)
    if bs >= be or mv[bs] > 7:
        raise DERError("bad BIT STRING at offset %d" % bs)
    c.key_bits = None
    c.curve = None
    if der.equals(mv, os_, oe, _RSA):
        c.key_type = "RSA"
        # RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        rs, re_ = der.expect(mv, bs + 1, be, der.SEQUENCE)
        ms, me = der.expect(mv, rs, re_, der.INTEGER)
        der.expect(mv, me, re_, der.INTEGER)
        while ms < me and mv[ms] == 0:
            ms += 1
        bits = (me - ms) * 8
        if ms < me:
            top = mv[ms]
            while not top & 0x80:
                top <<= 1
                bits -= 1
        c.key_bits = bits
    elif der.equals(mv, os_, oe, _EC):
        c.key_type = "EC"
        ps, pe = der.expect(mv, oe, ae, der.OID)  # namedCurve (RFC 5480)
        for oid, name, bits in _CURVES:
            if der.equals(mv, ps, pe, oid):
                c.curve = name
                c.key_bits = bits
                break
        else:
            c.curve = der.oid_text(mv, ps, pe)
    elif der.equals(mv, os_, oe, _ED25519):
        c.key_type = "Ed25519"
    elif der.equals(mv, os_, oe, _ED448):
        c.key_type = "Ed448"
    else:
        c.key_type = der.oid_text(mv, os_, oe)


# ---- times -----------------------------------------------------------------
def iso(t):
    """'YYYY-MM-DDTHH:MM:SSZ' of a (Y, M, D, h, m, s) tuple."""
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % t


def civil(utc):
    """(Y, M, D, h, m, s) of UTC seconds since 1970 (any int; H. Hinnant's
    civil_from_days, plain integer arithmetic, no time module)."""
    days, sod = divmod(utc, 86400)
    days += 719468
    era = (days if days >= 0 else days - 146096) // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return (y, m, d, sod // 3600, sod // 60 % 60, sod % 60)


# ---- PEM and files ---------------------------------------------------------
_BEGIN = b"-----BEGIN "
_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_CERT_END = b"-----END CERTIFICATE-----"


class _Buf:
    # line reader over a buffer, same surface as a file opened "rb"
    def __init__(self, mv):
        self.mv = mv
        self.pos = 0

    def readline(self):
        mv = self.mv
        i = self.pos
        n = len(mv)
        j = i
        while j < n and mv[j] != 10:
            j += 1
        if j < n:
            j += 1
        self.pos = j
        return mv[i:j]

    def left(self):
        return len(self.mv) - self.pos


class _File:
    def __init__(self, f, size):
        self.f = f
        self.size = size

    def readline(self):
        return self.f.readline()

    def left(self):
        return self.size - self.f.tell()


def _strip(line):
    # the line without trailing CR/LF/spaces/tabs, as (start, end)
    e = len(line)
    while e and line[e - 1] in (10, 13, 32, 9):
        e -= 1
    s = 0
    while s < e and line[s] in (32, 9):
        s += 1
    return s, e


def _b64check(line, s, e, lineno):
    # RFC 4648 alphabet; '=' only as padding at the end of the line
    pad = 0
    for i in range(s, e):
        ch = line[i]
        if ch == 61:
            pad += 1
            if pad > 2:
                raise DERError("PEM line %d: too much '=' padding" % lineno)
        elif pad or not (65 <= ch <= 90 or 97 <= ch <= 122 or 48 <= ch <= 57 or ch == 43 or ch == 47):
            raise DERError("PEM line %d: invalid base64 character %s at column %d" % (lineno, _show(line, i, i + 1), i + 1))
    return pad


def _pem_cert(src, lineno):
    # base64 body of one CERTIFICATE block, decoded into a bytearray of
    # exactly the DER's size (known from its first bytes and checked
    # against what the rest of the input can hold before allocating)
    out = None
    head = b""
    filled = 0
    carry = b""
    padded = False
    while True:
        line = src.readline()
        lineno += 1
        if not line:
            raise DERError("PEM: no -----END CERTIFICATE----- line")
        s, e = _strip(line)
        if e - s >= 5 and line[s] == 45 and line[s + 1] == 45:  # "--"
            if not (e - s == len(_CERT_END) and line[s:e] == _CERT_END):
                raise DERError("PEM line %d: expected -----END CERTIFICATE-----" % lineno)
            break
        if s == e:
            continue
        if padded:
            raise DERError("PEM line %d: base64 after the '=' padding" % lineno)
        if _b64check(line, s, e, lineno):
            padded = True
        chunk = carry + bytes(line[s:e])
        k = len(chunk) - len(chunk) % 4
        carry = chunk[k:]
        if padded and carry:
            raise DERError("PEM line %d: base64 length not a multiple of 4" % lineno)
        if not k:
            continue
        d = binascii.a2b_base64(chunk[:k])
        if out is None:
            head += d
            if len(head) < 6 and not padded:
                continue
            tag, h, n = der.peek(head, 0, len(head))
            total = h + n
            # what the rest of the input can still decode to, at most
            room = len(head) + (src.left() * 3) // 4
            if total > room:
                raise DERError("PEM: DER length %d runs past the end (the input holds at most %d bytes)" % (total, room))
            if total < len(head):
                raise DERError("PEM: %d bytes after the certificate" % (len(head) - total))
            out = bytearray(total)
            out[0:len(head)] = head
            filled = len(head)
            head = None
        else:
            if filled + len(d) > len(out):
                raise DERError("PEM: %d bytes after the certificate" % (filled + len(d) - len(out)))
            out[filled:filled + len(d)] = d
            filled += len(d)
    if carry:
        raise DERError("PEM line %d: base64 length not a multiple of 4" % lineno)
    if out is None:
        if not head:
            raise DERError("PEM line %d: empty CERTIFICATE block" % lineno)
        tag, h, n = der.peek(head, 0, len(head))
        out = bytearray(head)
        filled = len(out)
    if filled != len(out):
        raise DERError("PEM: truncated (DER length %d, base64 holds %d)" % (len(out), filled))
    return out, lineno


def _pem(src):
    lineno = 0
    found = False
    skip = None  # END line of a non-certificate block being skipped
    while True:
        line = src.readline()
        lineno += 1
        if not line:
            break
        s, e = _strip(line)
        if skip is not None:
            if line[s:e] == skip:
                skip = None
            continue
        if e - s >= len(_BEGIN) and line[s:s + len(_BEGIN)] == _BEGIN:
            if line[s:e] == _CERT_BEGIN:
                buf, lineno = _pem_cert(src, lineno)
                found = True
                yield buf
                buf = None
            elif e - s > 16 and line[e - 5:e] == b"-----":
                # another PEM block (a private key, parameters): skip it
                skip = b"-----END " + bytes(line[s + 11:e])
            else:
                raise DERError("PEM line %d: malformed BEGIN line" % lineno)
        # any other text outside a block is explanatory (RFC 7468 5.2)
    if skip is not None:
        raise DERError("PEM: no %s line" % skip.decode())
    if not found:
        raise DERError("neither DER nor a PEM CERTIFICATE block")


def _ders(mv):
    # one or several DER certificates back to back in a buffer
    p = 0
    n = len(mv)
    while p < n:
        tag, h, ln = der.peek(mv, p, n)
        if ln > n - p - h:
            raise DERError("length %d at offset %d runs past the end (%d bytes left)" % (ln, p + 1, n - p - h))
        yield mv[p:p + h + ln]
        p += h + ln


def iter_certs(data):
    """Each Certificate in `data` (bytes, bytearray, memoryview or str):
    one or several DER certificates back to back, or PEM text with one or
    several CERTIFICATE blocks (other blocks, e.g. a private key, and text
    outside blocks are skipped). A generator: one certificate at a time.
    Raises DERError (a ValueError) at the first bad one, or when there is
    none.
    """
    if isinstance(data, str):
        data = data.encode()
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if len(mv) and mv[0] == der.SEQUENCE:
        for c in _ders(mv):
            yield parse(c)
    else:
        for buf in _pem(_Buf(mv)):
            c = parse(buf)
            buf = None
            yield c


def iter_file(path):
    """Each Certificate in the file at `path` (DER or PEM as iter_certs()
    takes), read so that only one certificate's bytes are in RAM at a
    time. Raises OSError when the file cannot be read, DERError (a
    ValueError) for content that is not certificates.
    """
    import os
    size = os.stat(path)[6]
    with open(path, "rb") as f:
        first = f.read(1)
        if not first:
            raise DERError("empty file")
        f.seek(0)
        if first[0] == der.SEQUENCE:
            pos = 0
            while pos < size:
                head = f.read(6)
                tag, h, n = der.peek(head, 0, len(head))
                total = h + n
                if total > size - pos:
                    raise DERError("length %d at offset %d runs past the end (%d bytes left)" % (n, pos + 1, size - pos - h))
                buf = bytearray(total)
                k = min(len(head), total)
                buf[0:k] = head[:k]
                if k < len(head):
                    f.seek(pos + total)
                elif total > k:
                    mv = memoryview(buf)
                    while k < total:
                        r = f.readinto(mv[k:])
                        if not r:
                            raise DERError("file shrank while reading at offset %d" % (pos + k))
                        k += r
                    mv = None
                head = None
                c = parse(buf)
                buf = None
                yield c
                pos += total
        else:
            for buf in _pem(_File(f, size)):
                c = parse(buf)
                buf = None
                yield c


def read_file(path):
    """The first Certificate in a file (see iter_file())."""
    for c in iter_file(path):
        return c
