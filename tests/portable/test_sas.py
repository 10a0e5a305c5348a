# SAS token parsing and verification. The signatures below were computed
# with CPython's hmac/base64 (the reference); tests/test_sas_xcheck.py
# cross-checks many more with hypothesis.
from microagent import sas
from mphelp import raises

KEY = "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU="
# the must-hold tokens: sr URL-encoded, and sr left raw
TOK_ENC = ("SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01"
           "&sig=OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D&se=1900000000")
TOK_RAW = ("SharedAccessSignature sr=contoso-hub.azure-devices.net/devices/dev-01"
           "&sig=u7cq3gZ2c19vUp6ct0RFuxDG31rNM0nCdPSgaYE1%2BGY%3D&se=1900000000")
SR = "contoso-hub.azure-devices.net%2Fdevices%2Fdev-01"


def _key():
    return sas.decode_key(KEY)


def _tok(fields):
    return sas.PREFIX + "&".join(fields)


def _perms(items):
    # itertools.permutations is not on every MicroPython port
    if len(items) <= 1:
        return [list(items)]
    out = []
    for i in range(len(items)):
        for p in _perms(items[:i] + items[i + 1:]):
            out.append([items[i]] + p)
    return out


def test_must_hold_tokens_verify():
    for tok in (TOK_ENC, TOK_RAW):
        t = sas.parse(tok)
        assert sas.verify(t, _key()) is True
        assert (t.resource, t.hub, t.device, t.module, t.policy, t.se) == (
            "contoso-hub.azure-devices.net/devices/dev-01", "contoso-hub.azure-devices.net",
            "dev-01", None, None, "1900000000")
        assert len(t.sig) == 32
    assert sas.parse(TOK_ENC).sr == SR
    assert sas.parse(TOK_RAW).sr == "contoso-hub.azure-devices.net/devices/dev-01"


def test_sr_is_signed_exactly_as_written():
    # the same resource, encoded the other way, is a different signed text
    swapped = TOK_ENC.replace(SR, "contoso-hub.azure-devices.net/devices/dev-01")
    t = sas.parse(swapped)
    assert t.resource == "contoso-hub.azure-devices.net/devices/dev-01"
    assert sas.verify(t, _key()) is False


def test_wrong_key_se_or_sr_fails():
    other = sas.decode_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert sas.verify(sas.parse(TOK_ENC), other) is False
    assert sas.verify(sas.parse(TOK_ENC.replace("se=1900000000", "se=1900000001")), _key()) is False
    assert sas.verify(sas.parse(TOK_ENC.replace("dev-01", "dev-02")), _key()) is False


def test_field_order_does_not_matter():
    sig = "OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D"
    fields = ["sr=" + SR, "sig=" + sig, "se=1900000000"]
    n = 0
    for p in _perms(fields):
        t = sas.parse(_tok(p))
        assert sas.verify(t, _key()) is True
        assert t.policy is None
        n += 1
    for p in _perms(fields + ["skn=device"]):
        t = sas.parse(_tok(p))
        assert sas.verify(t, _key()) is True
        assert t.policy == "device"
        n += 1
    assert n == 6 + 24


def test_empty_skn_is_absent():
    t = sas.parse(TOK_ENC + "&skn=")
    assert t.policy is None
    assert sas.verify(t, _key()) is True
    t = sas.parse(sas.PREFIX + "skn=&" + TOK_ENC[len(sas.PREFIX):])
    assert t.policy is None


def test_repeated_fields_refused():
    for extra, name in (("&sr=" + SR, "sr"), ("&se=1900000000", "se"),
                        ("&sig=OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D", "sig"),
                        ("&skn=a&skn=a", "skn"), ("&skn=&skn=", "skn"), ("&skn=&skn=x", "skn")):
        e = raises(ValueError, sas.parse, TOK_ENC + extra)
        assert str(e) == "repeated field '%s'" % name


def test_unknown_fields_refused():
    e = raises(ValueError, sas.parse, TOK_ENC + "&foo=1")
    assert str(e) == "unknown field 'foo' (allowed: sr, sig, se, skn)"
    e = raises(ValueError, sas.parse, TOK_ENC + "&SR=x")
    assert str(e) == "unknown field 'SR' (allowed: sr, sig, se, skn)"
    # a name that could be a piece of a secret is not echoed
    e = raises(ValueError, sas.parse, TOK_ENC + "&OX147z2F7LNPJg/U=1")
    assert str(e) == "unknown field (name not shown) (allowed: sr, sig, se, skn)"
    e = raises(ValueError, sas.parse, TOK_ENC + "&Secret123")
    assert str(e) == "field (name not shown) has no '='"


def test_missing_and_empty_fields_refused():
    assert str(raises(ValueError, sas.parse, _tok(["sr=" + SR, "se=1900000000"]))) == "no 'sig' field"
    assert str(raises(ValueError, sas.parse, _tok(["sig=AAAA", "se=1900000000"]))) == "no 'sr' field"
    assert str(raises(ValueError, sas.parse, TOK_ENC.replace("se=1900000000", "se="))) == "field 'se' is empty"
    assert str(raises(ValueError, sas.parse, TOK_ENC.replace("sr=" + SR, "sr="))) == "field 'sr' is empty"
    assert str(raises(ValueError, sas.parse, TOK_ENC + "&")) == "empty field ('&' at an end or doubled)"
    assert str(raises(ValueError, sas.parse, TOK_ENC.replace("&se", "&&se"))) == "empty field ('&' at an end or doubled)"


def test_prefix_required():
    msg = "not a SAS token: it must start with 'SharedAccessSignature '"
    assert str(raises(ValueError, sas.parse, TOK_ENC[len(sas.PREFIX):])) == msg
    assert str(raises(ValueError, sas.parse, "sharedaccesssignature " + TOK_ENC[len(sas.PREFIX):])) == msg
    assert str(raises(ValueError, sas.parse, "SharedAccessSignature  " + TOK_ENC[len(sas.PREFIX):])) == \
        "unknown field (name not shown) (allowed: sr, sig, se, skn)"
    assert str(raises(ValueError, sas.parse, b"SharedAccessSignature sr=x")) == "not text (bytes)"


def test_plus_in_sig_stays_plus():
    # '+' is a base64 digit: percent-decoding must not make it a space
    raw_plus = TOK_RAW.replace("%2B", "+")
    assert "+GY" in raw_plus
    t = sas.parse(raw_plus)
    assert sas.verify(t, _key()) is True
    assert t.sig == sas.parse(TOK_RAW).sig
    # what a form decoder would make of it is not base64
    e = raises(ValueError, sas.parse, TOK_RAW.replace("%2B", " "))
    assert str(e) == "sig is not base64 (character 40)"


def test_sig_must_be_strict_base64_of_32_bytes():
    def base(sig):
        return TOK_ENC.replace("OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D", sig)
    assert str(raises(ValueError, sas.parse, base("OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg"))) == \
        "sig is not base64: length 43 is not a multiple of 4"
    assert str(raises(ValueError, sas.parse, base("OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bS!Vg%3D"))) == \
        "sig is not base64 (character 40)"
    assert str(raises(ValueError, sas.parse, base("OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUy%3D4bSBVg%3D"))) == \
        "sig is not base64 (character 36)"
    assert str(raises(ValueError, sas.parse, base("AAAA"))) == "sig is 3 bytes, an HMAC-SHA256 is 32"
    assert str(raises(ValueError, sas.parse, base("OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3"))) == \
        "sig: bad percent-escape at character 43"
    assert str(raises(ValueError, sas.parse, base("OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%G0"))) == \
        "sig: bad percent-escape at character 43"
    # lower-case hex in an escape is fine (RFC 3986 s2.1)
    assert sas.verify(sas.parse(base("OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3d")), _key()) is True


def test_se_digits_only():
    for bad in ("-1", "1.5e9", " 1900000000", "1900000000 ", "0x71", "+1900000000"):
        e = raises(ValueError, sas.parse, TOK_ENC.replace("se=1900000000", "se=" + bad))
        assert str(e) == "se must be decimal digits (UTC seconds since 1970)"
    e = raises(ValueError, sas.parse, TOK_ENC.replace("se=1900000000", "se=" + "1" * 21))
    assert str(e) == "se has more than 20 digits"
    # leading zeros do not count toward the 20 digits
    t = sas.parse(TOK_ENC.replace("se=1900000000", "se=" + "0" * 30 + "1"))
    assert t.se == "0" * 30 + "1"


def test_se_above_2_31_and_big_values():
    cases = (
        ("2147483647", "YboeV8%2FscD4RvpliLkK5OWuXk39gP%2FFaSnC%2F9ldamQ0%3D", "2038-01-19T03:14:07Z"),
        ("2147483648", "zq4LPajvgPiz4vWoqTJSYgIv1zoZsDNz6relCkUvnEc%3D", "2038-01-19T03:14:08Z"),
        ("4294967296", "%2Fy%2FvPd5cnVkOxMewX07FIxSiTXYRpatMiba8Rg9J1fU%3D", "2106-02-07T06:28:16Z"),
        ("99999999999", "zESRBxYzdAd1oxxKuN7FqTFtIU1iIZGOU6zj0WTyUoc%3D", "5138-11-16T09:46:39Z"),
        ("01900000000", "WKjR0gdy14RZ40XmorDjUMDHjq4bo8nGgOxHG7KUTuc%3D", "2030-03-17T17:46:40Z"),
    )
    for se, sig, iso in cases:
        t = sas.parse(_tok(["sr=" + SR, "sig=" + sig, "se=" + se]))
        assert t.se == se
        assert sas.verify(t, _key()) is True
        assert sas.iso8601(int(t.se)) == iso


def test_expired_compares_without_overflow():
    assert sas.expired("1900000000", 1899999999) is False
    assert sas.expired("1900000000", 1900000000) is True   # expires at se
    assert sas.expired("1900000000", 1900000001) is True
    assert sas.expired("2147483648", 2147483647) is False
    assert sas.expired("2147483648", 2147483648) is True
    assert sas.expired("4294967296", 1796000000) is False
    assert sas.expired("99999999999999999999", 1796000000) is False
    assert sas.expired("0001700000000", 1796000000) is True
    assert sas.expired("0001900000000", 1796000000) is False
    assert sas.expired("0", 0) is True
    assert sas.expired("999999999", 1000000000) is True   # fewer digits
    assert str(raises(ValueError, sas.expired, "1", -1)) == "now must be >= 0"


def test_resource_parts():
    t = sas.parse(_tok(["sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01%2Fmodules%2Fsensor",
                        "sig=ydeL6mvt29b81SSUzQJpbxfPU9Ofawd%2FuO7dcopgt%2Fw%3D", "se=1900000000"]))
    assert (t.hub, t.device, t.module) == ("contoso-hub.azure-devices.net", "dev-01", "sensor")
    assert sas.verify(t, _key()) is True
    t = sas.parse(_tok(["sr=contoso-hub.azure-devices.net", "sig=t0NhcU9SqU16a5%2FZSxMBbMhp2Dtu771jZ5Ij03qLcM0%3D",
                        "se=1900000000", "skn=iothubowner"]))
    assert (t.hub, t.device, t.module, t.policy) == ("contoso-hub.azure-devices.net", None, None, "iothubowner")
    assert sas.verify(t, _key()) is True
    # a device id with characters that were percent-encoded twice over
    t = sas.parse(_tok(["sr=h.azure-devices.net%2Fdevices%2Fa%2520b%40c", "sig=" + "A" * 43 + "=", "se=1"]))
    assert (t.resource, t.device) == ("h.azure-devices.net/devices/a%20b@c", "a%20b@c")
    e = raises(ValueError, sas.parse, _tok(["sr=h%2", "sig=" + "A" * 43 + "=", "se=1"]))
    assert str(e) == "sr: bad percent-escape at character 1"
    e = raises(ValueError, sas.parse, _tok(["sr=h%FF", "sig=" + "A" * 43 + "=", "se=1"]))
    assert str(e) == "sr is not UTF-8 after percent-decoding"


def test_decode_key_strict():
    assert len(sas.decode_key(KEY)) == 32
    assert str(raises(ValueError, sas.decode_key, KEY[:-1])) == "key is not base64: length 43 is not a multiple of 4"
    assert str(raises(ValueError, sas.decode_key, KEY[:10] + "*" + KEY[11:])) == "key is not base64 (character 10)"
    assert str(raises(ValueError, sas.decode_key, "")) == "key is not base64: length 0 is not a multiple of 4"
    assert str(raises(ValueError, sas.decode_key, "A===")) == "key is not base64 (character 1)"
    assert str(raises(ValueError, sas.decode_key, None)) == "key must be base64 text"


def test_iso8601():
    assert sas.iso8601(0) == "1970-01-01T00:00:00Z"
    assert sas.iso8601(951782400) == "2000-02-29T00:00:00Z"
    assert sas.iso8601(4107542400) == "2100-03-01T00:00:00Z"
    assert sas.iso8601(253402300799) == "9999-12-31T23:59:59Z"
    assert sas.iso8601(253402300800) == "+10000-01-01T00:00:00Z"
    assert sas.iso8601(99999999999999999999) == "+3168873852651-02-22T09:46:39Z"


def test_sig_must_be_canonical_base64():
    # IoT Hub compares sig as text: ...BVh= decodes to the same bytes as
    # ...BVg= (the bits after the last byte differ) and must be refused
    bad = TOK_ENC.replace("BVg%3D", "BVh%3D")
    assert sas.parse(bad.replace("BVh", "BVg")).sig == sas.parse(TOK_ENC).sig
    e = raises(ValueError, sas.parse, bad)
    assert str(e) == "sig is not canonical base64 (character 42 leaves bits after the last byte)"
    for last in "hijklmnopqrstuvwxyz0123456789+/BCDEFGHIJKLMNOPQRSTUVWXYZabcdef":
        tok = TOK_ENC.replace("BVg%3D", "BV" + last.replace("+", "%2B").replace("/", "%2F") + "%3D")
        if "AEIMQUYcgkosw048".find(last) >= 0:
            sas.parse(tok)
        else:
            raises(ValueError, sas.parse, tok)
    assert sas.b64decode("QQ==", "x", True) == b"A"
    assert str(raises(ValueError, sas.b64decode, "QR==", "x", True)) == \
        "x is not canonical base64 (character 1 leaves bits after the last byte)"
    assert sas.b64decode("QUI=", "x", True) == b"AB"
    assert str(raises(ValueError, sas.b64decode, "QUJ=", "x", True)) == \
        "x is not canonical base64 (character 2 leaves bits after the last byte)"
    # the device key is only used as bytes: a non-canonical key text is read
    assert sas.decode_key(KEY[:-2] + "V=") == sas.decode_key(KEY)


def test_sr_and_skn_are_strict_utf8():
    sig = "sig=" + "A" * 43 + "="
    for sr in ("h%2Fdevices%2Fdev%C0%AF01", "h%2Fdevices%2F%ED%A0%80", "h%2Fdevices%2F%F4%90%80%80", "h%2Fdevices%2F%E2%82"):
        e = raises(ValueError, sas.parse, _tok(["sr=" + sr, sig, "se=1"]))
        assert str(e) == "sr is not UTF-8 after percent-decoding", sr
    e = raises(ValueError, sas.parse, _tok(["sr=h", sig, "se=1", "skn=%C0%AF"]))
    assert str(e) == "skn is not UTF-8 after percent-decoding"
    t = sas.parse(_tok(["sr=h%2Fdevices%2FZ%C3%BCrich", sig, "se=1", "skn=my%20policy"]))
    assert (t.device, t.policy) == ("Z\u00fcrich", "my policy")


def test_se_value_drops_leading_zeros_first():
    t = sas.parse(TOK_ENC.replace("se=1900000000", "se=" + "0" * 5000 + "1900000000"))
    assert sas.se_value(t.se) == 1900000000
    assert sas.se_value("0") == 0
    assert sas.se_value("99999999999999999999") == 99999999999999999999
