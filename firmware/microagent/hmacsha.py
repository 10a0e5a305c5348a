# HMAC-SHA256 (RFC 2104, FIPS 198-1) built on hashlib.sha256: no MicroPython
# port freezes an `hmac` module, and MicroPython's hashlib objects have no
# copy(), no block_size and a digest() that works once.
import hashlib

_BLOCK = 64  # SHA-256 block size in bytes


class HMAC:
    """HMAC-SHA256 of the data given to the constructor and update().

    key: bytes-like of any length (a key longer than the 64-byte block is
    hashed first, RFC 2104 s2); msg: optional first bytes-like chunk.
    digest() returns the 32-byte MAC; it may be called again (same result),
    but update() after digest() raises ValueError. A str key or message
    raises TypeError.
    """

    def __init__(self, key, msg=None):
        if isinstance(key, str):
            raise TypeError("HMAC key must be bytes, not str")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        pad = bytearray(b"\x36" * _BLOCK)
        for i in range(len(key)):  # no slice assignment: not on every port
            pad[i] ^= key[i]
        self._inner = hashlib.sha256(pad)
        for i in range(_BLOCK):
            pad[i] ^= 0x6A  # 0x36 ^ 0x5C: the inner pad becomes the outer pad
        self._outer = pad
        self._mac = None
        if msg is not None:
            self.update(msg)

    def update(self, msg):
        """Add bytes-like `msg` to the authenticated data."""
        if self._mac is not None:
            raise ValueError("HMAC already finalized")
        if isinstance(msg, str):
            raise TypeError("HMAC data must be bytes, not str")
        self._inner.update(msg)

    def digest(self):
        """The 32-byte MAC (bytes) of everything added so far."""
        if self._mac is None:
            h = hashlib.sha256(self._outer)
            h.update(self._inner.digest())
            self._mac = h.digest()
            self._inner = None
            self._outer = None
        return self._mac


def hmac_sha256(key, msg):
    """HMAC-SHA256(key, msg) as 32 bytes (RFC 2104 with SHA-256, RFC 4231
    test vectors). key, msg: bytes-like. Raises TypeError for str."""
    return HMAC(key, msg).digest()


def equal(a, b):
    """True when bytes-like a and b are equal, in time that depends only on
    their lengths (not on where they differ): for comparing MACs."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0
