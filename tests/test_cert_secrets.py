"""No private key text in any output: every key type `cryptography` writes
(RSA, EC and Ed25519 PKCS#8 PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY,
ENCRYPTED PRIVATE KEY, and DER), multi-line and on one line, configured
where a certificate is expected. Checked in the reader's errors, the
agent's console lines (agent_error) on CPython and on the unix port, and
`microagent cert inspect` stdout/stderr, text and --json."""
import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from host_tools import cli
from microagent import der, x509
from microagent.agent import Agent

CLOCK = 1796000000


class _Clock:
    def ticks_ms(self):
        return 0

    def time(self):
        return CLOCK


def _keys():
    """(name, key file bytes, the secret bytes as base64 text) of each form."""
    r = rsa.generate_private_key(65537, 2048)
    e = ec.generate_private_key(ec.SECP256R1())
    d = ed25519.Ed25519PrivateKey.generate()
    pkcs8 = ser.PrivateFormat.PKCS8
    trad = ser.PrivateFormat.TraditionalOpenSSL
    none = ser.NoEncryption()
    out = []
    for name, key, fmt, enc in (("rsa-pkcs8", r, pkcs8, none), ("rsa-pkcs1", r, trad, none),
                                ("ec-pkcs8", e, pkcs8, none), ("ec-sec1", e, trad, none),
                                ("ed25519", d, pkcs8, none),
                                ("encrypted", e, pkcs8, ser.BestAvailableEncryption(b"test-only"))):
        pem = key.private_bytes(ser.Encoding.PEM, fmt, enc)
        lines = pem.split(b"\n")
        body = b"".join(lines[1:-2])
        one = lines[0] + body + lines[-2]
        out.append((name, pem, body))
        out.append((name + "-one-line", one + b"\n", body))
        out.append((name + "-one-line-crlf", one + b"\r\n", body))
        out.append((name + "-cr-only", pem.replace(b"\n", b"\r"), body))
        out.append((name + "-no-end", b"\n".join(lines[:-2]) + b"\n", body))
        out.append((name + "-as-certificate", b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines[1:-2]) + b"\n-----END CERTIFICATE-----\n", body))
        if enc is none:
            raw = key.private_bytes(ser.Encoding.DER, fmt, enc)
            out.append((name + "-der", raw, base64.b64encode(raw)))
    return out


KEYS = _keys()


def _leaks(body, text):
    """The 8-character pieces of the key's base64 (and 16-digit pieces of
    its hex) that `text` holds."""
    b64 = body.decode()
    hexa = base64.b64decode(body).hex()
    found = [b64[i:i + 8] for i in range(len(b64) - 7) if b64[i:i + 8] in text]
    found += [hexa[i:i + 16] for i in range(0, len(hexa) - 15, 2) if hexa[i:i + 16] in text.lower()]
    return found


@pytest.fixture(scope="module")
def key_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = []
    for name, data, body in KEYS:
        p = d / (name + ".pem")
        p.write_bytes(data)
        out.append((name, p, body))
    return out


def test_reader_errors(key_files):
    for name, p, body in key_files:
        for fn in (lambda: list(x509.iter_file(str(p))), lambda: list(x509.iter_certs(p.read_bytes()))):
            with pytest.raises(der.DERError) as e:
                fn()
            assert str(e.value) and not _leaks(body, str(e.value)), (name, str(e.value))


def test_agent_console_lines_on_cpython(key_files):
    for name, p, body in key_files:
        lines = []
        a = Agent(_Clock(), lines.append)
        a.configure({"deviceId": "dev-01", "certificates": [{"path": str(p)}]})
        assert len(lines) == 1 and '"type":"agent_error"' in lines[0], (name, lines)
        assert not _leaks(body, lines[0]), (name, lines[0])


MP_AGENT = r"""
import sys
from microagent.agent import Agent
class Clock:
    def ticks_ms(self):
        return 0
    def time(self):
        return 1796000000
for path in sys.argv[1:]:
    a = Agent(Clock(), print)
    a.configure({"deviceId": "dev-01", "certificates": [{"path": path}]})
    print("--")
"""


def test_agent_console_lines_on_the_unix_port(key_files, mp):
    r = mp(MP_AGENT, *[str(p) for _, p, _ in key_files])
    assert r.returncode == 0, r.stderr
    groups = r.stdout.split("--\n")[:-1]
    assert len(groups) == len(key_files)
    for (name, p, body), out in zip(key_files, groups):
        assert out.count("\n") == 1 and '"type":"agent_error"' in out, (name, out)
        assert not _leaks(body, out), (name, out)
    # the same messages as on CPython
    for (name, p, body), out in zip(key_files, groups):
        lines = []
        Agent(_Clock(), lines.append).configure({"deviceId": "dev-01", "certificates": [{"path": str(p)}]})
        assert json.loads(out.split(" ", 1)[1])["details"] == json.loads(lines[0].split(" ", 1)[1])["details"], name


def test_cert_inspect_output(key_files, capsys):
    for name, p, body in key_files:
        for argv in (["cert", "inspect", str(p)], ["cert", "inspect", "--json", str(p)]):
            rc = cli.main(argv)
            out, err = capsys.readouterr()
            assert rc == 2, name
            assert not _leaks(body, out + err), (name, out, err)
            if "--json" in argv:
                assert json.loads(out)[0]["error"].startswith("not a certificate: ")
            else:
                assert out == "" and err.count("\n") == 1


def test_one_line_keys_name_the_line_only(key_files):
    for name, p, body in key_files:
        if name.endswith("-one-line") or name.endswith("-one-line-crlf"):
            with pytest.raises(der.DERError) as e:
                list(x509.iter_file(str(p)))
            assert str(e.value) == "PEM line 1: malformed BEGIN line", name
