"""The socket wrapper on the unix port with real loopback sockets: an app
that uses microagent.socket() is watched with no other change, TLS included."""
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

HEAD = "ALERT "


def _alerts(stdout):
    out = []
    for l in stdout.splitlines():
        if l.startswith(HEAD):
            a = json.loads(l[len(HEAD):])
            out.append((a["type"], a["count"], a["details"]))
    return out


def _free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture
def tls_server(tmp_path):
    """A CPython TLS echo server on 127.0.0.66 with a certificate for
    'localhost'; yields (port, CA DER path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp_path / "ca.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    srv = socket.socket()
    srv.bind(("127.0.0.66", 0))
    srv.listen(4)
    srv.settimeout(20)

    def serve():
        try:
            c, _ = srv.accept()
            t = ctx.wrap_socket(c, server_side=True)
            t.sendall(t.recv(16).upper())
            t.close()
        except OSError:
            pass
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield srv.getsockname()[1], tmp_path / "ca.der"
    srv.close()
    th.join(5)


def test_outbound_tls_through_wrapped_socket(mp, tls_server):
    port, ca = tls_server
    code = """
import microagent, socket, tls
a = microagent.start({"deviceId": "d1", "threatIntel": {"ips": ["127.0.0.66"]},
    "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True, "allowlistValues": ["127.0.0.0/25"]}]})
s = microagent.socket()
s.connect(socket.getaddrinfo("127.0.0.66", %d)[0][-1])   # a raw 16-byte sockaddr on unix
print("open", a.open_connections)
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
ctx.load_verify_locations(open(%r, "rb").read())
t = ctx.wrap_socket(s, server_hostname="localhost")
t.write(b"ping")
print("reply", t.read(4))
t.close()
print("open", a.open_connections)
""" % (port, str(ca))
    r = mp(code)
    assert r.returncode == 0, r.stderr
    assert _alerts(r.stdout) == [("suspicious_ip", 1, {"remote": "127.0.0.66", "port": port, "direction": "out"})]
    assert [l for l in r.stdout.splitlines() if not l.startswith(HEAD)] == ["open 1", "reply b'PING'", "open 0"]


def test_refused_connect_is_reported_and_not_counted(mp):
    port = _free_port("127.0.0.66")   # nothing listens there
    code = """
import microagent, socket
a = microagent.start({"deviceId": "d1", "threatIntel": {"ips": ["127.0.0.66"]}})
s = microagent.socket()
try:
    s.connect(socket.getaddrinfo("127.0.0.66", %d)[0][-1])
    print("connected?!")
except OSError as e:
    print("refused", e.errno)
print("open", a.open_connections)
""" % port
    r = mp(code)
    assert r.returncode == 0, r.stderr
    assert _alerts(r.stdout) == [("suspicious_ip", 1, {"remote": "127.0.0.66", "port": port, "direction": "out"})]
    assert r.stdout.splitlines()[1:] == ["refused 111", "open 0"]


def test_inbound_accept_and_active_connection_window(mp):
    port = _free_port("127.0.0.1")
    code = """
import microagent, socket, time
a = microagent.start({"deviceId": "d1", "threatIntel": {"ips": ["127.0.0.66"]},
    "timeWindowRules": [{"ruleType": "ActiveConnectionsNotInAllowedRange", "isEnabled": True,
                         "minThreshold": 0, "maxThreshold": 2, "timeWindowSize": "PT2S"}]})
srv = microagent.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
srv.listen(4)
print("listening")
conns = []
for i in range(3):
    c, addr = srv.accept()
    conns.append(c)
print("open", a.open_connections)
for c in conns:
    c.close()
srv.close()
print("open", a.open_connections)
time.sleep(2.2)
a.poll()
""" % port
    import subprocess
    import time
    from host_tools import unixport
    lib = unixport.stage()
    proc = subprocess.Popen(unixport.command(code), env=unixport.env(lib), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "listening\n"
    clients = []
    for src in ("127.0.0.66", "127.0.0.1", "127.0.0.1"):
        c = socket.socket()
        c.bind((src, 0))
        for _ in range(50):
            try:
                c.connect(("127.0.0.1", port))
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        clients.append(c)
    out, err = proc.communicate(timeout=30)
    for c in clients:
        c.close()
    assert proc.returncode == 0, err
    assert _alerts(out) == [
        ("suspicious_ip", 1, {"remote": "127.0.0.66", "port": port, "direction": "in"}),
        ("ActiveConnectionsNotInAllowedRange", 1, {"value": 3, "min": 0, "max": 2, "window_s": 2})]
    assert [l for l in out.splitlines() if not l.startswith(HEAD)] == ["open 3", "open 0"]


def test_udp_reconnect_and_nonblocking_connect_counting(mp):
    tcp_port = _free_port("127.0.0.1")
    srv = socket.socket()
    srv.bind(("127.0.0.1", tcp_port))
    srv.listen(2)
    code = """
import microagent, socket, time
a = microagent.start({"deviceId": "d1", "threatIntel": {"ips": ["127.0.0.66"]}})
u = microagent.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in (5000, 5001, 5000, 5002, 5003):
    u.connect(socket.getaddrinfo("127.0.0.66", port)[0][-1])
print("udp open", a.open_connections)
u.close()
print("udp closed", a.open_connections)
t = microagent.socket()
t.setblocking(False)
try:
    t.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
    print("connected at once")
except OSError as e:
    print("pending", e.errno == 115)
print("tcp open", a.open_connections)
t.close()
print("tcp closed", a.open_connections)
""" % tcp_port
    r = mp(code)
    srv.close()
    assert r.returncode == 0, r.stderr
    assert [l for l in r.stdout.splitlines() if not l.startswith(HEAD)] == [
        "udp open 1", "udp closed 0", "pending True", "tcp open 1", "tcp closed 0"]
    # the repeat to 5000 folds; every new destination is reported at once
    assert _alerts(r.stdout) == [("suspicious_ip", 1, {"remote": "127.0.0.66", "port": p, "direction": "out"})
                                 for p in (5000, 5001, 5002, 5003)]
