# X.509 certificates (RFC 5280) read from DER or PEM (RFC 7468) on the
# device: the fields the agent checks and the thumbprints IoT Hub shows.
# A certificate is read in place from its DER bytes (a memoryview is
# fine, e.g. the one tls.SSLContext.verify_callback hands over); the
# Certificate keeps only small copies, never the buffer.
import binascii
import hashlib

from . import der, platform, utf8
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

# Bounds on what a certificate field may turn into (RFC 5280 asks CAs for
# serials of at most 20 octets and CNs of at most 64 characters; real
# certificates exceed the first a little). Beyond them: DERError.
MAX_SERIAL_OCTETS = 64
MAX_CN_OCTETS = 256


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
    # hexlify in C: a Python loop would save ~100 bytes but cost ~10 us
    return binascii.hexlify(digest).decode().upper()


def thumbprints(buf):
    """(sha1, sha256) upper-case hex of the bytes buf (a DER certificate)."""
    return _hex(hashlib.sha1(buf).digest()), _hex(hashlib.sha256(buf).digest())


def parse(buf):
    """Read one DER certificate (RFC 5280 4.1) that fills `buf` exactly.

    buf: bytes, bytearray or memoryview. Returns a Certificate (which does
    not keep buf). Raises DERError (a ValueError) naming the problem and
    its byte offset: not strict DER (X.690 10) anywhere, the elements it
    skips included (algorithm parameters, unique IDs, extensions: see
    der.Reader.walk()), not a certificate, bytes after it, a time not in
    the DER form RFC 5280 4.1.2.5 requires, a serial of more than
    MAX_SERIAL_OCTETS (64) octets, a CN of more than MAX_CN_OCTETS (256)
    or not valid in its string type (strict UTF-8, no surrogates).
    Walks the DER in place with one der.Reader: no copy of the
    certificate and no allocation per element.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(mv)
    r = der.Reader(mv)
    s = r.expect(0, end, der.SEQUENCE)
    e = r.end
    if e != end:
        raise DERError("%d bytes after the certificate (offset %d)" % (end - e, e))
    c = Certificate()
    c.size = end
    p = r.expect(s, e, der.SEQUENCE)  # tbsCertificate
    te = r.end
    c.version = 1
    if p < te and mv[p] == 0xA0:
        vs = r.expect(p, te, 0xA0)
        ve = r.end
        is_ = r.expect(vs, ve, der.INTEGER)
        if r.end != ve:
            raise DERError("bytes after the version at offset %d" % r.end)
        v = der.small_int(mv, is_, ve)
        if v > 2:
            raise DERError("unknown certificate version %d" % (v + 1))
        if v == 0:
            raise DERError("version 1 encoded at offset %d (DER leaves the DEFAULT out)" % p)
        c.version = v + 1
        p = ve
    ss = r.expect(p, te, der.INTEGER)
    p = r.end
    if p - ss > MAX_SERIAL_OCTETS:
        raise DERError("serial number of %d octets at offset %d (more than %d)" % (p - ss, ss, MAX_SERIAL_OCTETS))
    c.serial_bytes = bytes(mv[ss:p])
    c.serial = der.signed(c.serial_bytes, ss)
    p = _alg(r, p, te)  # signature AlgorithmIdentifier
    ns = r.expect(p, te, der.SEQUENCE)
    ne = r.end
    c.issuer_cn = _cn(r, ns, ne)
    vs = r.expect(ne, te, der.SEQUENCE)  # validity
    ve = r.end
    c.not_before = read_time(mv, vs, ve, r)
    c.not_after = read_time(mv, r.end, ve, r)
    if r.end != ve:
        raise DERError("bytes after notAfter at offset %d" % r.end)
    ns = r.expect(ve, te, der.SEQUENCE)
    ne = r.end
    c.subject_cn = _cn(r, ns, ne)
    ks = r.expect(ne, te, der.SEQUENCE)
    p = r.end
    _key(c, r, ks, p)
    last = 0
    while p < te:  # issuerUniqueID [1], subjectUniqueID [2] (IMPLICIT BIT STRING), extensions [3]
        cs = r.read(p, te)
        t = r.tag
        ce = r.end
        n = t & 0x1F if t == 0x81 or t == 0x82 or t == 0xA3 else 0
        if n <= last:
            raise DERError("unexpected tag 0x%02x in tbsCertificate at offset %d" % (t, p))
        last = n
        if n == 3:
            _extensions(r, cs, ce)
        else:
            der.check_bits(mv, cs, ce)
        p = ce
    p = _alg(r, te, e)  # signatureAlgorithm
    bs = r.expect(p, e, der.BIT_STRING)  # signatureValue
    p = r.end
    if p != e:
        raise DERError("bytes after the signature at offset %d" % p)
    der.check_bits(mv, bs, p)
    c.sha1, c.sha256 = thumbprints(mv)
    return c


def _alg(r, p, end):
    # AlgorithmIdentifier (RFC 5280 4.1.1.2) at p: an OID, then parameters
    # checked as strict DER. Returns the offset after it.
    s = r.expect(p, end, der.SEQUENCE)
    e = r.end
    os_ = r.expect(s, e, der.OID)
    oe = r.end
    mv = r.buf
    der.check_oid(mv, os_, oe)
    if oe != e and not (e - oe == 2 and mv[oe] == der.NULL and mv[oe + 1] == 0):  # fast path: none or NULL
        r.walk(oe, e)
    return e


def _extensions(r, s, e):
    # [3] EXPLICIT Extensions (RFC 5280 4.1.2.9): SEQUENCE OF SEQUENCE
    # { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    mv = r.buf
    xs = r.expect(s, e, der.SEQUENCE)
    xe = r.end
    if xe != e:
        raise DERError("bytes after the extensions at offset %d" % xe)
    p = xs
    while p < xe:
        es = r.expect(p, xe, der.SEQUENCE)
        ee = r.end
        os_ = r.expect(es, ee, der.OID)
        q = r.end
        if q - os_ != 3 or (mv[os_] | mv[os_ + 1] | mv[os_ + 2]) & 0x80:  # fast path: 2.5.29.x
            der.check_oid(mv, os_, q)
        if q < ee and mv[q] == 0x01:
            bs = r.read(q, ee)
            if r.end - bs != 1 or mv[bs] != 0xFF:
                if r.end - bs == 1 and mv[bs] == 0:
                    raise DERError("critical FALSE encoded at offset %d (DER leaves the DEFAULT out)" % q)
                der.check_primitive(mv, 0x01, bs, r.end, q)
            q = r.end
        r.expect(q, ee, der.OCTET_STRING)
        if r.end != ee:
            raise DERError("bytes after an extension value at offset %d" % r.end)
        p = ee


def _cn(r, s, e):
    # Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF
    # AttributeTypeAndValue); the first CN wins.
    mv = r.buf
    cn = None
    p = s
    while p < e:
        q = r.expect(p, e, der.SET)
        re_ = r.end
        while q < re_:
            as_ = r.expect(q, re_, der.SEQUENCE)
            ae = r.end
            os_ = r.expect(as_, ae, der.OID)
            oe = r.end
            if oe - os_ != 3 or (mv[os_] | mv[os_ + 1] | mv[os_ + 2]) & 0x80:  # fast path: 2.5.4.x
                der.check_oid(mv, os_, oe)
            vs = r.read(oe, ae)
            t = r.tag
            if r.end != ae:
                raise DERError("bytes after an attribute value at offset %d" % r.end)
            if cn is None and der.equals(mv, os_, oe, _CN):
                cn = _string(mv, t, vs, ae)
            elif t == 0x0C:
                i = utf8.bad(mv, vs, ae)
                if i >= 0:
                    raise DERError("UTF8String is not valid UTF-8 at offset %d" % i)
            elif t & 0x20 or t <= 0x11:  # the string types have no DER rule of their own
                r.walk(oe, ae)
            q = ae
        p = re_
    return cn


def _string(mv, tag, s, e):
    """A DirectoryString (RFC 5280 4.1.2.4) as str: at most MAX_CN_OCTETS
    octets; UTF8String strict UTF-8 (utf8.bad(): the same verdict on
    CPython and MicroPython), BMPString and UniversalString without
    surrogates or code points above U+10FFFF."""
    if e - s > MAX_CN_OCTETS:
        raise DERError("CN of %d octets at offset %d (more than %d)" % (e - s, s, MAX_CN_OCTETS))
    if tag == 0x1E:  # BMPString: UCS-2 big-endian
        if (e - s) % 2:
            raise DERError("BMPString of odd length at offset %d" % s)
        for i in range(s, e, 2):
            if 0xD8 <= mv[i] <= 0xDF:
                raise DERError("BMPString with a surrogate at offset %d" % i)
        return "".join(chr((mv[i] << 8) | mv[i + 1]) for i in range(s, e, 2))
    if tag == 0x1C:  # UniversalString: UCS-4 big-endian
        if (e - s) % 4:
            raise DERError("UniversalString length not a multiple of 4 at offset %d" % s)
        for i in range(s, e, 4):
            u = (mv[i] << 24) | (mv[i + 1] << 16) | (mv[i + 2] << 8) | mv[i + 3]
            if u > 0x10FFFF or 0xD800 <= u <= 0xDFFF:
                raise DERError("UniversalString with a code point that is not a character at offset %d" % i)
        return "".join(chr((mv[i] << 24) | (mv[i + 1] << 16) | (mv[i + 2] << 8) | mv[i + 3]) for i in range(s, e, 4))
    if tag == 0x0C or tag == 0x13 or tag == 0x16 or tag == 0x1A or tag == 0x14:
        if tag == 0x0C:
            i = utf8.bad(mv, s, e)
            if i >= 0:
                raise DERError("UTF8String is not valid UTF-8 at offset %d" % i)
            return str(bytes(mv[s:e]), "utf-8")
        b = bytes(mv[s:e])
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


def read_time(mv, p, end, r=None):
    """Read the Time TLV at mv[p] (before offset `end`): UTCTime
    YYMMDDHHMMSSZ (years 50-99 are 19xx, 00-49 are 20xx) or
    GeneralizedTime YYYYMMDDHHMMSSZ, the only forms RFC 5280 4.1.2.5.1/.2
    allows. Returns (Y, M, D, h, m, s); r (a der.Reader over mv, made
    when not given) has .end = the offset after the TLV. Raises DERError
    for fractions, offsets, missing seconds, a missing Z, other tags, or a
    date or time out of range.
    """
    if r is None:
        r = der.Reader(mv)
    s = r.read(p, end)
    e = r.end
    t = r.tag
    n = e - s
    if t == der.UTC_TIME:
        want = 13
    elif t == der.GENERALIZED_TIME:
        want = 15
    else:
        raise DERError("expected UTCTime or GeneralizedTime at offset %d, found tag 0x%02x" % (p, t))
    if n != want or mv[e - 1] != 0x5A:
        raise DERError("%s (no fractions, offsets or missing seconds; ends in Z), got %s at offset %d"
                       % (_form(t), _show(mv, s, e), p))
    if t == der.UTC_TIME:
        y = _digits(mv, s)
        if y >= 0:
            y += 1900 if y >= 50 else 2000  # RFC 5280 4.1.2.5.1
        i = s + 2
    else:
        y = _digits(mv, s)
        y2 = _digits(mv, s + 2)
        y = y * 100 + y2 if y >= 0 and y2 >= 0 else -1
        i = s + 4
    mo = _digits(mv, i)
    d = _digits(mv, i + 2)
    h = _digits(mv, i + 4)
    mi = _digits(mv, i + 6)
    sec = _digits(mv, i + 8)
    if y < 0 or mo < 0 or d < 0 or h < 0 or mi < 0 or sec < 0:
        raise DERError("%s, got %s at offset %d" % (_form(t), _show(mv, s, e), p))
    if not (1 <= mo <= 12 and 1 <= d <= _MDAYS[mo - 1] + (1 if mo == 2 and _leap(y) else 0)
            and h < 24 and mi < 60 and sec < 60):
        raise DERError("time out of range: %s at offset %d" % (_show(mv, s, e), p))
    return (y, mo, d, h, mi, sec)


def _form(t):
    if t == der.UTC_TIME:
        return "UTCTime must be YYMMDDHHMMSSZ"
    return "GeneralizedTime must be YYYYMMDDHHMMSSZ"


_TIMECHARS = b"0123456789Zz+-.,: "


def _show(mv, s, e):
    # a time's text for error messages, quoted only when it is at most 24
    # characters of digits and time punctuation (it can then be nothing
    # but a time); otherwise only its length: no other content is echoed
    if e - s <= 24:
        for i in range(s, e):
            if mv[i] not in _TIMECHARS:
                break
        else:
            return "'" + str(bytes(mv[s:e]), "ascii") + "'"
    return "%d octets of other text" % (e - s)


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _key(c, r, s, e):
    # SubjectPublicKeyInfo (RFC 5280 4.1.2.7): algorithm and key size.
    mv = r.buf
    as_ = r.expect(s, e, der.SEQUENCE)
    ae = r.end
    os_ = r.expect(as_, ae, der.OID)
    oe = r.end
    der.check_oid(mv, os_, oe)
    bs = r.expect(ae, e, der.BIT_STRING)
    be = r.end
    if be != e:
        raise DERError("bytes after the public key at offset %d" % be)
    der.check_bits(mv, bs, be)
    c.key_bits = None
    c.curve = None
    if der.equals(mv, os_, oe, _RSA):
        c.key_type = "RSA"
        if not (ae - oe == 2 and mv[oe] == der.NULL and mv[oe + 1] == 0):  # fast path: NULL (RFC 3279 2.3.1)
            r.walk(oe, ae)
        if mv[bs]:
            raise DERError("RSA key BIT STRING with unused bits at offset %d" % bs)
        # RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        rs = r.expect(bs + 1, be, der.SEQUENCE)
        re_ = r.end
        if re_ != be:
            raise DERError("bytes after the RSA key at offset %d" % re_)
        ms = r.expect(rs, re_, der.INTEGER)
        me = r.end
        der.check_int(mv, ms, me)
        xs = r.expect(me, re_, der.INTEGER)
        der.check_int(mv, xs, r.end)
        if r.end != re_:
            raise DERError("bytes after the RSA exponent at offset %d" % r.end)
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
        ps = r.expect(oe, ae, der.OID)  # namedCurve (RFC 5480)
        pe = r.end
        der.check_oid(mv, ps, pe)
        if pe != ae:
            raise DERError("bytes after the curve at offset %d" % pe)
        for oid, name, bits in _CURVES:
            if der.equals(mv, ps, pe, oid):
                c.curve = name
                c.key_bits = bits
                break
        else:
            c.curve = der.oid_text(mv, ps, pe)
    else:
        r.walk(oe, ae)
        if der.equals(mv, os_, oe, _ED25519):
            c.key_type = "Ed25519"
        elif der.equals(mv, os_, oe, _ED448):
            c.key_type = "Ed448"
        else:
            c.key_type = der.oid_text(mv, os_, oe)


# ---- times -----------------------------------------------------------------
def iso(t):
    """'YYYY-MM-DDTHH:MM:SSZ' of a (Y, M, D, h, m, s) tuple."""
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % t


# (Y, M, D, h, m, s) of UTC seconds since 1970: one implementation for the
# whole agent
civil = platform.civil


# ---- files -----------------------------------------------------------------
def room(holder, total):
    # a buffer of exactly `total` bytes: holder.store when it is big
    # enough (a view of it), else a new store of that size
    st = holder.store
    if st is None or len(st) < total:
        st = None
        holder.store = st = bytearray(total)
    return st if len(st) == total else memoryview(st)[:total]


def _tiles(r, n):
    # None when r.buf[:n] is DER SEQUENCEs back to back that fill it
    # exactly (headers only), else the DERError saying where not
    p = 0
    try:
        while p < n:
            r.read(p, n)
            if r.tag != der.SEQUENCE:
                raise DERError("expected SEQUENCE at offset %d, found tag 0x%02x" % (p, r.tag))
            p = r.end
    except DERError as e:
        return e
    return None


def _bom(b, n):
    # a UTF-8 byte order mark at the start (some Windows editors write one)
    return n >= 3 and b[0] == 0xEF and b[1] == 0xBB and b[2] == 0xBF


def iter_certs(data):
    """Each Certificate in `data` (bytes, bytearray, memoryview or str):
    one or several DER certificates back to back, or PEM text (RFC 7468)
    with one or several CERTIFICATE blocks (also OpenSSL's X509
    CERTIFICATE and TRUSTED CERTIFICATE: the certificate is read, the
    trust settings after it are checked as DER and ignored). Other blocks
    (a private key) and text outside blocks are skipped; a UTF-8 byte
    order mark before PEM is skipped. The input is DER when it starts
    with a SEQUENCE and such SEQUENCEs fill it exactly; otherwise PEM,
    and when it has no BEGIN line at all the DER error is the answer.
    A generator: one certificate at a time. Raises DERError (a
    ValueError) at the first bad one, or when there is none. Reads the
    same as iter_file() would from a file with these bytes.
    """
    if isinstance(data, str):
        data = data.encode()
    mv = data if isinstance(data, memoryview) else memoryview(data)
    n = len(mv)
    if not n:
        raise DERError("empty input")
    derr = None
    if mv[0] == der.SEQUENCE:
        r = der.Reader(mv)
        derr = _tiles(r, n)
        if derr is None:
            p = 0
            while p < n:
                r.read(p, n)
                e = r.end
                yield parse(mv[p:e])
                p = e
            return
    from . import pem
    for buf in pem.blocks(pem.BufLines(mv[3:] if _bom(mv, n) else mv), derr):
        c = parse(buf)
        buf = None
        yield c


def iter_file(path):
    """Each Certificate in the file at `path` (DER or PEM, decided as
    iter_certs() decides), read so that only one certificate's bytes are
    in RAM at a time (plus a 129-byte line buffer for PEM). Raises
    OSError when the file cannot be read, DERError (a ValueError) for
    content that is not certificates: the same answer and the same
    message iter_certs() gives for the file's bytes.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if not size:
            raise DERError("empty input")
        f.seek(0)
        head = bytearray(6)
        k = f.readinto(head)
        derr = None
        if head[0] == der.SEQUENCE:
            r = der.Reader(head)
            derr = _file_tiles(f, size, head, r)
            if derr is None:
                for c in _file_ders(f, size, head, r):
                    yield c
                return
        start = 3 if _bom(head, k) else 0
        head = None
        from . import pem
        for buf in pem.blocks(pem.FileLines(f, start), derr):
            c = parse(buf)
            buf = None
            yield c


def _file_header(f, size, pos, head, r):
    # the SEQUENCE header at file offset pos, read into head (6 bytes: the
    # longest header allowed), checked as _tiles() checks it in a buffer
    # (same order, same messages, the file's offsets). Returns the
    # element's total length.
    f.seek(pos)
    k = f.readinto(head) or 0
    r.base = pos
    r.header(0, k)
    if r.end > size - pos:
        raise DERError("length %d at offset %d runs past the end (%d bytes left)"
                       % (r.length, pos + 1, size - pos - r.start))
    if r.tag != der.SEQUENCE:
        raise DERError("expected SEQUENCE at offset %d, found tag 0x%02x" % (pos, r.tag))
    return r.end


def _file_tiles(f, size, head, r):
    # _tiles() for a file, one header at a time
    pos = 0
    try:
        while pos < size:
            pos += _file_header(f, size, pos, head, r)
    except DERError as e:
        return e
    return None


def _file_ders(f, size, head, r):
    pos = 0
    hold = _Holder()
    while pos < size:
        total = _file_header(f, size, pos, head, r)
        buf = room(hold, total)
        mv = buf if isinstance(buf, memoryview) else memoryview(buf)
        f.seek(pos)
        n = 0
        while n < total:
            got = f.readinto(mv[n:])
            if not got:
                raise DERError("file changed while reading at offset %d" % (pos + n))
            n += got
        mv = None
        c = parse(buf)
        buf = None
        yield c
        pos += total


class _Holder:
    store = None


def read_file(path):
    """The first Certificate in a file (see iter_file())."""
    for c in iter_file(path):
        return c
