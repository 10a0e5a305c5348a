"""Configuration from the twin, with real parts: mosquitto on loopback,
paho-mqtt playing IoT Hub (desired patches, twin GET answers), PyPI's
umqtt.simple 1.3.4 with the watcher on the unix port. The twin's
`microagent` property is an RFC 7386 merge patch onto the configuration in
force; documents older than it are ignored; only desired.microagent counts
toward the size limit."""
import json
import time

from mqttparts import Broker, Hub, alerts, without_time
from test_mqtt_device import KEY, alert, device_code, mqtt_lib, rule  # noqa: F401 (fixture)

DESIRED = "$iothub/twin/PATCH/properties/desired/?$version="
TWIN_RES = "$iothub/twin/res/200/?$rid="
ALLOW = {"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True, "allowlistValues": ["10.0.0.0/8"]}
C2D = "MqttC2DMessagesNotInAllowedRange"

# the device prints its configuration after each twin message (the app's
# callback runs after the watcher), and the file when there is one
WATCHED = r"""
port = int(sys.argv[1])
seen = [0]
def cb(t, m):
    seen[0] += 1
    cfg = a.cfg
    print("STATE", cfg.version, cfg.windows, cfg.allow is not None, cfg.sas_key is not None, cfg.fold_s, len(cfg.threat))
    if PATH:
        print("FILE", open(PATH).read())
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
c.set_callback(cb)
c.connect()
c.subscribe(b"$iothub/twin/PATCH/properties/desired/#")
c.subscribe(b"$iothub/twin/res/#")
print("READY")
N = int(sys.argv[2])
while seen[0] < N:
    c.wait_msg()
drain(c, w)
c.disconnect()
"""

FILE_WATCH = r"""
PATH = "microagent.json"
a.load(PATH)
""" + WATCHED.replace("c.set_callback(cb)\n", "c.set_callback(cb)\nw = a.watch(c, config_path=PATH)\n")


def _run(lib, tmp_path, code, steps):
    """Run device `code`; send each (topic, body) step after the device
    printed its state for the one before. Returns (lines, reported)."""
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port)
        try:
            dev = device_code(lib, code, [b.port, len(steps)], tmp_path)
            dev.wait_line(lambda l: l == "READY")
            for topic, body in steps:
                hub.publish(topic, json.dumps(body))
                dev.wait_line(lambda l: l.startswith("STATE "))
            rc = dev.proc.wait(30)
            dev._t.join(5)
            time.sleep(0.3)   # the last reported patch reaches the hub
            hub.drain()
        finally:
            hub.close()
    assert rc == 0, "\n".join(dev.lines)
    reported = [json.loads(p)["microagent"] for t, p in hub.seen
                if t.startswith("$iothub/twin/PATCH/properties/reported/")]
    return dev.lines, reported


def _patch(version, patch, body_version=None):
    body = dict(patch)
    body["$version"] = version if body_version is None else body_version
    return DESIRED + str(version), body


def _states(lines):
    return [l for l in lines if l.startswith("STATE ")]


def _files(lines):
    return [json.loads(l[5:]) for l in lines if l.startswith("FILE ")]


def _applied(v):
    return {"version": v, "status": "applied", "refusedVersion": None, "error": None}


def test_twin_patches_merge_onto_the_configuration_file(mqtt_lib, tmp_path):
    local = {"deviceId": "dev-01", "timeWindowRules": [rule(C2D, 1)], "threatIntel": {"ips": ["198.51.100.23"]},
             "sas": {"deviceKey": KEY}}
    (tmp_path / "microagent.json").write_text(json.dumps(local))
    rules_v2 = [rule(C2D, 5, "PT1M")]
    d2c = [rule("MqttD2CMessagesNotInAllowedRange", 3)]
    steps = [
        _patch(2, {"microagent": {"timeWindowRules": rules_v2, "allowlistRules": [ALLOW]}, "led": "on"}),
        _patch(3, {"microagent": {"foldWindowSize": "PT5M"}}),           # only that member
        _patch(4, {"microagent": {"allowlistRules": None}}),              # null removes it
        _patch(5, {"microagent": {"timeWindowRules": [rule("Nope", 1)]}}),  # refused: nothing changes
        _patch(6, {"microagent": {"sas": None, "threatIntel": {"ips": None}}}),  # nested null
        # the twin GET's full desired document: its microagent merges too
        (TWIN_RES + "get1", {"desired": {"microagent": {"timeWindowRules": d2c, "foldWindowSize": "PT2M"},
                                         "led": "on", "$version": 7}, "reported": {"$version": 3}}),
    ]
    lines, reported = _run(mqtt_lib, tmp_path, FILE_WATCH, steps)
    assert _states(lines) == [
        "STATE 2 [(1, 0, 5, 60)] True True 60 1",
        "STATE 3 [(1, 0, 5, 60)] True True 300 1",
        "STATE 4 [(1, 0, 5, 60)] False True 300 1",
        "STATE 4 [(1, 0, 5, 60)] False True 300 1",
        "STATE 6 [(1, 0, 5, 60)] False False 300 0",
        "STATE 7 [(2, 0, 3, 10)] False False 120 0"]
    v2 = {"deviceId": "dev-01", "timeWindowRules": rules_v2, "allowlistRules": [ALLOW],
          "threatIntel": {"ips": ["198.51.100.23"]}, "sas": {"deviceKey": KEY}, "$version": 2}
    v3 = dict(v2, foldWindowSize="PT5M", **{"$version": 3})
    v4 = dict(v3, **{"$version": 4})
    del v4["allowlistRules"]
    v6 = dict(v4, threatIntel={}, **{"$version": 6})
    del v6["sas"]
    v7 = dict(v6, timeWindowRules=d2c, foldWindowSize="PT2M", **{"$version": 7})
    assert _files(lines) == [v2, v3, v4, v4, v6, v7]
    assert json.loads((tmp_path / "microagent.json").read_text()) == v7
    refusal = "timeWindowRules[0].ruleType: unknown ruleType 'Nope'"
    assert reported == [_applied(2), _applied(3), _applied(4),
                        {"version": 4, "status": "refused", "refusedVersion": 5, "error": refusal},
                        _applied(6), _applied(7)]
    assert [without_time(x) for x in alerts(lines)] == [
        alert("config_refused", {"resource": "twin", "value": 5, "error": refusal})]


MEMORY_WATCH = r"""
PATH = None
DOC = {"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 1)],
       "sas": {"deviceKey": "%s"}}
a.configure(DOC)
""" % KEY + WATCHED.replace("c.set_callback(cb)\n", "c.set_callback(cb)\nw = a.watch(c, config_doc=DOC)\n") + r"""
import os
print("KEPT", json.dumps(w._doc))
print("FILES", [f for f in os.listdir(".") if f.endswith(".json")])
"""


def test_without_a_file_the_watcher_keeps_the_document(mqtt_lib, tmp_path):
    steps = [_patch(2, {"microagent": {"foldWindowSize": "PT5M"}}),
             _patch(3, {"microagent": {"timeWindowRules": None}})]
    lines, reported = _run(mqtt_lib, tmp_path, MEMORY_WATCH, steps)
    assert _states(lines) == ["STATE 2 [(1, 0, 1, 10)] False True 300 0",
                              "STATE 3 [] False True 300 0"]
    kept = [json.loads(l[5:]) for l in lines if l.startswith("KEPT ")]
    assert kept == [{"deviceId": "dev-01", "sas": {"deviceKey": KEY}, "foldWindowSize": "PT5M", "$version": 3}]
    assert [l for l in lines if l.startswith("FILES ")] == ["FILES []"]
    assert reported == [_applied(2), _applied(3)]


def _r(hi):
    return {"timeWindowRules": [rule(C2D, hi, "PT1M")]}


BIG = {"threatIntel": {"ips": ["10.0.%d.%d" % (i // 256, i % 256) for i in range(400)]}}


def test_versions_in_order_and_only_desired_microagent_is_measured(mqtt_lib, tmp_path):
    (tmp_path / "microagent.json").write_text(json.dumps({"deviceId": "dev-01", "timeWindowRules": []}))
    app_blob = {"appBlob": "x" * 5000, "$version": 9}
    steps = [
        _patch(7, {"microagent": _r(7)}),
        (TWIN_RES + "get1", {"desired": {"microagent": _r(6), "$version": 6}, "reported": {}}),   # older: ignored
        _patch(9, {"microagent": _r(9)}, body_version=3),        # the topic's ?$version= wins
        _patch(8, {"microagent": _r(8)}),                         # older than 9: ignored
        # a twin whose desired part has no microagent: nothing to do, however
        # large the reported part (the device's own) is
        (TWIN_RES + "get2", {"desired": {"telemetry": "5m", "$version": 10}, "reported": app_blob}),
        (TWIN_RES + "get3", {"desired": {"microagent": {"foldWindowSize": "PT3M"}, "$version": 11},
                             "reported": app_blob}),
        _patch(12, {"microagent": BIG}),                          # microagent itself too large
        _patch(13, {"microagent": {"foldWindowSize": "PT4M"}, "pad": "p" * 5000}),  # a large patch, small microagent
    ]
    lines, reported = _run(mqtt_lib, tmp_path, FILE_WATCH, steps)
    w7, w9 = "[(1, 0, 7, 60)]", "[(1, 0, 9, 60)]"
    assert _states(lines) == [
        "STATE 7 %s False False 60 0" % w7, "STATE 7 %s False False 60 0" % w7,
        "STATE 9 %s False False 60 0" % w9, "STATE 9 %s False False 60 0" % w9,
        "STATE 9 %s False False 60 0" % w9, "STATE 11 %s False False 180 0" % w9,
        "STATE 11 %s False False 180 0" % w9, "STATE 13 %s False False 240 0" % w9]
    too_big = "microagent property of %d bytes is larger than this device parses (4096)" % len(json.dumps(BIG))
    assert [l for l in lines if l.startswith("microagent:")] == [
        "microagent: configuration $version 7 applied from the twin",
        "microagent: twin $version 6 is older than the configuration in force (7); ignored",
        "microagent: configuration $version 9 applied from the twin",
        "microagent: twin $version 8 is older than the configuration in force (9); ignored",
        "microagent: configuration $version 11 applied from the twin",
        "microagent: twin configuration refused: " + too_big,
        "microagent: configuration $version 13 applied from the twin"]
    assert reported == [_applied(7), _applied(9), _applied(11),
                        {"version": 11, "status": "refused", "refusedVersion": 12, "error": too_big}, _applied(13)]
    assert [without_time(x) for x in alerts(lines)] == [
        alert("config_refused", {"resource": "twin", "value": 12, "error": too_big})]
    assert json.loads((tmp_path / "microagent.json").read_text()) == {
        "deviceId": "dev-01", "timeWindowRules": _r(9)["timeWindowRules"], "foldWindowSize": "PT4M", "$version": 13}
