"""The device's DER/X.509 reader against `cryptography`: hypothesis-made
certificates (RSA 2048/4096, ECDSA P-256/P-384, Ed25519; negative and
20-byte serials; UTCTime, GeneralizedTime after 2049 and 99991231235959Z;
long-form lengths; several certificates in one PEM) read on CPython and,
in batches, on the unix port under a 64 KB heap; a malformed-input corpus
on both; the system trust store against `openssl x509 -fingerprint`."""
import base64
import datetime
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from microagent import der, x509

ROOT = Path(__file__).resolve().parent.parent
PORTABLE = ROOT / "tests" / "portable"
UTC = datetime.timezone.utc

# ---- a pool of keys, made once per session (RSA key generation is slow) ----
_POOL = {}


def _key(kind):
    if kind not in _POOL:
        if kind == "rsa2048":
            _POOL[kind] = rsa.generate_private_key(65537, 2048)
        elif kind == "rsa4096":
            _POOL[kind] = rsa.generate_private_key(65537, 4096)
        elif kind == "p256":
            _POOL[kind] = ec.generate_private_key(ec.SECP256R1())
        elif kind == "p384":
            _POOL[kind] = ec.generate_private_key(ec.SECP384R1())
        else:
            _POOL[kind] = ed25519.Ed25519PrivateKey.generate()
    return _POOL[kind]


KINDS = ("rsa2048", "rsa4096", "p256", "p384", "ed25519")


def _hash_for(kind):
    return None if kind == "ed25519" else hashes.SHA256()


# ---- a minimal DER writer, to make what cryptography refuses to build ----
def _len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag, content):
    return bytes([tag]) + _len(len(content)) + content


def _split(b, s, e):
    out = []
    while s < e:
        tag, n = b[s], b[s + 1]
        h = 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(b[s + 2:s + 2 + k], "big")
            h += k
        out.append(b[s:s + h + n])
        s += h + n
    return out


def _content(tlv):
    n = tlv[1]
    return tlv[2 + (n & 0x7F if n & 0x80 else 0):]


def with_serial(cert_der, serial):
    """The certificate with its serial INTEGER replaced (signature left
    as it was: the reader does not verify signatures)."""
    body = _content(cert_der)
    tbs, alg, sig = _split(body, 0, len(body))
    kids = _split(_content(tbs), 0, len(_content(tbs)))
    i = 1 if kids[0][0] == 0xA0 else 0
    n = 1
    while True:
        try:
            raw = serial.to_bytes(n, "big", signed=True)
            break
        except OverflowError:
            n += 1
    kids[i] = _tlv(0x02, raw)
    return _tlv(0x30, _tlv(0x30, b"".join(kids)) + alg + sig)


# ---- strategies ------------------------------------------------------------
_printable = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?", min_size=1, max_size=64)
# cryptography allows at most 64 UTF-8 bytes in a CN
_utf8 = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16)
_bmp = st.text(st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs",)), min_size=1, max_size=21)
_ia5 = st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=1, max_size=64)


@st.composite
def _cn(draw):
    typ = draw(st.sampled_from(["utf8", "printable", "bmp", "ia5", "none"]))
    if typ == "none":
        return None, None
    if typ == "printable":
        return draw(_printable), _ASN1Type.PrintableString
    if typ == "bmp":
        return draw(_bmp), _ASN1Type.BMPString
    if typ == "ia5":
        return draw(_ia5), _ASN1Type.IA5String
    return draw(_utf8), _ASN1Type.UTF8String


def _name(cn, typ, org):
    attrs = []
    if org:
        attrs.append(cx509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if cn is not None:
        attrs.append(cx509.NameAttribute(NameOID.COMMON_NAME, cn, _type=typ))
    return cx509.Name(attrs)


_times = st.datetimes(min_value=datetime.datetime(1950, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC))


@st.composite
def cert_specs(draw):
    """(DER bytes, serial) of a generated certificate."""
    kind = draw(st.sampled_from(KINDS))
    signer = draw(st.sampled_from(KINDS))
    subj = _name(*draw(_cn()), draw(st.sampled_from([None, "Contoso", "Fabrikam Ltd"])))
    iss = _name(*draw(_cn()), draw(st.sampled_from([None, "Contoso CA"])))
    t1 = draw(st.one_of(_times, st.datetimes(min_value=datetime.datetime(2040, 1, 1), max_value=datetime.datetime(2060, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC))))
    t2 = draw(st.one_of(_times, st.just(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
                        st.just(datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),
                        st.just(datetime.datetime(2050, 1, 1, tzinfo=UTC))))
    nb, na = min(t1, t2), max(t1, t2)
    serial_kind = draw(st.sampled_from(["small", "20bytes", "any", "negative", "negative20"]))
    if serial_kind == "small":
        serial = draw(st.integers(1, 255))
    elif serial_kind == "20bytes":
        serial = draw(st.integers(2**152, 2**159 - 1))
    elif serial_kind == "any":
        serial = draw(st.integers(1, 2**159 - 1))
    elif serial_kind == "negative":
        serial = -draw(st.integers(1, 2**64))
    else:
        serial = -draw(st.integers(2**152, 2**159))
    sans = draw(st.lists(st.from_regex(r"[a-z0-9]{1,20}\.example", fullmatch=True), max_size=12))
    b = (cx509.CertificateBuilder().subject_name(subj).issuer_name(iss).public_key(_key(kind).public_key())
         .serial_number(abs(serial) if serial > 0 else 1).not_valid_before(nb).not_valid_after(na))
    if sans:
        b = b.add_extension(cx509.SubjectAlternativeName([cx509.DNSName(s) for s in sans]), critical=False)
    if draw(st.booleans()):
        b = b.add_extension(cx509.BasicConstraints(ca=True, path_length=draw(st.integers(0, 3))), critical=True)
    c = b.sign(_key(signer), _hash_for(signer))
    d = c.public_bytes(serialization.Encoding.DER)
    if serial <= 0:
        d = with_serial(d, serial)
    return d


# ---- what cryptography reads ------------------------------------------------
_CURVE = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def reference(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # negative serials: deprecated, still read
        c = cx509.load_der_x509_certificate(d)
        serial = c.serial_number

    def cn(n):
        a = n.get_attributes_for_oid(NameOID.COMMON_NAME)
        return a[0].value if a else None
    pk = c.public_key()
    if isinstance(pk, rsa.RSAPublicKey):
        key = ("RSA", pk.key_size, None)
    elif isinstance(pk, ec.EllipticCurvePublicKey):
        key = ("EC", pk.curve.key_size, _CURVE[pk.curve.name])
    elif isinstance(pk, ed25519.Ed25519PublicKey):
        key = ("Ed25519", None, None)
    else:
        raise AssertionError(pk)
    return {
        "version": c.version.value + 1, "serial": str(serial), "serial_bytes": serial.to_bytes(
            (serial + (serial < 0)).bit_length() // 8 + 1, "big", signed=True).hex(),
        "subject_cn": cn(c.subject), "issuer_cn": cn(c.issuer),
        "not_before": c.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": c.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key": list(key), "sha1": c.fingerprint(hashes.SHA1()).hex().upper(),
        "sha256": c.fingerprint(hashes.SHA256()).hex().upper(), "size": len(d)}


def ours(c):
    return {"version": c.version, "serial": str(c.serial), "serial_bytes": c.serial_bytes.hex(),
            "subject_cn": c.subject_cn, "issuer_cn": c.issuer_cn,
            "not_before": x509.iso(c.not_before), "not_after": x509.iso(c.not_after),
            "key": [c.key_type, c.key_bits, c.curve], "sha1": c.sha1, "sha256": c.sha256, "size": c.size}


# MicroPython side: the same summary per certificate, one JSON line each
MP_DUMP = r"""
import sys, json, binascii
from microagent import x509
def row(c):
    return {"version": c.version, "serial": str(c.serial), "serial_bytes": binascii.hexlify(c.serial_bytes).decode(),
            "subject_cn": c.subject_cn, "issuer_cn": c.issuer_cn,
            "not_before": x509.iso(c.not_before), "not_after": x509.iso(c.not_after),
            "key": [c.key_type, c.key_bits, c.curve], "sha1": c.sha1, "sha256": c.sha256, "size": c.size}
for path in sys.argv[1:]:
    for c in x509.iter_file(path):
        print(json.dumps(row(c)))
    print("--")
"""


def _mp_rows(mp, paths, heap="64wK"):
    r = mp(MP_DUMP, *[str(p) for p in paths], heap=heap, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    groups = [[]]
    for line in r.stdout.split("\n")[:-1]:  # not splitlines(): a CN may hold U+2028 or U+0085
        if line == "--":
            groups.append([])
        else:
            groups[-1].append(json.loads(line))
    return groups[:-1]


def _pem(d):
    # PEM made here, not by cryptography: negative serials cannot go
    # through load_der_x509_certificate().public_bytes() without a warning
    b64 = base64.b64encode(d)
    return (b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
            + b"\n-----END CERTIFICATE-----\n")


# ---- the must-hold fixtures' values are what cryptography reads -----------
def test_portable_expectations_match_cryptography():
    sys.path.insert(0, str(PORTABLE))
    try:
        import test_x509 as portable
    finally:
        sys.path.remove(str(PORTABLE))
    for name, want in portable.EXPECT.items():
        data = (PORTABLE / "certs" / name).read_bytes()
        if name.endswith(".pem"):
            data = cx509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        ref = reference(data)
        assert ref["serial"] == str(want["serial"]), name
        assert (ref["subject_cn"], ref["issuer_cn"]) == (want["subject_cn"], want["issuer_cn"]), name
        assert ref["not_before"] == x509.iso(want["not_before"]) and ref["not_after"] == x509.iso(want["not_after"]), name
        assert (ref["sha1"], ref["sha256"], ref["size"]) == (want["sha1"], want["sha256"], want["size"]), name
        k = ref["key"]
        assert want["key"] == (k[0] + " " + (k[2] if k[0] == "EC" else str(k[1])) if k[0] != "Ed25519" else "Ed25519"), name


# ---- hypothesis on CPython ---------------------------------------------------
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cert_specs())
def test_reader_matches_cryptography(d):
    assert ours(x509.parse(d)) == reference(d)
    assert ours(x509.parse(memoryview(bytearray(d)))) == reference(d)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ders=st.lists(cert_specs(), min_size=2, max_size=6))
def test_several_certificates_in_one_pem_and_der(ders, tmp_path_factory):
    refs = [reference(d) for d in ders]
    pem = b"some text before\n" + b"".join(_pem(d) for d in ders)
    assert [ours(c) for c in x509.iter_certs(pem)] == refs
    assert [ours(c) for c in x509.iter_certs(b"".join(ders))] == refs
    p = tmp_path_factory.mktemp("pem") / "bundle.pem"
    p.write_bytes(pem)
    assert [ours(c) for c in x509.iter_file(str(p))] == refs


# ---- the same on the unix port, in batches -----------------------------------
# no shrinking: a failing batch is reported as is (shrinking 40
# certificates through a subprocess takes many minutes)
@settings(max_examples=3, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.function_scoped_fixture])
@given(ders=st.lists(cert_specs(), min_size=25, max_size=40))
def test_reader_matches_cryptography_on_micropython(ders, mp, tmp_path):
    refs = [reference(d) for d in ders]
    pem = tmp_path / "batch.pem"
    pem.write_bytes(b"".join(_pem(d) for d in ders))
    dd = tmp_path / "batch.der"
    dd.write_bytes(b"".join(ders))
    got_pem, got_der = _mp_rows(mp, [pem, dd])
    assert got_pem == refs
    assert got_der == refs


# ---- malformed input: a clear error, never a crash, on both ----------------
def _corpus():
    """(name, bytes) of malformed inputs: every 7th truncation of real
    certificates, wrong tags, lengths past the end, huge lengths, the
    refused time forms, damaged PEM."""
    leaf = (PORTABLE / "certs" / "leaf.der").read_bytes()
    ca = (PORTABLE / "certs" / "ca.der").read_bytes()
    out = []
    for n in range(0, len(leaf), 7):
        out.append(("trunc%d" % n, leaf[:n]))
    for i, tag in ((0, 0x31), (4, 0x31), (4, 0x04)):
        out.append(("tag%d_%02x" % (i, tag), leaf[:i] + bytes([tag]) + leaf[i + 1:]))
    for name, hdr in (("huge4", b"\x30\x84\xff\xff\xff\xff"), ("huge3", b"\x30\x83\x7f\xff\xff"),
                      ("indef", b"\x30\x80"), ("five", b"\x30\x85\x01\x00\x00\x00\x00"),
                      ("pastend", b"\x30\x82\x01\x5b"), ("nonmin", b"\x30\x82\x00\x5a")):
        out.append((name, hdr + ca[4:]))
    t = ca.index(b"491231235959Z")
    for name, form in (("frac", b"491231235959."), ("offset", b"4912312359+0"), ("noz", b"4912312359590"),
                       ("lowz", b"491231235959z"), ("month13", b"491331235959Z"), ("spaces", b"4912312359 9Z")):
        out.append((name, ca[:t] + form + ca[t + 13:]))
    pem = _pem(ca)
    out.append(("pem_nostop", pem.replace(b"-----END CERTIFICATE-----\n", b"")))
    out.append(("pem_star", pem[:40] + b"*" + pem[41:]))
    out.append(("pem_cut", pem[:200] + pem[-26:]))
    out.append(("pem_huge", b"-----BEGIN CERTIFICATE-----\nMIT/////AgE=\n-----END CERTIFICATE-----\n"))
    out.append(("pem_extra", pem.replace(b"\n-----END", b"AAAA\n-----END")))
    out.append(("empty", b""))
    out.append(("text", b"not a certificate\n"))
    return out


MP_CORPUS = r"""
import sys
from microagent import x509
for path in sys.argv[1:]:
    try:
        n = len(list(x509.iter_file(path)))
        print("OK", n)
    except ValueError as e:
        print("ERR", e)
    except Exception as e:
        print("CRASH", type(e).__name__, e)
"""


def _cpython_outcome(path):
    try:
        return "OK %d" % len(list(x509.iter_file(path)))
    except ValueError as e:
        return "ERR %s" % e


def test_malformed_corpus_same_clear_error_on_both(mp, tmp_path):
    paths = []
    for name, data in _corpus():
        p = tmp_path / name
        p.write_bytes(data)
        paths.append(str(p))
    cp = [_cpython_outcome(p) for p in paths]
    assert all(o.startswith("ERR ") for o in cp), [(p, o) for p, o in zip(paths, cp) if not o.startswith("ERR")]
    r = mp(MP_CORPUS, *paths)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == cp
    by = dict(zip([os.path.basename(p) for p in paths], cp))
    assert by["huge4"] == "ERR length 4294967295 at offset 1 runs past the end (346 bytes left)"
    assert by["indef"] == "ERR indefinite length at offset 1 (not DER)"
    assert by["nonmin"] == "ERR non-minimal length at offset 1 (leading zero octet)"
    assert by["frac"].startswith("ERR UTCTime must be YYMMDDHHMMSSZ")
    assert by["pem_huge"] == "ERR length 4294967295 at offset 1 runs past the end (2 bytes left)"
    assert by["empty"] == "ERR empty input"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    try:
        list(x509.iter_certs(data))
    except ValueError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 582), st.integers(0, 255))
def test_flipped_bytes_parse_or_refuse(i, v):
    leaf = bytearray((PORTABLE / "certs" / "leaf.der").read_bytes())
    leaf[i] = v
    try:
        c = x509.parse(leaf)
    except ValueError:
        return
    # when it still parses, the thumbprint is over the bytes as they are
    assert c.sha256 == hashlib.sha256(leaf).hexdigest().upper()


def test_parse_allocates_little_beyond_the_certificate():
    import tracemalloc
    d = (PORTABLE / "certs" / "leaf.der").read_bytes()
    tracemalloc.start()
    try:
        x509.parse(d)
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        x509.parse(d)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 8192  # CPython objects are bigger than a board's; bench_cert measures the board


# ---- the system trust store against openssl ------------------------------------
def _store():
    d = Path("/etc/ssl/certs")
    files = sorted(p for p in d.glob("*.pem")) if d.is_dir() else []
    if not files:
        pytest.skip("no /etc/ssl/certs (.ci/run installs ca-certificates)")
    return files


def _openssl(path, alg):
    r = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-" + alg, "-in", str(path)],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().split("=", 1)[1].replace(":", "")


def _der_of_pem(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the store holds a certificate with a negative serial
        return cx509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)


def test_trust_store_thumbprints_equal_openssl():
    from concurrent.futures import ThreadPoolExecutor
    files = _store()
    assert len(files) > 50
    with ThreadPoolExecutor(4) as pool:
        sha1 = list(pool.map(lambda f: _openssl(f, "sha1"), files))
        sha256 = list(pool.map(lambda f: _openssl(f, "sha256"), files))
    for f, s1, s256 in zip(files, sha1, sha256):
        c = x509.read_file(str(f))
        assert (c.sha1, c.sha256) == (s1, s256), f
        assert ours(c) == reference(_der_of_pem(f.read_bytes())), f


def test_trust_store_bundle_on_micropython(mp):
    files = _store()
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        pytest.skip("no ca-certificates.crt bundle")
    (rows,) = _mp_rows(mp, [bundle])
    want = {}
    for f in files:
        ref = reference(_der_of_pem(f.read_bytes()))
        want[ref["sha256"]] = ref
    assert sorted(r["sha256"] for r in rows) == sorted(want)  # the bundle holds the same certificates
    for row in rows:
        assert row == want[row["sha256"]], row["subject_cn"]
