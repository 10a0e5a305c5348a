# Strict DER in every element of a certificate, the ones the reader skips
# included, and bounds on what a field may turn into (serial, OID, CN):
# the same verdict and message on CPython and the unix port.
# tests/test_x509_xcheck.py checks that `cryptography` refuses the same
# variants.
import binascii

import dertree
from microagent import der, x509
from mphelp import raises
from mphelp import fixture, read_fixture as _read


def fixture_ders():
    """(name, DER) of the fixture certificates: RSA, EC P-256, EC P-384,
    Ed25519 (forever.pem, base64-decoded here)."""
    out = [(n, _read(n)) for n in ("leaf.der", "ca.der", "p384.der")]
    lines = _read("forever.pem").split(b"\n")
    out.append(("forever", binascii.a2b_base64(b"".join(lines[1:-2]))))
    return out


def variants(d):
    """(path, form, DER) of every element of certificate `d` written with
    a non-minimal length, an indefinite length, or (constructed ones) a
    stray byte at the end of its content: none of them is DER."""
    t = dertree.parse(d)
    assert dertree.ser(t) == d
    out = []
    for p in dertree.paths(t):
        forms = ("long", "indef", "junk") if isinstance(dertree.node(t, p)[1], list) else ("long", "indef")
        for f in forms:
            out.append((p, f, dertree.ser(t, p, f)))
    return out


def test_every_element_in_a_non_der_form_is_refused():
    import gc
    n = 0
    for name, d in fixture_ders():
        t = dertree.parse(d)
        assert dertree.ser(t) == d
        for p in dertree.paths(t):
            forms = ("long", "indef", "junk") if isinstance(dertree.node(t, p)[1], list) else ("long", "indef")
            for f in forms:
                raises(der.DERError, x509.parse, dertree.ser(t, p, f))
                n += 1
            gc.collect()
    assert n == 375  # every element of the four fixtures, three or two forms each


def _leaf_with(path, form):
    return dertree.ser(dertree.parse(_read("leaf.der")), path, form)


def test_skipped_elements_are_checked_with_their_offsets():
    # (path in leaf.der, form, message): the places the reader used to skip
    cases = (
        ((0, 0, 2, 0), "indef", "indefinite length at offset 26 (not DER)"),        # signature algorithm OID
        ((0, 0, 2), "long", "non-minimal length at offset 24 (10 needs the short form)"),
        ((0, 0, 6, 0, 1), "long", "non-minimal length at offset 150 (leading zero octet)"),  # RSA NULL parameters
        ((0, 0, 7, 0), "indef", "indefinite length at offset 429 (not DER)"),       # the Extensions SEQUENCE
        ((0, 0, 7, 0, 1), "junk", "bytes after an extension value at offset 497"),
        ((0, 0, 7, 0, 1, 0), "long", "non-minimal length at offset 447 (3 needs the short form)"),
        ((0, 0, 7, 0, 0, 2), "indef", "indefinite length at offset 441 (not DER)"),
        ((0, 1), "long", "non-minimal length at offset 498 (10 needs the short form)"),  # signatureAlgorithm
        ((0, 1, 0), "indef", "indefinite length at offset 500 (not DER)"),
        ((0, 2), "long", "non-minimal length at offset 510 (72 needs the short form)"),  # signature BIT STRING
    )
    for path, form, msg in cases:
        e = raises(der.DERError, x509.parse, _leaf_with(path, form))
        assert str(e) == msg, (path, form, str(e))


def test_der_rules_of_primitive_types_in_skipped_elements():
    cases = (
        ((0, 0, 7, 0, 0, 1), b"\x01", "BOOLEAN at offset 437 is not one octet 00 or FF"),
        ((0, 0, 7, 0, 0, 1), b"\x00", "critical FALSE encoded at offset 437 (DER leaves the DEFAULT out)"),
        ((0, 0, 6, 0, 1), b"\x00", "NULL at offset 149 is not empty"),
        ((0, 0, 2, 0), b"\x2a\x86\x48\xce\x3d\x04\x03\x82", "truncated OBJECT IDENTIFIER at offset 27"),
        ((0, 0, 2, 0), b"\x2a\x80\x86\x48\xce\x3d\x04\x03\x02", "non-minimal OBJECT IDENTIFIER at offset 28"),
        ((0, 0, 7, 0, 1, 0), b"\x55\x80\x1d", "non-minimal OBJECT IDENTIFIER at offset 449"),
        ((0, 2), b"\x01\x31", "BIT STRING at offset 511: unused bits not zero"),
        ((0, 2), b"\x08\x00", "bad BIT STRING at offset 511"),
        ((0, 2), b"\x01", "bad BIT STRING at offset 511"),
    )
    for path, content, msg in cases:
        e = raises(der.DERError, x509.parse, _leaf_with(path, content))
        assert str(e) == msg, (path, content, str(e))
    # a constructed (BER) OCTET STRING as an extension value
    t = dertree.parse(_read("leaf.der"))
    dertree.node(t, (0, 0, 7, 0, 0, 2))[0] = 0x24
    e = raises(der.DERError, x509.parse, dertree.ser(t))
    assert str(e) == "expected OCTET STRING at offset 440, found tag 0x24"
    # unique IDs are IMPLICIT BIT STRINGs: primitive [1]/[2] only
    t = dertree.parse(_read("leaf.der"))
    tbs = dertree.node(t, (0, 0))[1]
    tbs.insert(7, [0xA1, [[0x03, b"\x00", 2]], 2])
    e = raises(der.DERError, x509.parse, dertree.ser(t))
    assert str(e) == "unexpected tag 0xa1 in tbsCertificate at offset 426"
    tbs[7] = [0x81, b"\x00\x01", 2]
    c = x509.parse(dertree.ser(t))
    assert c.subject_cn == "dev-01"
    tbs[7] = [0x81, b"\x01\x01", 2]
    assert str(raises(der.DERError, x509.parse, dertree.ser(t))) == "BIT STRING at offset 428: unused bits not zero"


def test_walk_checks_nesting_without_recursion_or_allocation():
    # 2000 nested SEQUENCEs around a NULL: deeper than any recursion limit
    b = b"\x05\x00"
    for i in range(2000):
        b = b"\x30" + dertree.length(len(b)) + b
    r = der.Reader(b)
    import gc
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    r.walk(0, len(b))
    if hasattr(gc, "mem_alloc"):  # MicroPython: the walk allocates nothing
        assert gc.mem_alloc() - before == 0
    bad = b[:-2] + b"\x05\x01"  # a NULL claiming one byte, 2000 levels down (lengths unchanged)
    e = raises(der.DERError, der.Reader(bad).walk, 0, len(bad))
    assert str(e) == "length 1 at offset %d runs past the end (0 bytes left)" % (len(bad) - 1)
    bad = b"\x05\x01\x00"  # a NULL with content, 2000 levels down
    for i in range(2000):
        bad = b"\x30" + dertree.length(len(bad)) + bad
    e = raises(der.DERError, der.Reader(bad).walk, 0, len(bad))
    assert str(e) == "NULL at offset %d is not empty" % (len(bad) - 3)


def test_walk_refuses_what_der_forbids():
    cases = (
        ("3003 0500", "length 3 at offset 1 runs past the end (2 bytes left)"),
        ("3003 0500 00", "truncated: no length at offset 5"),       # children do not fill the parent
        ("3080 0500 0000", "indefinite length at offset 1 (not DER)"),
        ("3081 02 0500", "non-minimal length at offset 1 (2 needs the short form)"),
        ("1000", "primitive SEQUENCE at offset 0 (not DER)"),
        ("2400", "constructed OCTET STRING at offset 0 (DER: primitive)"),
        ("0000", "end-of-contents at offset 0 (not DER)"),
        ("0101 01", "BOOLEAN at offset 0 is not one octet 00 or FF"),
        ("0200", "empty INTEGER at offset 2"),
        ("0202 007f", "non-minimal INTEGER at offset 2"),
        ("0a02 ff80", "non-minimal INTEGER at offset 2"),
        ("0302 0601", "BIT STRING at offset 2: unused bits not zero"),
        ("0600", "empty OBJECT IDENTIFIER at offset 2"),
    )
    for hexa, msg in cases:
        b = binascii.unhexlify(hexa.replace(" ", ""))
        e = raises(der.DERError, der.Reader(b).walk, 0, len(b))
        assert str(e) == msg, (hexa, str(e))
    ok = binascii.unhexlify("3013 0101ff 020180 0a0101 03020780 0500 a000 8000".replace(" ", ""))
    der.Reader(ok).walk(0, len(ok))  # context tags: structure only


def _with_serial(octets):
    t = dertree.parse(_read("leaf.der"))
    dertree.node(t, (0, 0, 1))[1] = octets
    return dertree.ser(t)


def test_serial_of_at_most_64_octets():
    c = x509.parse(_with_serial(b"\x7f" + b"\xff" * 63))
    assert c.serial == (1 << 511) - 1
    assert len(str(c.serial)) == 154
    c = x509.parse(_with_serial(b"\x80" + b"\x00" * 63))
    assert c.serial == -(1 << 511)
    e = raises(der.DERError, x509.parse, _with_serial(b"\x7f" + b"\xff" * 64))
    assert str(e) == "serial number of 65 octets at offset 15 (more than 64)"
    e = raises(der.DERError, x509.parse, _with_serial(b"\x01" * 2001))
    assert str(e) == "serial number of 2001 octets at offset 17 (more than 64)"
    assert str(raises(der.DERError, der.integer, b"\x01" * 65, 0, 65)) == "INTEGER of 65 octets at offset 0 (more than 64)"


def _with_key_oid(content):
    t = dertree.parse(_read("leaf.der"))
    dertree.node(t, (0, 0, 6, 0, 0))[1] = content
    return dertree.ser(t)


def test_oid_bounds():
    # an unknown key algorithm: its OID is shown as text, so it is bounded
    c = x509.parse(_with_key_oid(b"\x2b" + b"\x01" * 62))
    assert c.key_type == "1.3" + ".1" * 62
    c = x509.parse(_with_key_oid(b"\x2b" + b"\xff" * 8 + b"\x7f"))
    assert c.key_type == "1.3.%d" % ((1 << 63) - 1)
    cases = (
        (b"\x2b" + b"\x01" * 63, "OBJECT IDENTIFIER of 64 octets at offset 140 (more than 63)"),
        (b"\x2b" + b"\xff" * 9 + b"\x7f", "OBJECT IDENTIFIER sub-identifier of more than 9 octets at offset 141"),
        (b"\x2b" + b"\xff" * 2000 + b"\x7f", "OBJECT IDENTIFIER of 2002 octets at offset 144 (more than 63)"),
    )
    for content, msg in cases:
        e = raises(der.DERError, x509.parse, _with_key_oid(content))
        assert str(e) == msg, (len(content), str(e))
    b = b"\x2b" + b"\xff" * 9 + b"\x7f"
    assert str(raises(der.DERError, der.oid_text, b, 0, len(b))) == \
        "OBJECT IDENTIFIER sub-identifier of more than 9 octets at offset 1"


def _with_cn(tag, content, path=(0, 0, 5, 0, 0, 1)):
    t = dertree.parse(_read("leaf.der"))
    n = dertree.node(t, path)
    n[0] = tag
    n[1] = content
    return dertree.ser(t)


def test_utf8_cn_is_strict_on_both_interpreters():
    # MicroPython's own decoder accepts all of these
    cases = (
        (b"dev\xc0\xaf01", "UTF8String is not valid UTF-8 at offset 129"),    # overlong '/'
        (b"dev\xed\xa0\x8001", "UTF8String is not valid UTF-8 at offset 129"),  # a surrogate
        (b"dev\xf4\x90\x80\x80", "UTF8String is not valid UTF-8 at offset 129"),  # above U+10FFFF
        (b"dev\xe2\x82", "UTF8String is not valid UTF-8 at offset 129"),      # truncated
        (b"\xff", "UTF8String is not valid UTF-8 at offset 126"),
    )
    for content, msg in cases:
        e = raises(der.DERError, x509.parse, _with_cn(0x0C, content))
        assert str(e) == msg, (content, str(e))
    assert x509.parse(_with_cn(0x0C, b"dev-\xf0\x9f\x98\x80")).subject_cn == "dev-\U0001F600"
    # every UTF8String of a name, not only the CN
    e = raises(der.DERError, x509.parse, _with_cn(0x0C, b"Con\xc0\xaf", (0, 0, 3, 0, 0, 1)))
    assert str(e) == "UTF8String is not valid UTF-8 at offset 51"


def test_bmp_and_universal_strings_hold_characters_only():
    assert x509.parse(_with_cn(0x1E, b"\x00d\x00e\x00v\x26\x03")).subject_cn == "dev\u2603"
    e = raises(der.DERError, x509.parse, _with_cn(0x1E, b"\x00d\xd8\x3d\xde\x00"))
    assert str(e) == "BMPString with a surrogate at offset 128"
    assert x509.parse(_with_cn(0x1C, b"\x00\x01\xf6\x00")).subject_cn == "\U0001F600"
    e = raises(der.DERError, x509.parse, _with_cn(0x1C, b"\x00\x11\x00\x00"))
    assert str(e) == "UniversalString with a code point that is not a character at offset 126"
    e = raises(der.DERError, x509.parse, _with_cn(0x1C, b"\x00\x00\xdf\xff"))
    assert str(e) == "UniversalString with a code point that is not a character at offset 126"


def test_cn_of_at_most_256_octets():
    assert x509.parse(_with_cn(0x0C, b"a" * 256)).subject_cn == "a" * 256
    e = raises(der.DERError, x509.parse, _with_cn(0x0C, b"a" * 257))
    assert str(e) == "CN of 257 octets at offset 134 (more than 256)"


def test_explicit_version_1_is_not_der():
    t = dertree.parse(_read("leaf.der"))
    dertree.node(t, (0, 0, 0, 0))[1] = b"\x00"
    e = raises(der.DERError, x509.parse, dertree.ser(t))
    assert str(e) == "version 1 encoded at offset 8 (DER leaves the DEFAULT out)"
