from microagent import config
from microagent.agent import Agent
from mphelp import Lines, ManualClock

BASE = 1796000000  # 2026-11-30T00:53:20Z


def _agent(doc, ticks=0):
    clk = ManualClock(BASE, ticks)
    out = Lines()
    a = Agent(clk, out)
    d = {"deviceId": "dev-01"}
    for k in doc:
        d[k] = doc[k]
    a.configure(d)
    return a, clk, out


def _rule(rt, lo, hi, size):
    return {"ruleType": rt, "isEnabled": True, "minThreshold": lo, "maxThreshold": hi, "timeWindowSize": size}


def test_counter_window_and_threshold_inclusive():
    a, clk, out = _agent({"timeWindowRules": [_rule("MqttC2DMessagesNotInAllowedRange", 1, 3, "PT30S")]})
    for i in range(3):
        clk.advance(1)
        a.count(config.C2D)          # 3 == max: inside the range
    clk.advance(27)
    a.poll()
    assert out.brief() == []
    for i in range(4):
        a.count(config.C2D)
    clk.advance(30)
    a.poll()
    clk.advance(30)                   # an empty window: 0 < min
    a.poll()
    assert out.brief() == [
        ("MqttC2DMessagesNotInAllowedRange", 1, {"value": 4, "min": 1, "max": 3, "window_s": 30}),
        ("MqttC2DMessagesNotInAllowedRange", 1, {"value": 0, "min": 1, "max": 3, "window_s": 30})]
    assert out.alerts()[0]["time"] == "2026-11-30T00:54:20Z"


def test_active_connections_peak_per_window():
    a, clk, out = _agent({"timeWindowRules": [_rule("ActiveConnectionsNotInAllowedRange", 0, 2, "PT10S")]})
    for i in range(3):
        a.connection_opened("10.0.0.%d" % (i + 1), 443)
    for i in range(3):
        a.connection_closed()
    clk.advance(10)
    a.poll()
    a.connection_opened("10.0.0.9", 443)
    clk.advance(10)
    a.poll()
    assert out.brief() == [("ActiveConnectionsNotInAllowedRange", 1, {"value": 3, "min": 0, "max": 2, "window_s": 10})]
    assert a.open_connections == 1


def test_windows_survive_ticks_wraparound():
    import time
    if hasattr(time, "ticks_add"):
        start = time.ticks_add(0, -5000)   # 5 s before the wrap
    else:
        start = (1 << 30) - 5000
    a, clk, out = _agent({"timeWindowRules": [_rule("TwinUpdatesNotInAllowedRange", 0, 0, "PT10S")]}, start)
    clk.advance(3)
    a.count(config.TWIN)
    clk.advance(3)           # ticks wrapped here
    a.poll()
    assert out.brief() == []
    clk.advance(4)
    a.poll()
    assert out.brief() == [("TwinUpdatesNotInAllowedRange", 1, {"value": 1, "min": 0, "max": 0, "window_s": 10})]


def test_slept_through_windows_fold_into_one_line():
    a, clk, out = _agent({"timeWindowRules": [_rule("MqttD2CMessagesNotInAllowedRange", 1, 10, "PT10S")]})
    a.count(config.D2C)
    clk.advance(55)
    a.poll()
    assert out.brief() == [("MqttD2CMessagesNotInAllowedRange", 4, {"value": 0, "min": 1, "max": 10, "window_s": 10})]
    clk.advance(5)
    a.poll()
    assert len(out.brief()) == 2


def test_allowlist_and_threat_intel():
    a, clk, out = _agent({
        "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                            "allowlistValues": ["10.0.0.0/8", "2001:db8::/32"]}],
        "threatIntel": {"ips": ["10.66.0.0/16"]}})
    a.connection_opened("10.1.2.3", 443)
    a.connection_opened("::ffff:10.1.2.3", 443)
    a.connection_opened("2001:db8::5", 443)
    a.connection_opened("11.0.0.1", 80)
    a.connection_opened("2001:db9::1", 8883)
    a.connection_opened("10.66.1.1", 8883)
    a.connection_opened("10.66.1.2", 5000, True)
    a.connection_opened("11.0.0.2", 5000, True)   # inbound: allow list is for outbound only
    assert out.brief() == [
        ("ConnectionToIpNotAllowed", 1, {"remote": "11.0.0.1", "port": 80, "direction": "out"}),
        ("ConnectionToIpNotAllowed", 1, {"remote": "2001:db9::1", "port": 8883, "direction": "out"}),
        ("suspicious_ip", 1, {"remote": "10.66.1.1", "port": 8883, "direction": "out"}),
        ("suspicious_ip", 1, {"remote": "10.66.1.2", "port": 5000, "direction": "in"})]
    assert a.open_connections == 8


def test_repeats_fold_into_one_line_with_count():
    a, clk, out = _agent({"threatIntel": {"ips": ["203.0.113.0/24"]}, "foldWindowSize": "PT1M"})
    for i in range(5):
        a.connection_opened("203.0.113.7", 443)
        a.connection_closed()
        clk.advance(1)
    a.connection_opened("203.0.113.8", 443)
    assert len(out.brief()) == 2
    clk.advance(60)
    a.poll()
    assert out.brief() == [
        ("suspicious_ip", 1, {"remote": "203.0.113.7", "port": 443, "direction": "out"}),
        ("suspicious_ip", 1, {"remote": "203.0.113.8", "port": 443, "direction": "out"}),
        ("suspicious_ip", 4, {"remote": "203.0.113.7", "port": 443, "direction": "out"})]
    a.connection_opened("203.0.113.7", 443)       # a new fold window: shown at once
    assert out.brief()[-1] == ("suspicious_ip", 1, {"remote": "203.0.113.7", "port": 443, "direction": "out"})


def test_console_line_exact():
    a, clk, out = _agent({"threatIntel": {"ips": ["203.0.113.0/24"]}})
    clk.advance(5)
    a.connection_opened("203.0.113.7", 443)
    assert out.lines[-1] == 'ALERT {"type":"suspicious_ip","name":"Communication with a suspicious IP address detected","kind":"alert","source":"device","severity":"high","device":"dev-01","time":"2026-11-30T00:53:25Z","count":1,"details":{"remote":"203.0.113.7","port":443,"direction":"out"}}'


def test_bad_config_keeps_last_good():
    a, clk, out = _agent({"threatIntel": {"ips": ["203.0.113.0/24"]}})
    try:
        a.configure({"deviceId": "dev-01", "threatIntel": {"ips": ["203.0.113.0/33"]}})
        assert False, "accepted a bad config"
    except config.ConfigError as e:
        assert str(e) == "threatIntel.ips[0]: prefix length above 32 (got '203.0.113.0/33')"
    a.connection_opened("203.0.113.9", 443)
    assert out.brief() == [("suspicious_ip", 1, {"remote": "203.0.113.9", "port": 443, "direction": "out"})]


def test_internal_fault_is_one_finding_not_an_exception():
    a, clk, out = _agent({})
    a.connection_opened("10.1", 443)           # malformed address from a collector
    a.connection_opened(object(), 443)
    a.count(99)
    b = out.brief()
    assert [x[0] for x in b] == ["agent_error", "agent_error"]
    assert b[0][2]["operation"] == "connection_opened"
    assert b[0][2]["error"] == "ValueError: IPv4 address needs four decimal parts"
    assert b[1] == ("agent_error", 1, {"operation": "count", "error": "IndexError: list index out of range"})
    clk.advance(60)
    a.poll()
    assert out.brief()[-1][:2] == ("agent_error", 1)   # the folded repeat


def test_clock_not_set_once_then_verdicts():
    clk = ManualClock(946684800 + 3600)   # an ESP32 RTC after power-up: 2000-01-01
    out = Lines()
    a = Agent(clk, out)
    a.configure({"deviceId": "dev-01"})
    assert a.utc_if_set() is None
    assert a.utc_if_set() is None
    assert out.brief() == [("clock_not_set", 1, {"value": "2000-01-01T01:00:00Z", "min": "2024-01-01T00:00:00Z"})]
    assert out.alerts()[0]["kind"] == "recommendation"
    assert out.lines[-1].startswith("RECOMMENDATION {")
    clk.utc0 = BASE
    assert a.utc_if_set() == BASE


def test_package_api_does_not_shadow_the_agent_module():
    import microagent
    from microagent import agent as agent_module
    a = microagent.start({"deviceId": "dev-01"}, out=Lines())
    assert microagent.current() is a
    assert agent_module.Agent is Agent
    assert isinstance(a, agent_module.Agent)


def test_start_never_raises_on_bad_config():
    import microagent
    out = Lines()
    a = microagent.start({"deviceId": ""}, out=out)
    assert a.cfg is None
    assert out.lines == ["microagent: config error: deviceId: must be a non-empty string of at most 128 characters"]
    out2 = Lines()
    b = microagent.start("/nonexistent/microagent.json", out=out2)
    assert b.cfg is None and out2.lines[0].startswith("microagent: config error: ")


def test_mqtt_events_never_raise():
    a, clk, out = _agent({})
    a.mqtt_suback(None)
    a.mqtt_suback(1.5)
    assert a.mqtt_message(None) == -2 and a.mqtt_publish(5) == -2
    a.mqtt_connect(None, None, 12)          # not a token: ignored
    # both suback faults are one finding (folded by operation)
    assert out.brief() == [("agent_error", 1, {"operation": "mqtt_suback",
                                               "error": "TypeError: 'NoneType' object isn't iterable"})] or \
        out.brief() == [("agent_error", 1, {"operation": "mqtt_suback",
                                            "error": "TypeError: 'NoneType' object is not iterable"})]


def test_console_line_same_bytes_on_both_interpreters_for_non_ascii():
    from microagent import alerts
    line = alerts.format_line("agent_error", "capteur-é\n\"x\"", 0, 1, (("operation", "ü"), ("error", "\u2603")))
    assert line == 'ALERT {"type":"agent_error","name":"Security agent internal error","kind":"alert",' \
        '"source":"device","severity":"low","device":"capteur-é\\n\\"x\\"","time":"1970-01-01T00:00:00Z",' \
        '"count":1,"details":{"operation":"ü","error":"\u2603"}}'
