# The strict UTF-8 check the device uses before decoding certificate
# strings and SAS fields (MicroPython's own decoder accepts overlong
# forms, surrogates and code points above U+10FFFF). tests/test_utf8_xcheck.py
# compares it with CPython's codec on random bytes.
from microagent import utf8
from mphelp import raises

CASES = (
    (b"", -1), (b"plain ascii", -1), (b"Z\xc3\xbcrich \xe2\x98\x83", -1), (b"\xf0\x9f\x98\x80", -1),
    (b"\xf4\x8f\xbf\xbf", -1),            # U+10FFFF, the last code point
    (b"\xed\x9f\xbf", -1),                # U+D7FF, just below the surrogates
    (b"\xee\x80\x80", -1),                # U+E000, just above them
    (b"a\xc0\xaf", 1),                    # overlong '/'
    (b"\xc1\xbf", 0),                     # overlong
    (b"\xe0\x80\xaf", 0),                 # overlong 3-byte
    (b"\xf0\x80\x80\xaf", 0),             # overlong 4-byte
    (b"ab\xed\xa0\x80", 2),               # U+D800, a surrogate
    (b"\xed\xbf\xbf", 0),                 # U+DFFF
    (b"\xf4\x90\x80\x80", 0),             # U+110000
    (b"\xf5\x80\x80\x80", 0), (b"\xff", 0), (b"\x80", 0), (b"a\xbf", 1),
    (b"\xe2\x82", 0), (b"\xe2\x82\x41", 0), (b"\xf0\x9f\x98", 0), (b"ok\xc3", 2),
)


def test_bad_finds_the_first_ill_formed_byte():
    for b, want in CASES:
        assert utf8.bad(b, 0, len(b)) == want, (b, utf8.bad(b, 0, len(b)))
    b = b"xx\xc0\xafxx"
    assert utf8.bad(b, 0, 2) == -1
    assert utf8.bad(memoryview(b), 1, 6) == 2
    assert utf8.bad(bytearray(b), 4, 6) == -1


def test_decode():
    assert utf8.decode(b"[Z\xc3\xbcrich]", 1, 8, "x") == "Z\u00fcrich"
    e = raises(ValueError, utf8.decode, b"dev\xed\xa0\x80", 0, 6, "sr")
    assert str(e) == "sr is not valid UTF-8 at offset 3"
