# A strict DER reader (ITU-T X.690 section 10, as RFC 5280 certificates
# use it) over a buffer: bytes, bytearray or memoryview, read in place by
# offsets. Nothing here copies more than one small field, and no length
# read from the input is trusted before it was checked against the bytes
# that are really there. Error messages give offsets, tags and lengths
# (the DER structure), never content octets.
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

MAX_INT_OCTETS = const(64)  # longest INTEGER turned into an int (a serial)
MAX_OID_OCTETS = const(63)  # longest OBJECT IDENTIFIER (as `cryptography`)
MAX_SUBID_OCTETS = const(9)  # longest OID sub-identifier: 63 bits


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
        self.base = 0  # added to offsets in header()'s messages (a file read in pieces)
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
        Offsets in messages are pos + .base.
        """
        buf = self.buf
        if pos >= have:
            raise DERError("truncated: no tag at offset %d" % (pos + self.base))
        tag = buf[pos]
        if tag & 0x1F == 0x1F:
            raise DERError("high tag number at offset %d (not used in X.509)" % (pos + self.base))
        if pos + 1 >= have:
            raise DERError("truncated: no length at offset %d" % (pos + 1 + self.base))
        n = buf[pos + 1]
        start = pos + 2
        if n >= 0x80:
            k = n & 0x7F
            at = pos + 1 + self.base
            if k == 0:
                raise DERError("indefinite length at offset %d (not DER)" % at)
            if k > 4:
                raise DERError("length in %d octets at offset %d (more than 4)" % (k, at))
            if start + k > have:
                raise DERError("truncated: length octets at offset %d" % at)
            if buf[start] == 0:
                raise DERError("non-minimal length at offset %d (leading zero octet)" % at)
            n = 0
            for i in range(start, start + k):
                n = (n << 8) | buf[i]
            if n < 0x80:
                raise DERError("non-minimal length at offset %d (%d needs the short form)" % (at, n))
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
        buf = self.buf
        if pos + 1 < end:  # fast path: a low tag number and a short-form length
            n = buf[pos + 1]
            t = buf[pos]
            if n < 0x80 and t & 0x1F != 0x1F:
                start = pos + 2
                if n > end - start:
                    raise DERError("length %d at offset %d runs past the end (%d bytes left)" % (n, pos + 1, end - start))
                self.tag = t
                self.start = start
                self.length = n
                self.end = start + n
                return start
        start = self.header(pos, end)
        if self.length > end - start:
            raise DERError("length %d at offset %d runs past the end (%d bytes left)" % (self.length, pos + 1, end - start))
        return start

    def expect(self, pos, end, tag):
        """read() that also requires the tag. Returns .start. Raises
        DERError naming the expected and the found tag."""
        buf = self.buf
        if pos + 1 < end and buf[pos] == tag and buf[pos + 1] < 0x80:  # fast path as in read()
            n = buf[pos + 1]
            start = pos + 2
            if n > end - start:
                raise DERError("length %d at offset %d runs past the end (%d bytes left)" % (n, pos + 1, end - start))
            self.tag = tag
            self.start = start
            self.length = n
            self.end = start + n
            return start
        start = self.read(pos, end)
        if self.tag != tag:
            raise DERError("expected %s at offset %d, found tag 0x%02x" % (_name(tag), pos, self.tag))
        return start

    def walk(self, s, e):
        """Check that buf[s:e] is nothing but strict DER elements, the
        contents of constructed ones included, however deep: definite
        lengths in their shortest form, each constructed element's
        children filling it exactly, universal types in the form DER
        gives them (SEQUENCE and SET constructed, the others primitive;
        BOOLEAN 00/FF, minimal INTEGER and ENUMERATED, empty NULL, BIT
        STRING with at most 7 zero padding bits, OBJECT IDENTIFIER as
        check_oid()). For the elements a reader skips (extensions,
        algorithm parameters). Reads headers in place, allocates nothing
        and does not recurse: every constructed element's children are
        checked to tile it, then the walk goes on through them in order.
        Clobbers .tag/.start/.end. Raises DERError.
        """
        buf = self.buf
        p = s
        while p < e:
            cs = self.read(p, e)
            t = self.tag
            ce = self.end
            if t & 0x20:
                n = t & 0x1F
                if not t & 0xC0 and n != 16 and n != 17 and n != 8 and n != 11:
                    raise DERError("constructed %s at offset %d (DER: primitive)" % (_name(t & 0xDF), p))
                q = cs
                while q < ce:
                    self.read(q, ce)
                    q = self.end
                p = cs
            else:
                check_primitive(buf, t, cs, ce, p)
                p = ce


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


def check_primitive(buf, tag, s, e, pos):
    """The DER rules for the content buf[s:e] of a primitive element with
    tag `tag` at offset `pos` (see Reader.walk()); other tags pass.
    Raises DERError."""
    if tag & 0xC0:
        return
    if tag == 0x01:
        if e - s != 1 or (buf[s] != 0 and buf[s] != 0xFF):
            raise DERError("BOOLEAN at offset %d is not one octet 00 or FF" % pos)
    elif tag == INTEGER or tag == 0x0A:
        check_int(buf, s, e)
    elif tag == BIT_STRING:
        check_bits(buf, s, e)
    elif tag == NULL:
        if e != s:
            raise DERError("NULL at offset %d is not empty" % pos)
    elif tag == OID:
        check_oid(buf, s, e)
    elif tag == 0 or tag == 0x10 or tag == 0x11:
        raise DERError("%s at offset %d (not DER)" % ("end-of-contents" if tag == 0 else "primitive " + _name(tag | 0x20), pos))


def check_int(buf, s, e):
    """An INTEGER's content buf[s:e]: not empty, in its shortest form
    (X.690 8.3.2). Raises DERError; converts nothing."""
    if e <= s:
        raise DERError("empty INTEGER at offset %d" % s)
    if e - s > 1:
        b0 = buf[s]
        b1 = buf[s + 1]
        if (b0 == 0 and b1 < 0x80) or (b0 == 0xFF and b1 >= 0x80):
            raise DERError("non-minimal INTEGER at offset %d" % s)


def check_bits(buf, s, e):
    """A BIT STRING's content buf[s:e]: the unused-bits octet is 0 to 7,
    0 when there are no bits, and the unused bits are zero (X.690
    11.2.1). Raises DERError."""
    if e <= s or buf[s] > 7 or (e - s == 1 and buf[s]):
        raise DERError("bad BIT STRING at offset %d" % s)
    if buf[e - 1] & ((1 << buf[s]) - 1):
        raise DERError("BIT STRING at offset %d: unused bits not zero" % s)


def check_oid(buf, s, e):
    """An OBJECT IDENTIFIER's content buf[s:e] (X.690 8.19): not empty,
    at most MAX_OID_OCTETS (63) octets, each sub-identifier in its
    shortest form (no leading 0x80) and at most MAX_SUBID_OCTETS (9: 63
    bits), the last one complete. Raises DERError; allocates nothing."""
    if e <= s:
        raise DERError("empty OBJECT IDENTIFIER at offset %d" % s)
    if e - s > MAX_OID_OCTETS:
        raise DERError("OBJECT IDENTIFIER of %d octets at offset %d (more than %d)" % (e - s, s, MAX_OID_OCTETS))
    k = 0
    for i in range(s, e):
        b = buf[i]
        if k == 0 and b == 0x80:
            raise DERError("non-minimal OBJECT IDENTIFIER at offset %d" % i)
        k += 1
        if k > MAX_SUBID_OCTETS:
            raise DERError("OBJECT IDENTIFIER sub-identifier of more than %d octets at offset %d" % (MAX_SUBID_OCTETS, i - k + 1))
        if not b & 0x80:
            k = 0
    if k:
        raise DERError("truncated OBJECT IDENTIFIER at offset %d" % s)


def _name(tag):
    if tag == SEQUENCE:
        return "SEQUENCE"
    if tag == INTEGER:
        return "INTEGER"
    if tag == BIT_STRING:
        return "BIT STRING"
    if tag == OCTET_STRING:
        return "OCTET STRING"
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
    empty or non-minimal encoding (a needless leading 0x00 or 0xFF) and
    for more than MAX_INT_OCTETS (64) octets: no input makes an unbounded
    int (or, through str(), an unbounded text).
    """
    if end - start > MAX_INT_OCTETS:
        raise DERError("INTEGER of %d octets at offset %d (more than %d)" % (end - start, start, MAX_INT_OCTETS))
    return signed(bytes(buf[start:end]), start)


def signed(octets, offset=0):
    """signed INTEGER content octets (bytes) -> int; see integer().
    offset only names the place in error messages."""
    n = len(octets)
    if n > MAX_INT_OCTETS:
        raise DERError("INTEGER of %d octets at offset %d (more than %d)" % (n, offset, MAX_INT_OCTETS))
    if n == 0:
        raise DERError("empty INTEGER at offset %d" % offset)
    if n > 1:
        b0 = octets[0]
        b1 = octets[1]
        if (b0 == 0 and b1 < 0x80) or (b0 == 0xFF and b1 >= 0x80):
            raise DERError("non-minimal INTEGER at offset %d" % offset)
    v = int.from_bytes(octets, "big")
    if octets[0] & 0x80:
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
    content octets buf[start:end] (X.690 8.19). Raises DERError as
    check_oid() does (so the text is at most a few hundred characters)."""
    check_oid(buf, start, end)
    parts = []
    v = 0
    first = True
    lead = True
    for i in range(start, end):
        b = buf[i]
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
