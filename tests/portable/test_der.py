import binascii

from microagent import der
from mphelp import raises


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def test_serial_vector_reads_negative():
    b = _h("0210ee2b3debd421de14a862ac04f3ddc401")
    s, e = der.expect(b, 0, len(b), der.INTEGER)
    assert (s, e) == (2, 18)
    assert der.integer(b, s, e) == -23701579247955709139626555126524820479


def test_integer_signs_and_minimal_form():
    assert der.integer(_h("00"), 0, 1) == 0
    assert der.integer(_h("7f"), 0, 1) == 127
    assert der.integer(_h("0080"), 0, 2) == 128
    assert der.integer(_h("80"), 0, 1) == -128
    assert der.integer(_h("ff7f"), 0, 2) == -129
    assert der.integer(_h("ff"), 0, 1) == -1
    # 20-byte serial with the top bit set in its first octet: 21 octets
    b = _h("00" + "ff" * 20)
    assert der.integer(b, 0, 21) == (1 << 160) - 1
    assert str(raises(der.DERError, der.integer, _h("0005"), 0, 2)) == "non-minimal INTEGER at offset 0"
    assert str(raises(der.DERError, der.integer, _h("ff80"), 0, 2)) == "non-minimal INTEGER at offset 0"
    assert str(raises(der.DERError, der.integer, b"", 0, 0)) == "empty INTEGER at offset 0"


def test_small_int():
    assert der.small_int(_h("02"), 0, 1) == 2
    assert der.small_int(_h("00ff"), 0, 2) == 255
    assert der.small_int(_h("7fffff"), 0, 3) == 0x7FFFFF
    raises(der.DERError, der.small_int, _h("80"), 0, 1)
    raises(der.DERError, der.small_int, _h("01020304"), 0, 4)
    raises(der.DERError, der.small_int, _h("0001"), 0, 2)


def test_short_and_long_form_lengths():
    assert der.tlv(_h("0403616263"), 0, 5) == (4, 2, 5)
    b = _h("0481") + bytes([0x80]) + b"x" * 0x80
    assert der.tlv(b, 0, len(b)) == (4, 3, 3 + 0x80)
    b = _h("048201 00") + b"x" * 0x100
    assert der.tlv(b, 0, len(b)) == (4, 4, 4 + 0x100)
    # a TLV inside a buffer: offsets are the buffer's
    b = _h("ffff 0400 ffff")
    assert der.tlv(b, 2, 4) == (4, 4, 4)
    assert der.peek(_h("3084 7fffffff"), 0, 6) == (0x30, 6, 0x7FFFFFFF)


def test_refused_headers():
    cases = (
        ("", "truncated: no tag at offset 0"),
        ("30", "truncated: no length at offset 1"),
        ("3080 0000", "indefinite length at offset 1 (not DER)"),
        ("3081 05 0000000000", "non-minimal length at offset 1 (5 needs the short form)"),
        ("3082 0085" + "00" * 0x85, "non-minimal length at offset 1 (leading zero octet)"),
        ("3085 0100000000", "length in 5 octets at offset 1 (more than 4)"),
        ("30ff", "length in 127 octets at offset 1 (more than 4)"),
        ("3082 01", "truncated: length octets at offset 1"),
        ("3003 0000", "length 3 at offset 1 runs past the end (2 bytes left)"),
        ("3084 7fffffff 00", "length 2147483647 at offset 1 runs past the end (1 bytes left)"),
        ("3f00", "high tag number at offset 0 (not used in X.509)"),
    )
    for hexa, msg in cases:
        b = _h(hexa)
        e = raises(der.DERError, der.tlv, b, 0, len(b))
        assert str(e) == msg, (hexa, str(e))
    # a length that fits the buffer but not the enclosing element
    b = _h("3003 0403 6162 63")
    s, e = der.expect(b, 0, len(b), der.SEQUENCE)
    assert str(raises(der.DERError, der.tlv, b, s, e)) == "length 3 at offset 3 runs past the end (1 bytes left)"


def test_expect_names_the_tags():
    b = _h("0400")
    e = raises(der.DERError, der.expect, b, 0, 2, der.SEQUENCE)
    assert str(e) == "expected SEQUENCE at offset 0, found tag 0x04"
    assert isinstance(e, ValueError)


def test_huge_claimed_length_allocates_nothing_proportional():
    import gc
    b = _h("3084 7fffffff 3082ffff")
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    raises(der.DERError, der.tlv, b, 0, len(b))
    if hasattr(gc, "mem_alloc"):  # MicroPython: heap growth in bytes
        assert gc.mem_alloc() - before < 1024


def test_oid_text():
    b = _h("2a864886f70d010101")
    assert der.oid_text(b, 0, len(b)) == "1.2.840.113549.1.1.1"
    b = _h("550403")
    assert der.oid_text(b, 0, 3) == "2.5.4.3"
    b = _h("8837")  # 2.999
    assert der.oid_text(b, 0, 2) == "2.999"
    b = _h("2b8100")  # 1.3.128
    assert der.oid_text(b, 0, 3) == "1.3.128"
    b = _h("2b81")  # truncated last sub-identifier
    assert str(raises(der.DERError, der.oid_text, b, 0, 2)) == "truncated OBJECT IDENTIFIER at offset 0"
    b = _h("2b80 01")  # leading 0x80
    raises(der.DERError, der.oid_text, b, 0, 3)
    raises(der.DERError, der.oid_text, b, 0, 0)


def test_equals_in_place():
    b = _h("0006 550403 ff")
    assert der.equals(b, 2, 5, b"\x55\x04\x03")
    assert not der.equals(b, 2, 6, b"\x55\x04\x03")
    assert not der.equals(b, 2, 5, b"\x55\x04\x04")
    assert der.equals(memoryview(b), 2, 5, b"\x55\x04\x03")


def test_header_offsets_with_a_base():
    # a file read a header at a time: messages give the file's offsets
    r = der.Reader(_h("3080"))
    r.base = 1000
    assert str(raises(der.DERError, r.header, 0, 2)) == "indefinite length at offset 1001 (not DER)"
    r = der.Reader(_h("30"))
    r.base = 583
    assert str(raises(der.DERError, r.header, 0, 1)) == "truncated: no length at offset 584"


def test_check_helpers():
    der.check_int(_h("00ff"), 0, 2)
    der.check_bits(_h("0780"), 0, 2)
    der.check_bits(_h("00"), 0, 1)
    der.check_oid(_h("2a864886f70d010101"), 0, 9)
    assert str(raises(der.DERError, der.check_int, _h("ff80"), 0, 2)) == "non-minimal INTEGER at offset 0"
    assert str(raises(der.DERError, der.check_bits, _h("0781"), 0, 2)) == "BIT STRING at offset 0: unused bits not zero"
    assert str(raises(der.DERError, der.check_bits, _h("01"), 0, 1)) == "bad BIT STRING at offset 0"
    assert str(raises(der.DERError, der.check_oid, _h("2b" + "01" * 63), 0, 64)) == \
        "OBJECT IDENTIFIER of 64 octets at offset 0 (more than 63)"
    assert str(raises(der.DERError, der.check_oid, _h("2b8000"), 0, 3)) == "non-minimal OBJECT IDENTIFIER at offset 1"
