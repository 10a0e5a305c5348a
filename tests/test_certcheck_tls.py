"""A TLS server certificate inventoried and pinned through a real
handshake: a CPython `ssl` server on 127.0.0.1 with certificates made by
`cryptography`, the client on the unix port with certcheck.PeerWatch as
tls.SSLContext.verify_callback (mbedtls hands it each chain
certificate's DER)."""
import datetime
import json
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Test CA")).issuer_name(_name("Test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(NOW - datetime.timedelta(days=800)).not_valid_after(NOW + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"dir": d, "ca": ca}
    (d / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    for tag, nb, na in (("good", -1, 365), ("expired", -400, -10)):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(_name("Test CA"))
                .public_key(key.public_key()).serial_number(100 + len(out))
                .not_valid_before(NOW + datetime.timedelta(days=nb)).not_valid_after(NOW + datetime.timedelta(days=na))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        (d / (tag + ".pem")).write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
        (d / (tag + ".key")).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        out[tag] = leaf
    return out


class _Server:
    """TLS on 127.0.0.1: each connection gets b"hello" and is closed."""

    def __init__(self, certfile, keyfile):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(10)
            try:
                with self.ctx.wrap_socket(c, server_side=True) as t:
                    self.handshakes += 1
                    t.sendall(b"hello")
            except (OSError, ssl.SSLError):
                c.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def server(pki):
    servers = []

    def start(tag):
        s = _Server(str(pki["dir"] / (tag + ".pem")), str(pki["dir"] / (tag + ".key")))
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.close()


CLIENT = r"""
import sys, json, socket, tls
from microagent.agent import Agent
from microagent import certcheck
port, ca_path, expected, enforce, mode = sys.argv[1:6]
with open(ca_path, "rb") as f:
    ca = f.read()
lines = []
a = Agent(None, lines.append)
a.configure({"deviceId": "dev-01"})
w = certcheck.PeerWatch(a, expected or None, "localhost", enforce == "1")
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED if mode == "required" else tls.CERT_OPTIONAL
ctx.load_verify_locations(ca)
ctx.verify_callback = w
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
try:
    t = ctx.wrap_socket(s, server_hostname="localhost")
    res = "read " + t.read(5).decode()
    t.close()
except (OSError, ValueError) as e:
    res = "refused " + type(e).__name__
    s.close()
print(json.dumps({"result": res, "chain": [c.subject_cn for c in w.chain],
                  "peer": w.peer.sha256 if w.peer else None, "pinned": w.pinned}))
for l in lines:
    print(l)
"""


def _run(mp, pki, srv, expected="", enforce=False, mode="required"):
    r = mp(CLIENT, str(srv.port), str(pki["dir"] / "ca.der"), expected, "1" if enforce else "0", mode, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")
    res = json.loads(out[0])
    alerts = [json.loads(l.split(" ", 1)[1]) for l in out[1:] if l.startswith(("ALERT ", "RECOMMENDATION "))]
    return res, [(a["type"], a["details"]) for a in alerts]


def _sha(c, alg):
    return c.fingerprint(alg).hex().upper()


def test_pinned_server_certificate_connects_quietly(mp, pki, server):
    srv = server("good")
    res, alerts = _run(mp, pki, srv, _sha(pki["good"], hashes.SHA256()))
    assert res == {"result": "read hello", "chain": ["Test CA", "localhost"],
                   "peer": _sha(pki["good"], hashes.SHA256()), "pinned": True}
    assert alerts == []
    assert srv.handshakes == 1


def test_thumbprint_mismatch_is_reported_and_optionally_enforced(mp, pki, server):
    srv = server("good")
    wrong = _sha(pki["ca"], hashes.SHA1())  # the CA's, not the server's
    mismatch = ("cert_thumbprint_mismatch", {"path": "tls:localhost", "subject": "localhost", "expected": wrong,
                                             "actual": _sha(pki["good"], hashes.SHA1()), "rule": "sha1"})
    res, alerts = _run(mp, pki, srv, wrong)
    assert res["result"] == "read hello" and res["pinned"] is False
    assert alerts == [mismatch]
    res, alerts = _run(mp, pki, srv, wrong, enforce=True)
    assert res == {"result": "refused OSError", "chain": ["Test CA", "localhost"],
                   "peer": _sha(pki["good"], hashes.SHA256()), "pinned": False}
    assert alerts == [mismatch]
    assert srv.handshakes == 1  # the enforced one never completed


def test_expired_server_certificate_is_reported(mp, pki, server):
    srv = server("expired")
    na = pki["expired"].not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    expired = ("cert_expired", {"path": "tls:localhost", "subject": "localhost", "not_after": na})
    # CERT_OPTIONAL: mbedtls notes the expiry and goes on; the agent reports it
    res, alerts = _run(mp, pki, srv, mode="optional")
    assert res["result"] == "read hello" and res["chain"] == ["Test CA", "localhost"]
    assert alerts == [expired]
    # CERT_REQUIRED: mbedtls refuses the handshake, the agent has seen why
    res, alerts = _run(mp, pki, srv, mode="required")
    assert res["result"].startswith("refused ")
    assert alerts == [expired]
