# IoT Hub SAS tokens ("Control access to IoT Hub with shared access
# signatures", learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas):
#   SharedAccessSignature sr={URL-encoded resource}&sig={URL-encoded base64
#   HMAC-SHA256}&se={expiry, s since 1970}[&skn={policy name}]
# sig = base64(HMAC-SHA256(base64-decoded key, sr + "\n" + se)), with sr and
# se exactly as they appear in the token.
# Strict on purpose: a token this module accepts is one IoT Hub would read
# the same way. Error messages never contain the key, sig or token text.
import binascii

from . import platform
from .hmacsha import equal, hmac_sha256

PREFIX = "SharedAccessSignature "
_FIELDS = ("sr", "sig", "se", "skn")
MAX_SE_DIGITS = 20  # far beyond any real expiry; bounds int() and compares
SIG_BYTES = 32  # HMAC-SHA256


class Token:
    """A parsed SAS token (made by parse()).

    sr: the sr value exactly as in the token (what is signed); resource: sr
    percent-decoded, e.g. "hub.azure-devices.net/devices/dev-01"; hub,
    device, module: parts of resource (device and module None when absent);
    se: the se digits exactly as in the token (what is signed); sig: the
    decoded signature (32 bytes); policy: skn percent-decoded, or None
    when absent or empty.
    """

    def __init__(self, sr, se, sig, policy):
        self.sr = sr
        self.se = se
        self.sig = sig
        self.policy = unquote(policy, "skn") if policy else None
        self.resource = unquote(sr, "sr")
        r = self.resource
        i = r.find("/")
        self.hub = r if i < 0 else r[:i]
        self.device = self.module = None
        if i >= 0 and r.startswith("devices/", i + 1):
            seg = r[i + 9:].split("/")
            self.device = seg[0] or None
            if len(seg) > 2 and seg[1] == "modules":
                self.module = seg[2] or None


def _show(name):
    # an unknown field's name is shown only when it cannot be a piece of a
    # signature or key: 1 to 8 ASCII letters and digits
    if 0 < len(name) <= 8:
        for c in name:
            if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9"):
                break
        else:
            return "'%s'" % name
    return "(name not shown)"


def parse(token):
    """Parse a SAS token.

    token: str "SharedAccessSignature sr=...&sig=...&se=...[&skn=...]",
    fields in any order, each at most once; an empty skn counts as absent.
    sr must be non-empty, se 1 to 20 decimal digits, sig the percent-encoded
    canonical base64 of 32 bytes (percent-decoding only: '+' stays '+';
    the bits after the last byte zero: IoT Hub compares sig as text, so a
    sig that only decodes to the right bytes is refused). sr and skn must
    be strict UTF-8 once percent-decoded (utf8.bad()).
    Returns a Token. Raises ValueError saying what is wrong (an unknown or
    repeated field, a missing or empty one, a bad percent-escape, base64 or
    length); the message never quotes the token's values.
    """
    if not isinstance(token, str):
        raise ValueError("not text (%s)" % type(token).__name__)
    if not token.startswith(PREFIX):
        raise ValueError("not a SAS token: it must start with 'SharedAccessSignature '")
    vals = [None, None, None, None]
    for part in token[len(PREFIX):].split("&"):
        eq = part.find("=")
        if eq < 0:
            if not part:
                raise ValueError("empty field ('&' at an end or doubled)")
            raise ValueError("field %s has no '='" % _show(part))
        name = part[:eq]
        for i in range(4):
            if _FIELDS[i] == name:
                break
        else:
            raise ValueError("unknown field %s (allowed: sr, sig, se, skn)" % _show(name))
        if vals[i] is not None:
            raise ValueError("repeated field '%s'" % name)
        vals[i] = part[eq + 1:]
    for i in range(3):
        if vals[i] is None:
            raise ValueError("no '%s' field" % _FIELDS[i])
        if not vals[i]:
            raise ValueError("field '%s' is empty" % _FIELDS[i])
    se = vals[2]
    for c in se:
        if not "0" <= c <= "9":
            raise ValueError("se must be decimal digits (UTC seconds since 1970)")
    if len(_digits(se)) > MAX_SE_DIGITS:
        raise ValueError("se has more than %d digits" % MAX_SE_DIGITS)
    sig = b64decode(unquote(vals[1], "sig"), "sig", True)
    if len(sig) != SIG_BYTES:
        raise ValueError("sig is %d bytes, an HMAC-SHA256 is %d" % (len(sig), SIG_BYTES))
    return Token(vals[0], se, sig, vals[3] or None)


def _hexval(c):
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20
    if 97 <= c <= 102:
        return c - 87
    return -1


def unquote(text, what="value"):
    """Percent-decode str `text` (RFC 3986 s2.1; '+' is NOT a space) and
    return the UTF-8 text. `what` names the field in errors. Raises
    ValueError for a '%' not followed by two hex digits, or bytes that are
    not strict UTF-8 (RFC 3629: no overlong forms, surrogates or code
    points above U+10FFFF, refused alike on CPython and MicroPython)."""
    if "%" not in text:
        return text
    b = text.encode()
    out = bytearray()
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c == 37:  # '%'
            h = _hexval(b[i + 1]) if i + 1 < n else -1
            l = _hexval(b[i + 2]) if i + 2 < n else -1
            if h < 0 or l < 0:
                raise ValueError("%s: bad percent-escape at character %d" % (what, i))
            c = h * 16 + l
            i += 3
        else:
            i += 1
        out.append(c)
    if out and max(out) >= 0x80:  # only then is the check (and its module) needed
        from . import utf8
        if utf8.bad(out, 0, len(out)) >= 0:
            raise ValueError("%s is not UTF-8 after percent-decoding" % what)
    return str(out, "utf-8")


def b64decode(text, what="value", canonical=False):
    """Decode standard base64 (RFC 4648 s4) strictly: length a multiple of
    4, only A-Z a-z 0-9 + /, '=' only as the last one or two characters
    (binascii.a2b_base64 would skip anything else silently). canonical:
    also require the bits after the last byte to be zero (RFC 4648 s3.5),
    so that only one text decodes to the bytes. `what` names the field in
    errors. Returns bytes; raises ValueError."""
    n = len(text)
    if n == 0 or n % 4:
        raise ValueError("%s is not base64: length %d is not a multiple of 4" % (what, n))
    for i in range(n):
        c = text[i]
        if not ("A" <= c <= "Z" or "a" <= c <= "z" or "0" <= c <= "9" or c == "+" or c == "/"):
            if c == "=" and (i == n - 1 or (i == n - 2 and text[n - 1] == "=")):
                continue
            raise ValueError("%s is not base64 (character %d)" % (what, i))
    raw = binascii.a2b_base64(text)
    if canonical and binascii.b2a_base64(raw)[:-1] != text.encode():
        # only the character before the '=' padding can differ
        raise ValueError("%s is not canonical base64 (character %d leaves bits after the last byte)"
                         % (what, n - 3 if text[n - 2] == "=" else n - 2))
    return raw


def decode_key(text):
    """The key bytes of a base64 key (a device's or policy's primary or
    secondary key, as IoT Hub shows it). Strict base64, but bits after
    the last byte are not refused: the key is only ever used as bytes,
    never compared as text. Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("key must be base64 text")
    return b64decode(text, "key")


def signature(token, key):
    """HMAC-SHA256 (32 bytes) of token.sr + "\\n" + token.se under `key`
    (bytes, already base64-decoded)."""
    return hmac_sha256(key, (token.sr + "\n" + token.se).encode())


def verify(token, key):
    """True when token.sig is the signature under `key` (bytes, already
    base64-decoded); compared in constant time."""
    return equal(signature(token, key), token.sig)


def _digits(s):
    # decimal text without leading zeros ("0" for zero)
    i = 0
    while i < len(s) - 1 and s[i] == "0":
        i += 1
    return s[i:] if i else s


def se_value(se):
    """Token.se (decimal text, at most 20 significant digits after
    parse()) as an int: leading zeros are dropped first, so no se makes
    a long int() conversion."""
    return int(_digits(se))


def expired(se, now):
    """True when a token with expiry `se` (Token.se: decimal text, UTC
    seconds since 1970) has expired at `now` (int UTC seconds, >= 0), that
    is now >= se. Compares decimal text, so an se of any size costs no
    big-int arithmetic. Raises ValueError for a negative now."""
    if now < 0:
        raise ValueError("now must be >= 0")
    a = _digits(se)
    b = str(now)
    if len(a) != len(b):
        return len(a) < len(b)
    return a <= b


# one formatter for the whole agent: platform.iso8601 (integer arithmetic,
# no 2038 or 31-bit limit)
iso8601 = platform.iso8601
