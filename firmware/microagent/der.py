# A strict DER reader (ITU-T X.690 section 10, as RFC 5280 certificates
# use it) over a buffer: bytes, bytearray or memoryview, read in place by
# offsets. Nothing here copies more than one small field, and no length
# read from the input is trusted before it was checked against the bytes
# that are really there.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

SEQUENCE = const(0x30)
SET = const(0x31)
INTEGER = const(0x02)
BIT_STRING = const(0x03)
OCTET_STRING = const(0x04)
NULL = const(0x05)
OID = const(0x06)
UTC_TIME = const(0x17)
GENERALIZED_TIME = const(0x18)


class DERError(ValueError):
    """Input that is not strict DER (or not the expected structure);
    str() says what and at which byte offset."""


class Reader:
    """A cursor over one DER buffer that allocates nothing per element.

    Reader(buf): buf is bytes, bytearray or memoryview. header() and read()
    leave their result in attributes instead of returning a tuple: .tag,
    .start (first content octet), .length, .end (start + length); all are
    offsets into buf. Each call overwrites them: copy what you still need
    into locals before the next one.
    """

    def __init__(self, buf):
        self.buf = buf
        self.tag = 0
        self.start = 0
        self.length = 0
        self.end = 0

    def header(self, pos, have):
        """Read the tag and length octets at buf[pos], looking at no byte at
        or past `have`; the content is NOT checked to be present (read()
        does that). Returns .start. Raises DERError for a missing header,
        a high tag number, an indefinite length (0x80), a length in more
        than 4 octets, or a length not in its shortest form (X.690 10.1).
        """
        buf = self.buf
        if pos >= have:
            raise DERError("truncated: no tag at offset %d" % pos)
        tag = buf[pos]
        if tag & 0x1F == 0x1F:
            raise DERError("high tag number at offset %d (not used in X.509)" % pos)
        if pos + 1 >= have:
            raise DERError("truncated: no length at offset %d" % (pos + 1))
        n = buf[pos + 1]
        start = pos + 2
        if n >= 0x80:
            k = n & 0x7F
            if k == 0:
                raise DERError("indefinite length at offset %d (not DER)" % (pos + 1))
            if k > 4:
                raise DERError("length in %d octets at offset %d (more than 4)" % (k, pos + 1))
            if start + k > have:
                raise DERError("truncated: length octets at offset %d" % (pos + 1))
            if buf[start] == 0:
                raise DERError("non-minimal length at offset %d (leading zero octet)" % (pos + 1))
            n = 0
            for i in range(start, start + k):
                n = (n << 8) | buf[i]
            if n < 0x80:
                raise DERError("non-minimal length at offset %d (%d needs the short form)" % (pos + 1, n))
            start += k
        self.tag = tag
        self.start = start
        self.length = n
        self.end = start + n
        return start

    def read(self, pos, end):
        """header() of the TLV at buf[pos] that must lie wholly before
        offset `end`. Returns .start. Raises DERError as header() does, and
        when the length runs past `end` (checked before anything uses it).
        """
        start = self.header(pos, end)
        if self.length > end - start:
            raise DERError("length %d at offset %d runs past the end (%d bytes left)" % (self.length, pos + 1, end - start))
        return start

    def expect(self, pos, end, tag):
        """read() that also requires the tag. Returns .start. Raises
        DERError naming the expected and the found tag."""
        start = self.read(pos, end)
        if self.tag != tag:
            raise DERError("expected %s at offset %d, found tag 0x%02x" % (_name(tag), pos, self.tag))
        return start


def peek(buf, pos, have):
    """Reader.header() as a tuple: (tag, header_len, content_len)."""
    r = Reader(buf)
    r.header(pos, have)
    return r.tag, r.start - pos, r.length


def tlv(buf, pos, end):
    """Reader.read() as a tuple: (tag, content_start, content_end)."""
    r = Reader(buf)
    r.read(pos, end)
    return r.tag, r.start, r.end


def _name(tag):
    if tag == SEQUENCE:
        return "SEQUENCE"
    if tag == INTEGER:
        return "INTEGER"
    if tag == BIT_STRING:
        return "BIT STRING"
    if tag == OID:
        return "OBJECT IDENTIFIER"
    if tag == SET:
        return "SET"
    return "tag 0x%02x" % tag


def expect(buf, pos, end, tag):
    """Reader.expect() as a tuple: (content_start, content_end)."""
    r = Reader(buf)
    r.expect(pos, end, tag)
    return r.start, r.end


def integer(buf, start, end):
    """The signed INTEGER (two's complement, X.690 8.3) in buf[start:end].

    Returns an int (a big int where it needs one). Raises DERError for an
    empty or non-minimal encoding (a needless leading 0x00 or 0xFF).
    """
    return signed(bytes(buf[start:end]), start)


def signed(octets, offset=0):
    """signed INTEGER content octets (bytes) -> int; see integer().
    offset only names the place in error messages."""
    n = len(octets)
    if n == 0:
        raise DERError("empty INTEGER at offset %d" % offset)
    b0 = octets[0]
    if n > 1:
        b1 = octets[1]
        if (b0 == 0 and b1 < 0x80) or (b0 == 0xFF and b1 >= 0x80):
            raise DERError("non-minimal INTEGER at offset %d" % offset)
    v = int.from_bytes(octets, "big")
    if b0 & 0x80:
        v -= 1 << (8 * n)
    return v


def small_int(buf, start, end):
    """A non-negative INTEGER of at most 3 content octets (a version, a
    count) without big-int arithmetic. Raises DERError otherwise."""
    n = end - start
    if n <= 0 or n > 3:
        raise DERError("INTEGER at offset %d: %d octets, expected 1 to 3" % (start, n))
    if buf[start] & 0x80:
        raise DERError("negative INTEGER at offset %d" % start)
    if n > 1 and buf[start] == 0 and buf[start + 1] < 0x80:
        raise DERError("non-minimal INTEGER at offset %d" % start)
    v = 0
    for i in range(start, end):
        v = (v << 8) | buf[i]
    return v


def oid_text(buf, start, end):
    """Dotted text ("1.2.840.113549.1.1.1") of the OBJECT IDENTIFIER
    content octets buf[start:end] (X.690 8.19). Raises DERError for an
    empty OID, a sub-identifier with a leading 0x80 octet or a truncated
    last sub-identifier."""
    if end <= start:
        raise DERError("empty OBJECT IDENTIFIER at offset %d" % start)
    parts = []
    v = 0
    first = True
    lead = True
    for i in range(start, end):
        b = buf[i]
        if lead and b == 0x80:
            raise DERError("non-minimal OBJECT IDENTIFIER at offset %d" % i)
        v = (v << 7) | (b & 0x7F)
        lead = not (b & 0x80)
        if lead:
            if first:
                if v < 80:
                    parts.append(str(v // 40))
                    parts.append(str(v % 40))
                else:
                    parts.append("2")
                    parts.append(str(v - 80))
                first = False
            else:
                parts.append(str(v))
            v = 0
    if not lead:
        raise DERError("truncated OBJECT IDENTIFIER at offset %d" % start)
    return ".".join(parts)


def equals(buf, start, end, value):
    """True when buf[start:end] holds exactly the bytes `value`; compares
    in place (for OIDs against constants)."""
    if end - start != len(value):
        return False
    for i in range(len(value)):
        if buf[start + i] != value[i]:
            return False
    return True
