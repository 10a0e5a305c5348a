import binascii

from microagent import der, x509
from mphelp import raises, scratch
from mphelp import fixture, read_fixture as _read

# What the fixtures in certs/ (tests/make_cert_fixtures.py, made with
# `cryptography`) hold; tests/test_x509_xcheck.py checks these values
# against cryptography's reading of the same files.
EXPECT = {
    "leaf.der": {
        "version": 3, "serial": 2246800662264969608, "subject_cn": "dev-01", "issuer_cn": "Contoso Test CA",
        "not_before": (2025, 1, 1, 0, 0, 0), "not_after": (2027, 1, 1, 0, 0, 0),
        "key": "RSA 2048", "size": 583,
        "sha1": "F9DC6CC6A6EDBED00B1B551C5CD4864C04F7F7D3",
        "sha256": "12906F7F6D9B7E9378EAC75E9D6FB5D4D7DF8C8ECFC2C54B02969E1D032F2D13"},
    "ca.der": {
        "version": 3, "serial": 1, "subject_cn": "Contoso Test CA", "issuer_cn": "Contoso Test CA",
        "not_before": (2024, 1, 1, 0, 0, 0), "not_after": (2049, 12, 31, 23, 59, 59),
        "key": "EC P-256", "size": 350,
        "sha1": "6D225E4DFEF7E9E8DB15215EFEDA6AB0B26305D0",
        "sha256": "420A1E16A013DE421A35BE19372628DE0B848AF1731293336777BE8DA374284E"},
    "forever.pem": {
        "version": 3, "serial": 725064303890588110203033396814564464046290047507, "subject_cn": "forever",
        "issuer_cn": "forever", "not_before": (2024, 6, 1, 0, 0, 0), "not_after": (9999, 12, 31, 23, 59, 59),
        "key": "Ed25519", "size": 250,
        "sha1": "035A99EC3D723B0B19B4C5188F32C84EA89CC2FD",
        "sha256": "8FD819914E26F63E0EF0B77B88DD2653B3BCA0FE95A3156E598BC49685EC29A0"},
    "p384.der": {
        "version": 3, "serial": 12648430, "subject_cn": "Z\u00fcrich \u2603", "issuer_cn": "Z\u00fcrich \u2603",
        "not_before": (2024, 2, 29, 12, 0, 0), "not_after": (2051, 6, 30, 12, 0, 0),
        "key": "EC P-384", "size": 378,
        "sha1": "9405D50EA700E2FDD8981D08E2CE0F8A58C2BD62",
        "sha256": "10C98951BFC7A56024E58683762EF4D9C40776DF15276945D3E387EBA6136A71"},
}


def _fields(c):
    return {"version": c.version, "serial": c.serial, "subject_cn": c.subject_cn, "issuer_cn": c.issuer_cn,
            "not_before": c.not_before, "not_after": c.not_after, "key": c.key_text(), "size": c.size,
            "sha1": c.sha1, "sha256": c.sha256}


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def _time(tag, text):
    b = bytes([tag, len(text)]) + text.encode()
    r = der.Reader(b)
    t = x509.read_time(b, 0, len(b), r)
    assert r.end == len(b)
    return t


def test_validity_vector_utctime_and_generalizedtime():
    b = _h("3020170d3136303232363038313130365a180f32303530303232353038313130365a")
    r = der.Reader(b)
    s = r.expect(0, len(b), der.SEQUENCE)
    e = r.end
    nb = x509.read_time(b, s, e, r)
    na = x509.read_time(b, r.end, e, r)
    assert r.end == e == len(b)
    assert x509.iso(nb) == "2016-02-26T08:11:06Z"
    assert x509.iso(na) == "2050-02-25T08:11:06Z"


def test_utctime_1950_2049_rule():
    assert _time(0x17, "500101000000Z") == (1950, 1, 1, 0, 0, 0)
    assert _time(0x17, "991231235959Z") == (1999, 12, 31, 23, 59, 59)
    assert _time(0x17, "000229000000Z") == (2000, 2, 29, 0, 0, 0)
    assert _time(0x17, "491231235959Z") == (2049, 12, 31, 23, 59, 59)
    assert _time(0x18, "19500101000000Z") == (1950, 1, 1, 0, 0, 0)


def test_no_expiry_time_compares_without_overflow():
    t = _time(0x18, "99991231235959Z")
    assert t == x509.NO_EXPIRY
    now = x509.civil(1796000000)
    assert now == (2026, 11, 30, 0, 53, 20)
    assert now < t
    assert x509.civil(1796000000 + 36500 * 86400) < t
    assert x509.iso(t) == "9999-12-31T23:59:59Z"
    assert x509.civil(253402300799) == t


def test_refused_time_forms():
    cases = (
        (0x18, "20500225081106.5Z", "GeneralizedTime must be YYYYMMDDHHMMSSZ (no fractions, offsets or missing seconds; ends in Z), got '20500225081106.5Z' at offset 0"),
        (0x18, "20500225081106.000Z", None),
        (0x18, "20500225081106+0100", None),
        (0x18, "205002250811Z", None),
        (0x18, "20500225081106", None),
        (0x18, "20500225081106z", None),
        (0x17, "1602260811Z", "UTCTime must be YYMMDDHHMMSSZ (no fractions, offsets or missing seconds; ends in Z), got '1602260811Z' at offset 0"),
        (0x17, "160226081106+0100", None),
        (0x17, "160226081106-0500", None),
        (0x17, "160226081106", None),
        (0x17, "16022608110Z6", None),
        (0x17, "1602260811 6Z", "UTCTime must be YYMMDDHHMMSSZ, got '1602260811 6Z' at offset 0"),
        (0x17, "161326081106Z", "time out of range: '161326081106Z' at offset 0"),
        (0x17, "170229000000Z", "time out of range: '170229000000Z' at offset 0"),
        (0x17, "160230000000Z", None),
        (0x17, "160226240000Z", None),
        (0x17, "160226086000Z", None),
        (0x17, "160226081160Z", None),
        (0x17, "160200081106Z", None),
        (0x18, "21000229000000Z", None),
        (0x04, "160226081106Z", "expected UTCTime or GeneralizedTime at offset 0, found tag 0x04"),
    )
    for tag, text, msg in cases:
        e = raises(der.DERError, _time, tag, text)
        if msg is not None:
            assert str(e) == msg, (text, str(e))
    assert _time(0x18, "20000229000000Z") == (2000, 2, 29, 0, 0, 0)


def test_fixtures_parse_to_expected_fields():
    for name in EXPECT:
        data = _read(name)
        c = x509.parse(data) if name.endswith(".der") else next(iter(x509.iter_certs(data)))
        assert _fields(c) == EXPECT[name], name
    c = x509.parse(memoryview(_read("leaf.der")))
    assert c.serial_bytes == _h("1f2e3d4c5b6a7988")
    assert c.key_type == "RSA" and c.key_bits == 2048 and c.curve is None
    c = x509.parse(bytearray(_read("p384.der")))
    assert (c.key_type, c.key_bits, c.curve) == ("EC", 384, "P-384")
    c = x509.read_file(fixture("forever.pem"))
    assert c.serial_bytes == _h("7f0102030405060708090a0b0c0d0e0f10111213")
    assert c.not_after == x509.NO_EXPIRY
    assert (c.key_type, c.key_bits, c.curve) == ("Ed25519", None, None)


def test_pem_and_der_give_the_same_certificate():
    a = _fields(x509.read_file(fixture("leaf.pem")))
    b = _fields(x509.read_file(fixture("leaf.der")))
    assert a == b == EXPECT["leaf.der"]


def test_several_certificates_in_one_file_one_at_a_time():
    # chain.pem: explanatory text, the leaf, a private key block (skipped),
    # then the CA with CRLF line ends
    names = [c.subject_cn for c in x509.iter_file(fixture("chain.pem"))]
    assert names == ["dev-01", "Contoso Test CA"]
    sums = [c.sha1 for c in x509.iter_certs(_read("chain.pem"))]
    assert sums == [EXPECT["leaf.der"]["sha1"], EXPECT["ca.der"]["sha1"]]
    sums = [c.sha256 for c in x509.iter_file(fixture("two.der"))]
    assert sums == [EXPECT["leaf.der"]["sha256"], EXPECT["forever.pem"]["sha256"]]
    sums = [c.sha256 for c in x509.iter_certs(_read("two.der"))]
    assert sums == [EXPECT["leaf.der"]["sha256"], EXPECT["forever.pem"]["sha256"]]
    text = _read("leaf.pem").decode()
    assert [c.subject_cn for c in x509.iter_certs(text + text)] == ["dev-01", "dev-01"]


def test_thumbprint_match_rule():
    c = x509.parse(_read("leaf.der"))
    assert c.matches(EXPECT["leaf.der"]["sha1"]) == (True, "sha1", EXPECT["leaf.der"]["sha1"])
    assert c.matches(EXPECT["leaf.der"]["sha256"]) == (True, "sha256", EXPECT["leaf.der"]["sha256"])
    assert c.matches("00" * 20) == (False, "sha1", EXPECT["leaf.der"]["sha1"])
    raises(ValueError, c.matches, "00" * 16)


def test_every_truncation_is_refused():
    data = _read("leaf.der")
    mv = memoryview(data)
    for n in range(len(data)):
        raises(der.DERError, x509.parse, mv[:n])


def _set_length(data, new_len_octets):
    # the outer SEQUENCE of a certificate is 30 82 hi lo
    return data[:1] + new_len_octets + data[4:]


def test_malformed_certificates_are_refused_with_a_reason():
    data = _read("ca.der")
    cases = (
        (b"\x31" + data[1:], "expected SEQUENCE at offset 0, found tag 0x31"),
        (data + b"\x00", "1 bytes after the certificate (offset 350)"),
        (_set_length(data, b"\x84\x7f\xff\xff\xff"), "length 2147483647 at offset 1 runs past the end (346 bytes left)"),
        (_set_length(data, b"\x80"), "indefinite length at offset 1 (not DER)"),
        (_set_length(data, b"\x83\x00\x01\x5a"), "non-minimal length at offset 1 (leading zero octet)"),
        (b"", "truncated: no tag at offset 0"),
    )
    for bad, msg in cases:
        e = raises(der.DERError, x509.parse, bad)
        assert str(e) == msg, (msg, str(e))
    # the serial's tag turned into an OCTET STRING
    p = bytes(data).index(b"\x02\x01\x01")
    e = raises(der.DERError, x509.parse, data[:p] + b"\x04" + data[p + 1:])
    assert str(e) == "expected INTEGER at offset %d, found tag 0x04" % p
    # notAfter 491231235959Z -> an offset time of the same length
    p = bytes(data).index(b"491231235959Z")
    e = raises(der.DERError, x509.parse, data[:p] + b"4912312359+0" + data[p + 12:])
    assert "UTCTime must be YYMMDDHHMMSSZ" in str(e)
    # a version 4
    p = bytes(data).index(b"\xa0\x03\x02\x01\x02")
    e = raises(der.DERError, x509.parse, data[:p + 4] + b"\x03" + data[p + 5:])
    assert str(e) == "unknown certificate version 4"


def test_malformed_pem_is_refused_with_a_reason():
    good = _read("leaf.pem")
    lines = good.split(b"\n")
    body = b"\n".join(lines[1:-2])
    cases = (
        (good.replace(b"-----END CERTIFICATE-----", b""), "PEM: no -----END CERTIFICATE----- line"),
        (good.replace(lines[3], lines[3][:10] + b"*" + lines[3][11:]), "PEM line 4: invalid base64 character '*' at column 11"),
        (good.replace(lines[3], lines[3][:10] + b" " + lines[3][11:]), "PEM line 4: invalid base64 character ' ' at column 11"),
        (good.replace(lines[3], lines[3][:63]), None),
        (good.replace(lines[2], lines[2][:60] + b"===="), "PEM line 3: too much '=' padding"),
        (good.replace(lines[2], lines[2][:62] + b"=="), "PEM line 4: base64 after the '=' padding"),
        (good.replace(lines[1], lines[1][:8]), None),
        (b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "PEM line 2: empty CERTIFICATE block"),
        (b"hello\n", "neither DER nor a PEM CERTIFICATE block"),
        (b"", "empty input"),
        (good.replace(b"-----END CERTIFICATE-----", b"-----END CERTIFICATE----"), "PEM line 15: expected -----END CERTIFICATE-----"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n", "PEM: no -----END PRIVATE KEY----- line"),
        (b"-----BEGIN CERT\n", "PEM line 1: malformed BEGIN line"),
        (good.replace(lines[-3], lines[-3] + b"AAAA"), None),
        (good.replace(lines[-3] + b"\n", b""), None),
    )
    for bad, msg in cases:
        e = raises(der.DERError, lambda: list(x509.iter_certs(bad)))
        if msg is not None:
            assert str(e) == msg, (msg, str(e))
    assert body  # the fixture has a body


def test_pem_with_a_huge_claimed_length_allocates_nothing_proportional():
    import gc
    # base64 of 30 84 7f ff ff ff 02 01: a 2 GB certificate in 8 bytes
    text = b"-----BEGIN CERTIFICATE-----\nMIR/////AgE=\n-----END CERTIFICATE-----\n"
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    e = raises(der.DERError, lambda: list(x509.iter_certs(text)))
    assert str(e) == "length 2147483647 at offset 1 runs past the end (2 bytes left)"
    if hasattr(gc, "mem_alloc"):
        assert gc.mem_alloc() - before < 4096


def test_der_file_with_a_huge_claimed_length_is_refused():
    path = scratch("x509") + ".der"
    with open(path, "wb") as f:
        f.write(b"\x30\x84\x7f\xff\xff\xff\x02\x01")
    try:
        e = raises(der.DERError, lambda: list(x509.iter_file(path)))
        assert str(e) == "length 2147483647 at offset 1 runs past the end (2 bytes left)"
    finally:
        _rm(path)
    with open(path, "wb") as f:
        f.write(_read("leaf.der") + b"\x30")
    try:
        e = raises(der.DERError, lambda: list(x509.iter_file(path)))
        assert str(e) == "truncated: no length at offset 584"  # the file's offset (the 0x30 is at 583)
    finally:
        _rm(path)
    with open(path, "wb") as f:
        pass
    try:
        assert str(raises(der.DERError, lambda: list(x509.iter_file(path)))) == "empty input"
    finally:
        _rm(path)


def test_missing_file_is_oserror():
    raises(OSError, lambda: list(x509.iter_file("/nonexistent/microagent.pem")))


def test_civil_inverts_days_from_civil():
    from microagent import platform
    for y, m, d in ((1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (2038, 1, 19), (2100, 3, 1), (9999, 12, 31), (1950, 1, 1)):
        utc = platform.days_from_civil(y, m, d) * 86400 + 3723
        assert x509.civil(utc) == (y, m, d, 1, 2, 3)


def _impl():
    import sys
    return sys.implementation.name


def _rm(path):
    import os
    try:
        os.remove(path)
    except OSError:
        pass


def test_parse_allocates_under_4k_on_the_board_heap():
    # MicroPython: everything one parse allocates with the GC off (so
    # nothing is freed) stays under the 4 KB budget; bench_cert measures
    # the figures
    import gc
    if not hasattr(gc, "mem_alloc"):
        return  # CPython: tests/test_x509_xcheck.py uses tracemalloc
    data = _read("leaf.der")
    x509.parse(data)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        c = x509.parse(data)
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert c.sha1 == EXPECT["leaf.der"]["sha1"]
    assert used < 4096, used


def _body_b64():
    lines = _read("leaf.pem").split(b"\n")
    return b"".join(lines[1:-2])


def _variants():
    b64 = _body_b64()
    begin = b"-----BEGIN CERTIFICATE-----"
    end = b"-----END CERTIFICATE-----"
    out = []
    # 76-character lines (MIME style)
    out.append(("mime76", begin + b"\n" + b"\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + b"\n" + end + b"\n"))
    # the whole body on one line (longer than the 128-byte file buffer)
    out.append(("oneline", begin + b"\n" + b64 + b"\n" + end + b"\n"))
    # odd line lengths: quanta split across lines
    out.append(("odd", begin + b"\n" + b"\n".join(b64[i:i + 7] for i in range(0, len(b64), 7)) + b"\n" + end + b"\n"))
    # no newline at the end, trailing spaces and CRLF
    out.append(("noeol", begin + b"  \r\n" + b"\r\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) + b"\r\n" + end))
    # markers straddling the file buffer: text of every length before them
    for pad in (100, 101, 110, 127, 128, 129, 200):
        out.append(("pad%d" % pad, b"x" * pad + b"\n" + begin + b"\n" + b64 + b"\n" + end + b"\n"))
    # a long text line with a BEGIN marker inside it (not at a line
    # start, whichever buffer piece it falls into): explanatory text
    out.append(("inline", b"y" * 120 + begin + b"z" * 100 + b"\n" + begin + b"\n" + b64 + b"\n" + end + b"\n"))
    out.append(("inline128", b"y" * 128 + begin + b"\n" + begin + b"\n" + b64 + b"\n" + end + b"\n"))
    out.append(("inline128key", b"y" * 128 + b"-----BEGIN PRIVATE KEY-----\n" + begin + b"\n" + b64 + b"\n" + end + b"\n"))
    return out


def test_pem_layouts_read_alike_from_files_and_buffers():
    import sys
    want = EXPECT["leaf.der"]["sha256"]
    path = scratch("x509-layout") + ".pem"
    try:
        for name, data in _variants():
            assert [c.sha256 for c in x509.iter_certs(data)] == [want], name
            with open(path, "wb") as f:
                f.write(data)
            assert [c.sha256 for c in x509.iter_file(path)] == [want], name
    finally:
        _rm(path)
