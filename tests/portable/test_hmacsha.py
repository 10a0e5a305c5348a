# HMAC-SHA256 against RFC 4231 s4 (the published test vectors).
import binascii

from microagent import hmacsha
from mphelp import raises


def _hex(b):
    return binascii.hexlify(b).decode()


def test_rfc4231_case1():
    assert _hex(hmacsha.hmac_sha256(b"\x0b" * 20, b"Hi There")) == \
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"


def test_rfc4231_case2_short_key():
    assert _hex(hmacsha.hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_rfc4231_case3_high_bit_key_and_data():
    assert _hex(hmacsha.hmac_sha256(b"\xaa" * 20, b"\xdd" * 50)) == \
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"


def test_rfc4231_case4():
    key = bytes(range(1, 26))
    assert _hex(hmacsha.hmac_sha256(key, b"\xcd" * 50)) == \
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"


def test_rfc4231_case5_truncated_to_128_bits():
    assert _hex(hmacsha.hmac_sha256(b"\x0c" * 20, b"Test With Truncation")[:16]) == \
        "a3b6167473100ee06e0c796c2955552b"


def test_rfc4231_case6_key_longer_than_block():
    mac = hmacsha.hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert _hex(mac) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_rfc4231_case7_long_key_and_long_data():
    data = (b"This is a test using a larger than block-size key and a larger than block-size data."
            b" The key needs to be hashed before being used by the HMAC algorithm.")
    assert _hex(hmacsha.hmac_sha256(b"\xaa" * 131, data)) == \
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"


def test_key_of_exactly_one_block_is_not_hashed():
    # 64 bytes: used as is; 65 bytes: hashed first (RFC 2104 s2)
    k64 = bytes(range(64))
    assert _hex(hmacsha.hmac_sha256(k64, b"m")) == \
        "d7d8529cdc755cb721f7fe1decd5fd1b4e7d66123cfd795d5014e188c771ac96"
    k65 = bytes(range(65))
    import hashlib
    assert hmacsha.hmac_sha256(k65, b"m") == hmacsha.hmac_sha256(hashlib.sha256(k65).digest(), b"m")


def test_incremental_update_and_repeated_digest():
    h = hmacsha.HMAC(b"Jefe", b"what do ya ")
    h.update(bytearray(b"want for "))
    h.update(memoryview(b"nothing?"))
    first = h.digest()
    assert _hex(first) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert h.digest() == first
    e = raises(ValueError, h.update, b"more")
    assert str(e) == "HMAC already finalized"


def test_empty_key_and_message():
    assert _hex(hmacsha.hmac_sha256(b"", b"")) == \
        "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"


def test_str_is_refused():
    assert str(raises(TypeError, hmacsha.HMAC, "key")) == "HMAC key must be bytes, not str"
    assert str(raises(TypeError, hmacsha.hmac_sha256, b"k", "text")) == "HMAC data must be bytes, not str"


def test_equal():
    assert hmacsha.equal(b"abc", b"abc") is True
    assert hmacsha.equal(b"abc", bytearray(b"abc")) is True
    assert hmacsha.equal(b"abc", b"abd") is False
    assert hmacsha.equal(b"\x00bc", b"\x80bc") is False
    assert hmacsha.equal(b"abc", b"abcd") is False
    assert hmacsha.equal(b"", b"") is True
