"""Real parts for the IoT Hub MQTT tests: certificates made with
`cryptography`, mosquitto brokers on loopback with a generated config, a
paho-mqtt client playing the hub, and the unix port running device code.
Everything listens on 127.0.0.1 only."""
import datetime
import json
import os
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = "/usr/sbin/mosquitto"
# Debian's mosquitto package ships the plugin in the multiarch lib folder
DYNSEC = (sorted(__import__("glob").glob("/usr/lib/*/mosquitto_dynamic_security.so")) or
          ["/usr/lib/mosquitto_dynamic_security.so"])[0]
LOOPBACK = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- certificates ----------------------------------------------------------
def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_cn, key, issuer_cn, issuer_key, ca=False, san=None, days=365):
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    b = (x509.CertificateBuilder().subject_name(_name(subject_cn)).issuer_name(_name(issuer_cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
    if san:
        import ipaddress
        names = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in san]
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


class PKI:
    """A test CA with a server certificate for localhost/127.0.0.1 and a
    device client certificate (CN = device id), plus a second, untrusted CA
    with its own device certificate. Files: PEM for mosquitto, DER for the
    unix port's tls (it rejects PEM)."""

    def __init__(self, folder, device="dev-01"):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("microagent test CA", ca_key, "microagent test CA", ca_key, ca=True)
        srv_key = ec.generate_private_key(ec.SECP256R1())
        srv = _cert("localhost", srv_key, "microagent test CA", ca_key, san=["localhost", LOOPBACK])
        dev_key = ec.generate_private_key(ec.SECP256R1())
        dev = _cert(device, dev_key, "microagent test CA", ca_key)
        rogue_key = ec.generate_private_key(ec.SECP256R1())
        rogue_ca = _cert("rogue CA", rogue_key, "rogue CA", rogue_key, ca=True)
        rdev_key = ec.generate_private_key(ec.SECP256R1())
        rdev = _cert(device, rdev_key, "rogue CA", rogue_key)
        self.device_cert = dev
        self.ca_cert = ca
        for stem, cert, key in (("ca", ca, ca_key), ("server", srv, srv_key), ("device", dev, dev_key),
                                ("rogue-device", rdev, rdev_key), ("rogue-ca", rogue_ca, rogue_key)):
            self._write(stem, cert, key)

    def _write(self, stem, cert, key):
        (self.dir / (stem + ".pem")).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.dir / (stem + ".der")).write_bytes(cert.public_bytes(serialization.Encoding.DER))
        (self.dir / (stem + "-key.pem")).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
        (self.dir / (stem + "-key.der")).write_bytes(key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))

    def path(self, name):
        return str(self.dir / name)


# ---- mosquitto ---------------------------------------------------------------
def _dynsec_doc(users):
    # mosquitto 2.0 dynamic-security.json: PBKDF2-HMAC-SHA512 password
    # hashes (64 bytes) with a 12-byte salt, base64; one role per user
    import base64
    import hashlib
    clients, roles = [], []
    for name, (password, acls) in users.items():
        salt = os.urandom(12)
        h = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
        clients.append({"username": name, "password": base64.b64encode(h).decode(),
                        "salt": base64.b64encode(salt).decode(), "iterations": 101,
                        "roles": [{"rolename": "r-" + name}]})
        roles.append({"rolename": "r-" + name, "acls": [
            {"acltype": t, "topic": topic, "priority": 0, "allow": True} for t, topic in acls]})
    return {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                                 "subscribe": False, "unsubscribe": True},
            "clients": clients, "groups": [], "roles": roles}


class Broker:
    """mosquitto on loopback with a plain listener (`port`) and, given a
    PKI, a TLS listener (`tls_port`) that requires a client certificate
    from the test CA (X.509 client authentication, as IoT Hub does).
    `passwords`: {username: password} turns authentication on for the
    plain listener (CONNACK 5 for a wrong one); `acl`: text of an ACL file
    (mosquitto's acl_file filters delivery but grants every SUBSCRIBE);
    `dynsec`: {username: (password, [(acltype, topic), ...])} puts
    mosquitto's dynamic-security plugin on the plain listener instead,
    which authenticates and refuses a SUBSCRIBE no role allows with SUBACK
    0x80 (MQTT 3.1.1 s3.9.3)."""

    def __init__(self, folder, pki=None, passwords=None, acl=None, dynsec=None):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if pki else None
        import pwd
        # as root, mosquitto would drop to user "mosquitto", who cannot read
        # pytest's private temporary folders
        lines = ["user %s" % pwd.getpwuid(os.geteuid()).pw_name, "per_listener_settings true", "persistence false", "log_dest file %s" % (self.dir / "mosquitto.log"),
                 "log_type all", "max_packet_size 1048576",
                 "listener %d %s" % (self.port, LOOPBACK)]
        if dynsec:
            ds = self.dir / "dynamic-security.json"
            ds.write_text(json.dumps(_dynsec_doc(dynsec)))
            lines += ["plugin %s" % DYNSEC, "plugin_opt_config_file %s" % ds]
        elif passwords:
            pw = self.dir / "passwd"
            pw.write_text("".join("%s:%s\n" % kv for kv in passwords.items()))
            os.chmod(pw, 0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            lines += ["allow_anonymous false", "password_file %s" % pw]
        else:
            lines += ["allow_anonymous true"]
        if acl:
            (self.dir / "acl").write_text(acl)
            lines += ["acl_file %s" % (self.dir / "acl")]
        if pki:
            lines += ["listener %d %s" % (self.tls_port, LOOPBACK), "allow_anonymous true",
                      "cafile %s" % pki.path("ca.pem"), "certfile %s" % pki.path("server.pem"),
                      "keyfile %s" % pki.path("server-key.pem"), "require_certificate true",
                      "use_identity_as_username true"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.time() + 10
        for port in (self.port, self.tls_port):
            while port:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto exited: %s" % self.proc.stderr.read().decode())
                try:
                    socket.create_connection((LOOPBACK, port), 0.2).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError("mosquitto did not listen on %d" % port)
                    time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self):
        p = self.dir / "mosquitto.log"
        return p.read_text() if p.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


# ---- the hub ---------------------------------------------------------------------
class Hub:
    """A paho-mqtt client playing IoT Hub's service side on the broker:
    receives what the device publishes (D2C, security messages, twin
    reported patches and GETs, method responses) into a queue, and sends
    C2D messages, direct method invocations and desired-property patches.
    `twin_desired`: the desired section answered to a twin GET."""

    def __init__(self, port, device="dev-01", twin_desired=None):
        import paho.mqtt.client as mqtt
        self.device = device
        self.received = queue.Queue()
        self.seen = []
        self.twin_desired = twin_desired
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub-service", protocol=mqtt.MQTTv311)
        self.c.on_message = self._on_message
        self._subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.connect(LOOPBACK, port)
        self.c.loop_start()
        filters = [("devices/%s/messages/events/#" % device, 0), ("$iothub/twin/GET/#", 0),
                   ("$iothub/twin/PATCH/properties/reported/#", 0), ("$iothub/methods/res/#", 0)]
        self.c.subscribe(filters)
        if not self._subscribed.wait(5):
            raise RuntimeError("hub client did not get its SUBACK")

    def _on_message(self, client, userdata, msg):
        topic = msg.topic
        if topic.startswith("$iothub/twin/GET/") and self.twin_desired is not None:
            rid = topic.split("$rid=", 1)[1]
            body = json.dumps({"desired": self.twin_desired, "reported": {"$version": 1}})
            client.publish("$iothub/twin/res/200/?$rid=" + rid, body)
        self.received.put((topic, msg.payload))

    def wait_for(self, pred, timeout=15):
        """The first received (topic, payload) for which pred() is true;
        others seen meanwhile are kept in self.seen. Raises AssertionError
        on timeout."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("hub: nothing matching arrived in %ss" % timeout)
            try:
                item = self.received.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(item)
            if pred(item[0], item[1]):
                return item

    def drain(self):
        """Everything received so far, in order (self.seen, topped up)."""
        while True:
            try:
                self.seen.append(self.received.get_nowait())
            except queue.Empty:
                return self.seen

    def publish(self, topic, payload, qos=0):
        info = self.c.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)

    def c2d(self, payload, props="%24.mid=1&%24.to=%2Fdevices%2F{dev}%2Fmessages%2Fdevicebound"):
        self.publish("devices/%s/messages/devicebound/%s" % (self.device, props.format(dev=self.device)), payload)

    def method(self, name, rid, payload=b"{}"):
        self.publish("$iothub/methods/POST/%s/?$rid=%s" % (name, rid), payload)

    def desired(self, version, patch):
        body = dict(patch)
        body["$version"] = version
        self.publish("$iothub/twin/PATCH/properties/desired/?$version=%d" % version, json.dumps(body))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def security_messages(items, device="dev-01"):
    """The parsed security-message payloads among received (topic, payload)."""
    prefix = "devices/%s/messages/events/" % device
    out = []
    for topic, payload in items:
        if topic.startswith(prefix) and "ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1" in topic:
            out.append(json.loads(payload))
    return out


# ---- the device on the unix port -------------------------------------------
class DeviceProcess:
    """A MicroPython unix-port process whose stdout lines are read on a
    thread (so the test can wait for a line while the device runs)."""

    def __init__(self, argv, env, cwd):
        self.proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = []
        self._q = queue.Queue()
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def wait_line(self, pred, timeout=20):
        """The first stdout line (from now on) for which pred() holds."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("device: no matching line in %ss; output so far:\n%s"
                                     % (timeout, "\n".join(self.lines[-40:])))
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("device exited (%s) before a matching line; output:\n%s"
                                     % (self.proc.wait(), "\n".join(self.lines[-60:])))
            if pred(line):
                return line

    def stop(self, timeout=10):
        """SIGINT (KeyboardInterrupt on the unix port), then wait; returns
        the exit status."""
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._t.join(5)
        return rc


def alerts(lines):
    """Parsed ALERT/RECOMMENDATION objects among console lines."""
    out = []
    for l in lines:
        if l.startswith("ALERT ") or l.startswith("RECOMMENDATION "):
            out.append(json.loads(l.split(" ", 1)[1]))
    return out


ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


def without_time(a):
    """An ALERT object with its `time` checked for format and removed."""
    import re
    assert re.match(ISO, a["time"]), a["time"]
    b = dict(a)
    del b["time"]
    return b


# ---- a broker that misbehaves on purpose -----------------------------------------
def _read_packet(conn):
    """(first byte, body) of one MQTT packet from a socket, or None at EOF."""
    h = conn.recv(1)
    if not h:
        return None
    n, shift = 0, 0
    while True:
        b = conn.recv(1)
        if not b:
            return None
        n |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
        shift += 7
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return h[0], body


def publish_packet(topic, payload, qos=0, pid=1):
    """The bytes of an MQTT 3.1.1 PUBLISH (topic: bytes or str)."""
    t = topic.encode() if isinstance(topic, str) else topic
    var = len(t).to_bytes(2, "big") + t + (pid.to_bytes(2, "big") if qos else b"")
    body = var + payload
    n = len(body)
    rl = b""
    while True:
        d = n & 0x7F
        n >>= 7
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    return bytes([0x30 | (qos << 1)]) + rl + body


class FakeBroker:
    """A tiny MQTT 3.1.1 server on loopback for what a real broker never
    does: connection i answers CONNECT and `subscribes` SUBSCRIBEs, then
    waits for `publishes` twin GET PUBLISHes from the device (main.py's),
    then sends scripts[i] (bytes) and closes, or stays open (answering
    PINGREQ and SUBSCRIBE) when the script is followed by keep=True, or
    for keep seconds (a number). scripts: list of (bytes, keep). Records
    the PUBLISH topics it got."""

    def __init__(self, scripts, subscribes, publishes=0):
        self.scripts = scripts
        self.subscribes = subscribes
        self.publishes = publishes
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.published = []
        self.connections = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            i = self.connections
            self.connections += 1
            try:
                self._session(conn, self.scripts[min(i, len(self.scripts) - 1)])
            except OSError:
                pass
            finally:
                conn.close()

    def _session(self, conn, script):
        data, keep = script
        conn.settimeout(10)
        p = _read_packet(conn)
        if p is None or p[0] != 0x10:
            return
        conn.sendall(b"\x20\x02\x00\x00")
        subs = pubs = 0
        while subs < self.subscribes or pubs < self.publishes:
            p = _read_packet(conn)
            if p is None:
                return
            if p[0] & 0xF0 == 0x80:
                subs += 1
                conn.sendall(b"\x90\x03" + p[1][:2] + b"\x00")
            elif p[0] & 0xF0 == 0x30 and p[1][2:].startswith(b"$iothub/twin/GET/"):
                pubs += 1
        conn.sendall(data)
        if not keep:
            return
        conn.settimeout(0.2)
        until = None if keep is True else time.time() + keep
        while not self._stop.is_set() and (until is None or time.time() < until):
            try:
                p = _read_packet(conn)
            except socket.timeout:
                continue
            if p is None:
                return
            if p[0] & 0xF0 == 0x30:
                tl = int.from_bytes(p[1][:2], "big")
                self.published.append(p[1][2:2 + tl].decode("utf-8", "replace"))
            elif p[0] == 0xC0:
                conn.sendall(b"\xd0\x00")
            elif p[0] & 0xF0 == 0x80:
                conn.sendall(b"\x90\x03" + p[1][:2] + b"\x00")

    def close(self):
        self._stop.set()
        self._t.join(5)
        self.sock.close()
