"""What the device's reader refuses, `cryptography` refuses too (it is
strict DER; `openssl x509` is not: it reads non-minimal lengths), and the
unix port refuses it with the same message as CPython: every element of
the fixtures and of hypothesis-made certificates in a non-DER form, the
DER rules of skipped elements, the bounds. Reading from a file and from a
buffer agree for random mutations of PEM and DER. OpenSSL's TRUSTED
CERTIFICATE (made by `openssl x509 -addtrust`) is read."""
import base64
import random
import subprocess
import sys
import warnings
from pathlib import Path

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import HealthCheck, given, settings, strategies as st

from microagent import der, x509

PORTABLE = Path(__file__).resolve().parent / "portable"
sys.path.insert(0, str(PORTABLE))
import dertree  # noqa: E402
import test_x509_strict as strict  # noqa: E402
from test_x509_xcheck import cert_specs  # noqa: E402


def cryptography_refuses(d):
    """True when cryptography cannot load `d` or read the fields the
    device reads (it parses names, extensions and keys lazily)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # negative serials
            c = cx509.load_der_x509_certificate(d)
            c.serial_number, c.subject, c.issuer, c.extensions, c.not_valid_before_utc, c.not_valid_after_utc
            c.public_key()
    except Exception:
        return True
    return False


def ours(d):
    try:
        x509.parse(d)
        return "OK"
    except der.DERError as e:
        return "ERR " + str(e)


def _variants(d):
    t = dertree.parse(d)
    for p in dertree.paths(t):
        forms = ("long", "indef", "junk") if isinstance(dertree.node(t, p)[1], list) else ("long", "indef")
        for f in forms:
            yield p, f, dertree.ser(t, p, f)


def test_fixture_variants_are_refused_by_cryptography_too():
    n = 0
    for name, d in strict.fixture_ders():
        for p, f, v in _variants(d):
            assert ours(v).startswith("ERR "), (name, p, f)
            assert cryptography_refuses(v), (name, p, f)
            n += 1
    assert n == 375


def test_skipped_element_rules_are_cryptographys_too():
    leaf = (PORTABLE / "certs" / "leaf.der").read_bytes()
    cases = [strict._leaf_with((0, 0, 7, 0, 0, 1), b"\x01"), strict._leaf_with((0, 0, 7, 0, 0, 1), b"\x00"),
             strict._leaf_with((0, 0, 6, 0, 1), b"\x00"), strict._leaf_with((0, 2), b"\x01\x31"),
             strict._leaf_with((0, 0, 2, 0), b"\x2a\x80\x86\x48\xce\x3d\x04\x03\x02"),
             strict._with_key_oid(b"\x2b" + b"\x01" * 63),
             strict._with_cn(0x0C, b"dev\xc0\xaf01"), strict._with_cn(0x0C, b"Con\xc0\xaf", (0, 0, 3, 0, 0, 1))]
    t = dertree.parse(leaf)
    dertree.node(t, (0, 0, 7, 0, 0, 2))[0] = 0x24
    cases.append(dertree.ser(t))
    t = dertree.parse(leaf)
    dertree.node(t, (0, 0, 0, 0))[1] = b"\x00"
    cases.append(dertree.ser(t))
    for v in cases:
        assert ours(v).startswith("ERR ") and cryptography_refuses(v), ours(v)
    # where the device is stricter than cryptography (documented bounds):
    # a serial of more than 64 octets, a CN of more than 256, a BMPString
    # surrogate pair, an OID sub-identifier of 10 to 19 octets
    for v in (strict._with_serial(b"\x7f" + b"\xff" * 64), strict._with_cn(0x0C, b"a" * 257),
              strict._with_cn(0x1E, b"\x00d\xd8\x3d\xde\x00")):
        assert ours(v).startswith("ERR ") and not cryptography_refuses(v)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cert_specs(), st.randoms(use_true_random=False))
def test_generated_certificate_variants_are_refused_by_both(d, rnd):
    vs = list(_variants(d))
    for p, f, v in rnd.sample(vs, min(12, len(vs))):
        assert ours(v).startswith("ERR "), (p, f)
        assert cryptography_refuses(v), (p, f)


MP_PARSE = r"""
import sys
from microagent import x509
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        d = f.read()
    try:
        x509.parse(d)
        print("OK")
    except ValueError as e:
        print("ERR", e)
    except Exception as e:
        print("CRASH", type(e).__name__, e)
"""


def test_unix_port_refuses_with_the_same_messages(mp, tmp_path):
    # every variant of the Ed25519 fixture and of a generated RSA
    # certificate with extensions, plus the rule and bound cases
    from cryptography.hazmat.primitives.asymmetric import rsa
    import datetime
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(65537, 2048)
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "dev-01")])
    c = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(7).not_valid_before(datetime.datetime(2025, 1, 1)).not_valid_after(datetime.datetime(2027, 1, 1))
         .add_extension(cx509.BasicConstraints(ca=True, path_length=0), critical=True)
         .add_extension(cx509.SubjectAlternativeName([cx509.DNSName("a.example"), cx509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
         .sign(key, hashes.SHA256()))
    ders = [v for _, _, v in _variants(dict(strict.fixture_ders())["forever"])]
    ders += [v for _, _, v in _variants(c.public_bytes(serialization.Encoding.DER))]
    ders += [strict._with_serial(b"\x01" * 2001), strict._with_key_oid(b"\x2b" + b"\xff" * 2000 + b"\x7f"),
             strict._with_cn(0x0C, b"dev\xed\xa0\x80"), strict._with_cn(0x1C, b"\x00\x11\x00\x00")]
    paths = []
    for i, v in enumerate(ders):
        p = tmp_path / ("v%d.der" % i)
        p.write_bytes(v)
        paths.append(str(p))
    want = [ours(v) for v in ders]
    assert all(w.startswith("ERR ") and len(w) > 4 for w in want)
    got = []
    for k in range(0, len(paths), 100):  # a command line of bounded length
        r = mp(MP_PARSE, *paths[k:k + 100], timeout=120)
        assert r.returncode == 0, r.stderr
        got += r.stdout.splitlines()
    assert got == want


# ---- a file and a buffer give the same answer ---------------------------------
ALPHABET = b"-=\r\n \tABCab09+/\x00\xff\x30E"


def _sources():
    certs = PORTABLE / "certs"
    return [(certs / n).read_bytes() for n in ("chain.pem", "leaf.pem", "two.der", "leaf.der")]


def _mutate(d, rnd):
    d = bytearray(d)
    for _ in range(rnd.randint(1, 3)):
        if not d:
            break
        m = rnd.randrange(5)
        j = rnd.randrange(len(d))
        if m == 0:
            d[j] = rnd.choice(ALPHABET)
        elif m == 1:
            d[j:j] = bytes([rnd.choice(ALPHABET)]) * rnd.randint(1, 130)
        elif m == 2:
            del d[j:j + rnd.randint(1, 80)]
        elif m == 3:
            d = d[:j]
        else:
            d[j:j] = b"\n"
    return bytes(d)


def _outcome(fn):
    try:
        return "OK " + ",".join(c.sha1 for c in fn())
    except der.DERError as e:
        return "ERR " + str(e)


@settings(max_examples=400, deadline=None)
@given(which=st.sampled_from(range(4)), rnd=st.randoms(use_true_random=False))
def test_file_and_buffer_agree_on_mutations(which, rnd, tmp_path_factory):
    d = _mutate(_sources()[which], rnd)
    p = tmp_path_factory.mktemp("mut") / "m.pem"
    p.write_bytes(d)
    a = _outcome(lambda: list(x509.iter_certs(d)))
    b = _outcome(lambda: list(x509.iter_file(str(p))))
    assert a == b
    assert a != "ERR "


MP_BOTH = r"""
import sys
from microagent import x509
def outcome(fn):
    try:
        return "OK " + ",".join([c.sha1 for c in fn()])
    except ValueError as e:
        return "ERR " + str(e)
    except Exception as e:
        return "CRASH %s %s" % (type(e).__name__, e)
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        d = f.read()
    a = outcome(lambda: list(x509.iter_certs(d)))
    d = None
    b = outcome(lambda: list(x509.iter_file(path)))
    print(a if a == b else "DIFFER %s | %s" % (a, b))
"""


def test_file_and_buffer_agree_on_the_unix_port_as_on_cpython(mp, tmp_path):
    rnd = random.Random(7)
    src = _sources()
    paths, want = [], []
    for i in range(300):
        d = _mutate(src[i % 4], rnd)
        p = tmp_path / ("m%d" % i)
        p.write_bytes(d)
        paths.append(str(p))
        a = _outcome(lambda: list(x509.iter_certs(d)))
        assert a == _outcome(lambda: list(x509.iter_file(str(p))))
        want.append(a)
    got = []
    for k in range(0, len(paths), 100):
        r = mp(MP_BOTH, *paths[k:k + 100], timeout=120)
        assert r.returncode == 0, r.stderr
        got += r.stdout.splitlines()
    assert got == want
    assert sum(1 for w in want if w.startswith("OK ")) > 30  # not only errors


def test_openssl_trusted_certificate(tmp_path, mp):
    leaf = PORTABLE / "certs" / "leaf.pem"
    out = tmp_path / "trusted.pem"
    subprocess.run(["openssl", "x509", "-in", str(leaf), "-addtrust", "serverAuth", "-setalias", "dev-01 pin",
                    "-trustout", "-out", str(out)], check=True, capture_output=True)
    text = out.read_bytes()
    assert text.startswith(b"-----BEGIN TRUSTED CERTIFICATE-----\n")
    body = base64.b64decode(b"".join(text.split(b"\n")[1:-2]))
    assert len(body) > 583  # the certificate and OpenSSL's trust settings
    want = [c.sha1 for c in x509.iter_file(str(leaf))]
    assert [c.sha1 for c in x509.iter_file(str(out))] == want == [c.sha1 for c in x509.iter_certs(text)]
    r = mp("import sys\nfrom microagent import x509\nprint([c.sha1 for c in x509.iter_file(sys.argv[1])])", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(want)
