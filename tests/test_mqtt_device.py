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
    """Start boards/unix/main.py as a user runs it, in folder cwd."""
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


def test_unix_main_sas_full_flow(mqtt_lib, tmp_path):
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port, twin_desired={"$version": 2, "led": "off", "microagent": {"timeWindowRules": HUB_RULES}})
        try:
            dev = device_main(mqtt_lib, tmp_path, {
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
    # the accepted configuration was written back, with its $version
    saved = json.loads((tmp_path / "microagent.json").read_text())
    assert saved == {"deviceId": "dev-01", "timeWindowRules": HUB_RULES, "$version": 2}
