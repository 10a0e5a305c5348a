import json

from microagent import secmsg
from microagent.agent import Agent
from mphelp import Lines, ManualClock

BASE = 1796000000  # 2026-11-30T00:53:20Z
RULE = {"ruleType": "TwinUpdatesNotInAllowedRange", "isEnabled": True, "minThreshold": 0,
        "maxThreshold": 0, "timeWindowSize": "PT10S"}


def _agent(**kw):
    clk = ManualClock(BASE)
    out = Lines()
    a = Agent(clk, out)
    a.configure({"deviceId": "dev-01", "timeWindowRules": [RULE]})
    s = secmsg.SecurityMessages(a, **kw)
    a.sinks.append(s)
    return a, clk, out, s


def _uuid_ok(u, version):
    h = "0123456789abcdef"
    parts = u.split("-")
    assert [len(p) for p in parts] == [8, 4, 4, 4, 12], u
    for p in parts:
        for c in p:
            assert c in h, u
    assert parts[2][0] == str(version), u
    assert parts[3][0] in "89ab", u


def test_agent_id_is_uuid5_of_device():
    # CPython: str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:microagent:dev-01"))
    assert secmsg.agent_id("dev-01") == "14c983a7-4e5d-555a-b88f-d4b8e5302411"
    _uuid_ok(secmsg.agent_id("x"), 5)
    _uuid_ok(secmsg.event_id(), 4)
    assert secmsg.event_id() != secmsg.event_id()


def test_topic_and_properties():
    assert secmsg.topic("dev-01") == ("devices/dev-01/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8"
                                      "&%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1")
    assert secmsg.timestamp(BASE) == "2026-11-30 00:53:20Z"


def test_message_shape_carries_the_console_line():
    a, clk, out, s = _agent()
    a.report("config_refused", (("resource", "twin"), ("value", 3), ("error", "bad")), "k")
    assert len(s) == 1
    topic, payload = s.next_message()
    assert topic == secmsg.topic("dev-01")
    doc = json.loads(payload)
    assert doc["AgentVersion"] == "0.1.0"
    assert doc["AgentId"] == "14c983a7-4e5d-555a-b88f-d4b8e5302411"
    assert doc["MessageSchemaVersion"] == "1.0"
    assert len(doc["Events"]) == 1
    ev = doc["Events"][0]
    _uuid_ok(ev.pop("Id"), 4)
    assert ev == {"EventType": "Security", "Category": "Triggered", "Name": "config_refused", "IsEmpty": False,
                  "PayloadSchemaVersion": "1.0", "TimestampLocal": "2026-11-30 00:53:20Z",
                  "TimestampUTC": "2026-11-30 00:53:20Z", "Payload": out.alerts()}
    assert out.alerts()[0]["details"] == {"resource": "twin", "value": 3, "error": "bad"}
    s.done()
    assert len(s) == 0 and s.sent == 1 and s.messages == 1
    assert s.next_message() is None


def test_nothing_lost_until_done():
    a, clk, out, s = _agent()
    a.report("config_refused", (("error", "one"),), 1)
    m1 = s.next_message()
    m2 = s.next_message()   # the publish failed: the same finding again
    assert json.loads(m1[1])["Events"][0]["Payload"] == json.loads(m2[1])["Events"][0]["Payload"]
    assert len(s) == 1
    s.done()
    assert len(s) == 0


def test_queue_bound_drops_oldest_and_counts():
    a, clk, out, s = _agent(size=3, batch=8)
    for i in range(5):
        clk.advance(1)
        a.report("config_refused", (("error", "e%d" % i),), i)
    assert len(s) == 3 and s.dropped == 2
    doc = json.loads(s.next_message()[1])
    assert [e["Payload"][0]["details"]["error"] for e in doc["Events"][:3]] == ["e2", "e3", "e4"]
    diag = doc["Events"][3]
    _uuid_ok(diag.pop("Id"), 4)
    assert diag == {"EventType": "Diagnostic", "Category": "Triggered", "Name": "SecurityMessagesDropped",
                    "IsEmpty": False, "PayloadSchemaVersion": "1.0", "TimestampLocal": "2026-11-30 00:53:25Z",
                    "TimestampUTC": "2026-11-30 00:53:25Z",
                    "Payload": [{"Message": "2 findings dropped: the security-message queue was full",
                                 "Severity": "Warning", "Count": 2}]}
    s.done()
    assert len(s) == 0 and s.next_message() is None and s.dropped == 2 and s.sent == 3


def test_batch_and_size_limits():
    a, clk, out, s = _agent(size=8, batch=4, max_bytes=8192)
    for i in range(6):
        a.report("config_refused", (("error", "e%d" % i),), i)
    n = []
    while True:
        m = s.next_message()
        if m is None:
            break
        n.append(len(json.loads(m[1])["Events"]))
        s.done()
    assert n == [4, 2]
    a, clk, out, s = _agent(size=8, batch=8, max_bytes=100)
    for i in range(3):
        a.report("config_refused", (("error", "e%d" % i),), i)
    n = []
    while len(s):
        n.append(len(json.loads(s.next_message()[1])["Events"]))
        s.done()
    assert n == [1, 1, 1]   # one finding always fits, a second would pass max_bytes
