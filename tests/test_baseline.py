"""`microagent baseline suggest`: thresholds from per-window values of
scenarios and console logs, an allow list from the destinations, exact
output; the suggested config replayed through the agent on the unix port
over the same scenario raises only the outlier window."""
import json

import pytest

from host_tools import cli
from host_tools.cmd_baseline import iso_duration, percentile

C2D = "devices/dev-01/messages/devicebound/%24.mid=1"
D2C = "devices/dev-01/messages/events/"


def _observation(tmp_path, name="obs.jsonl"):
    # 200 one-minute windows (end: 12000 s): C2D per window 150x 4, 48x 6,
    # 1x 7, 1x 50 (the outlier in window 120); one D2C message a minute;
    # six connections that stay open
    values = [4] * 120 + [50] + [4] * 30 + [6] * 48 + [7]
    ev = []
    for w, v in enumerate(values):
        for i in range(v):
            ev.append({"t": w * 60 + 1 + i * 0.01, "event": "mqtt_message", "topic": C2D, "bytes": 8})
        ev.append({"t": w * 60 + 30, "event": "mqtt_publish", "topic": D2C, "bytes": 40})
    conns = [(2.0, "20.1.2.3"), (2.1, "20.1.2.3"), (2.2, "20.1.2.200"), (2.3, "20.1.3.4"), (2.4, "2001:db8::1"),
             (2.5, "::ffff:10.0.0.1")]
    cev = []
    for i, (t, r) in enumerate(conns):
        cev.append({"t": t, "event": "connect", "id": i, "remote": r, "port": 8883})
    cev.insert(1, {"t": 2.05, "event": "close", "id": 0})
    cev.append({"t": 2.6, "event": "accept", "id": 99, "remote": "198.51.100.1", "port": 5000})
    ev = sorted(ev + cev, key=lambda e: e["t"])
    header = {"scenario": "obs", "device": "dev-01", "start": "2026-06-01T00:00:00Z", "end": 12000, "config": {
        "deviceId": "dev-01", "timeWindowRules": [{"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True,
                                                   "minThreshold": 0, "maxThreshold": 1000,
                                                   "timeWindowSize": "PT1M"}]}}
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(x) for x in [header] + ev) + "\n")
    return p


EXPECTED_RULES = [
    {"ruleType": "ActiveConnectionsNotInAllowedRange", "isEnabled": True, "minThreshold": 4, "maxThreshold": 8,
     "timeWindowSize": "PT15M"},
    {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 3, "maxThreshold": 8,
     "timeWindowSize": "PT1M"},
    {"ruleType": "MqttD2CMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 12, "maxThreshold": 18,
     "timeWindowSize": "PT15M"},
    {"ruleType": "DirectMethodInvokesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 0,
     "timeWindowSize": "PT15M"},
    {"ruleType": "MqttC2DRejectedMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 0,
     "maxThreshold": 0, "timeWindowSize": "PT15M"},
    {"ruleType": "TwinUpdatesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 0,
     "timeWindowSize": "PT15M"},
    {"ruleType": "UnauthorizedOperationsNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 0,
     "timeWindowSize": "PT15M"}]


def test_suggest_from_a_scenario_exact(tmp_path, capsys):
    p = _observation(tmp_path)
    assert cli.main(["baseline", "suggest", str(p)]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc == {"deviceId": "dev-01", "timeWindowRules": EXPECTED_RULES, "allowlistRules": [
        {"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
         "allowlistValues": ["10.0.0.0/24", "20.1.2.0/23", "2001:db8::/64"]}]}
    assert cap.out == json.dumps(doc, indent=2) + "\n"
    # 200 minutes = 13 whole PT15M windows (the 14th is still open at the end)
    assert cap.err.splitlines() == [
        "# ActiveConnectionsNotInAllowedRange.maxThreshold 8: the 99th percentile of 13 PT15M windows is 6 "
        "(highest 6), plus 20%, rounded up",
        "# ActiveConnectionsNotInAllowedRange.minThreshold 4: the 1st percentile is 6 (lowest 6), minus 20%, "
        "rounded down",
        "# ActiveConnectionsNotInAllowedRange.timeWindowSize PT15M: --window (default PT15M)",
        "# MqttC2DMessagesNotInAllowedRange.maxThreshold 8: the 99th percentile of 200 PT1M windows is 6 "
        "(highest 50), plus 20%, rounded up",
        "# MqttC2DMessagesNotInAllowedRange.minThreshold 3: the 1st percentile is 4 (lowest 4), minus 20%, "
        "rounded down",
        "# MqttC2DMessagesNotInAllowedRange.timeWindowSize PT1M: from %s's config" % p,
        "# MqttD2CMessagesNotInAllowedRange.maxThreshold 18: the 99th percentile of 13 PT15M windows is 15 "
        "(highest 15), plus 20%, rounded up",
        "# MqttD2CMessagesNotInAllowedRange.minThreshold 12: the 1st percentile is 15 (lowest 15), minus 20%, "
        "rounded down",
        "# MqttD2CMessagesNotInAllowedRange.timeWindowSize PT15M: --window (default PT15M)",
    ] + sum([[
        "# %s.maxThreshold 0: the 99th percentile of 13 PT15M windows is 0 (highest 0), plus 20%%, rounded up" % rt,
        "# %s.minThreshold 0: the 1st percentile is 0 (lowest 0), minus 20%%, rounded down" % rt,
        "# %s.timeWindowSize PT15M: --window (default PT15M)" % rt]
        for rt in ("DirectMethodInvokesNotInAllowedRange", "MqttC2DRejectedMessagesNotInAllowedRange",
                   "TwinUpdatesNotInAllowedRange", "UnauthorizedOperationsNotInAllowedRange")], []) + [
        "# allowlistValues 10.0.0.0/24: 1 connection to 10.0.0.1",
        "# allowlistValues 20.1.2.0/23: 4 connections to 20.1.2.3, 20.1.2.200, 20.1.3.4",
        "# allowlistValues 2001:db8::/64: 1 connection to 2001:db8::1",
        "# allowlistValues: each destination widened to /24 (IPv4) or /64 (IPv6), then collapsed"]


def test_suggested_config_replayed_flags_only_the_outlier(tmp_path, mp_lib, capsys):
    # the host's window model and the agent's windows must agree: with the
    # suggested baseline, the same day raises exactly the 50-message window
    p = _observation(tmp_path)
    assert cli.main(["baseline", "suggest", str(p)]) == 0
    doc = json.loads(capsys.readouterr().out)
    lines = p.read_text().splitlines()
    header = json.loads(lines[0])
    header["config"] = doc
    header["expect"] = [{"type": "MqttC2DMessagesNotInAllowedRange", "time": "2026-06-01T02:01:00Z",
                         "details": {"value": 50, "min": 3, "max": 8, "window_s": 60}, "times": 1}]
    header["exact"] = True
    q = tmp_path / "check.jsonl"
    q.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    rc = cli.main(["replay", "--check", str(q)])
    out = capsys.readouterr().out
    assert rc == 0, out


def test_margin_and_prefix_options(tmp_path, capsys):
    p = _observation(tmp_path)
    assert cli.main(["baseline", "suggest", str(p), "--margin", "0", "--prefix4", "32", "--prefix6", "128",
                     "--window", "PT1H"]) == 0
    doc = json.loads(capsys.readouterr().out)
    c2d = doc["timeWindowRules"][1]
    assert (c2d["minThreshold"], c2d["maxThreshold"], c2d["timeWindowSize"]) == (4, 6, "PT1M")
    d2c = doc["timeWindowRules"][2]
    # 200 minutes: 3 whole hours of 60 messages
    assert (d2c["minThreshold"], d2c["maxThreshold"], d2c["timeWindowSize"]) == (60, 60, "PT1H")
    assert doc["allowlistRules"][0]["allowlistValues"] == ["10.0.0.1", "20.1.2.3", "20.1.2.200", "20.1.3.4",
                                                           "2001:db8::1"]


def test_reboot_cuts_windows_as_the_agent_does(tmp_path, capsys):
    # PT10S windows: [0,10) holds 3; a reboot at 15 drops [10,20)'s 2
    # messages (never evaluated); the windows restart at 15: [15,25) holds 1
    # (end 25: that window is whole)
    ev = [{"t": t, "event": "mqtt_message", "topic": C2D} for t in (1, 2, 3, 11, 12)]
    ev += [{"t": 15, "event": "reboot"}, {"t": 16, "event": "mqtt_message", "topic": C2D}]
    header = {"scenario": "r", "device": "dev-01", "start": "2026-06-01T00:00:00Z", "end": 25, "config": {
        "deviceId": "dev-01", "timeWindowRules": [{"ruleType": "MqttC2DMessagesNotInAllowedRange",
                                                   "isEnabled": True, "minThreshold": 0, "maxThreshold": 9,
                                                   "timeWindowSize": "PT10S"}]}}
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in [header] + ev) + "\n")
    assert cli.main(["baseline", "suggest", str(p), "--margin", "0"]) == 0
    err = capsys.readouterr().err
    assert ("# MqttC2DMessagesNotInAllowedRange.maxThreshold 3: the 99th percentile of 2 PT10S windows is 3 "
            "(highest 3), plus 0%, rounded up") in err.splitlines()
    assert "# MqttC2DMessagesNotInAllowedRange.minThreshold 1: the 1st percentile is 1 (lowest 1), minus 0%, " \
           "rounded down" in err.splitlines()


def test_suggest_from_a_console_log(tmp_path, capsys):
    def line(t, value, count=1, mx=5):
        return ('ALERT {"type":"%s","name":"x","kind":"alert","source":"device","severity":"low","device":"dev-01",'
                '"time":"2026-06-01T00:01:00Z","count":%d,"details":{"value":%d,"min":0,"max":%d,"window_s":300}}'
                % (t, count, value, mx))
    log = tmp_path / "console.log"
    log.write_text("\n".join([
        "microagent: watching /proc/net for device dev-01 (1 window rules, poll 1s)",
        line("MqttC2DMessagesNotInAllowedRange", 9),
        line("MqttC2DMessagesNotInAllowedRange", 7, count=2),
        "app: c2d: hello",
        line("UnauthorizedOperationsNotInAllowedRange", 1, mx=0),
        'ALERT {"type":"ConnectionToIpNotAllowed","name":"x","kind":"alert","source":"device","severity":"low",'
        '"device":"dev-01","time":"2026-06-01T00:00:05Z","count":1,"details":{"remote":"11.0.0.1","port":443,'
        '"direction":"out"}}',
        'ALERT {"type":"ConnectionToIpNotAllowed","name":"x","kind":"alert","source":"device","severity":"low",'
        '"device":"dev-01","time":"2026-06-01T00:01:05Z","count":3,"details":{"remote":"11.0.0.1","port":443,'
        '"direction":"out"}}',
    ]) + "\n")
    assert cli.main(["baseline", "suggest", str(log)]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"deviceId": "dev-01", "timeWindowRules": [
        {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 11,
         "timeWindowSize": "PT5M"},
        {"ruleType": "UnauthorizedOperationsNotInAllowedRange", "isEnabled": True, "minThreshold": 0,
         "maxThreshold": 2, "timeWindowSize": "PT5M"}],
        "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                            "allowlistValues": ["11.0.0.0/24"]}]}
    assert cap.err.splitlines() == [
        "# MqttC2DMessagesNotInAllowedRange.maxThreshold 11: the 99th percentile of 3 PT5M windows is 9 "
        "(highest 9), plus 20%, rounded up",
        "# MqttC2DMessagesNotInAllowedRange.minThreshold 0: a log holds only the windows outside the old range",
        "# MqttC2DMessagesNotInAllowedRange.timeWindowSize PT5M: window_s of %s's alerts" % log,
        "# UnauthorizedOperationsNotInAllowedRange.maxThreshold 2: the 99th percentile of 1 PT5M windows is 1 "
        "(highest 1), plus 20%, rounded up",
        "# UnauthorizedOperationsNotInAllowedRange.minThreshold 0: a log holds only the windows outside the old "
        "range",
        "# UnauthorizedOperationsNotInAllowedRange.timeWindowSize PT5M: window_s of %s's alerts" % log,
        "# allowlistValues 11.0.0.0/24: 4 connections to 11.0.0.1",
        "# allowlistValues: each destination widened to /24 (IPv4) or /64 (IPv6), then collapsed",
        "# allowlistValues: a log names only the destinations that were not allowed; add the values of the list "
        "the device had"]


def test_logged_max_above_the_values_is_kept(tmp_path, capsys):
    log = tmp_path / "c.log"
    log.write_text('ALERT {"type":"TwinUpdatesNotInAllowedRange","device":"d","count":1,'
                   '"details":{"value":0,"min":1,"max":10,"window_s":3600}}\n')
    assert cli.main(["baseline", "suggest", str(log), "--margin", "50"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["timeWindowRules"] == [
        {"ruleType": "TwinUpdatesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 15,
         "timeWindowSize": "PT1H"}]
    assert cap.err.splitlines()[0] == (
        "# TwinUpdatesNotInAllowedRange.maxThreshold 15: the logged rule's maxThreshold (above the 99th "
        "percentile 0 of 1 alerting windows) is 10 (highest 0), plus 50%, rounded up")


def test_unreadable_inputs(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"scenario": "x", "start": "2026-06-01T00:00:00Z"}\n{"t": 1, "event": "nope"}\n')
    assert cli.main(["baseline", "suggest", str(bad)]) == 2
    assert capsys.readouterr().err == ('microagent baseline: %s:2: unknown event "nope" (known: connect, accept, '
                                       'close, mqtt_connect, mqtt_connack, mqtt_suback, mqtt_publish, mqtt_message, '
                                       'c2d_reject, file, clock, reboot)\n' % bad)
    log = tmp_path / "c.log"
    log.write_text("hello\nALERT {broken\n")
    assert cli.main(["baseline", "suggest", str(log)]) == 2
    assert capsys.readouterr().err == ("microagent baseline: %s:2: not an agent console line (bad JSON after "
                                       "ALERT)\n" % log)
    assert cli.main(["baseline", "suggest", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == "microagent baseline: %s: cannot read (No such file or directory)\n" % (
        tmp_path / "none")
    assert cli.main(["baseline", "suggest", str(log), "--window", "P1M"]) == 2
    assert capsys.readouterr().err == ("microagent baseline: --window P1M: years and months are not fixed lengths; "
                                       "use days\n")


def test_percentile_and_durations():
    h = {4: 150, 6: 48, 7: 1, 50: 1}
    assert [percentile(h, p) for p in (1, 50, 75, 76, 99, 99.5, 100)] == [4, 4, 4, 6, 6, 7, 50]
    assert [iso_duration(s) for s in (30, 60, 900, 3600, 5400, 86400)] == [
        "PT30S", "PT1M", "PT15M", "PT1H", "PT90M", "PT24H"]


# ---- malformed input: one line naming file and line, never a traceback or an empty config
def _alert(details, **more):
    d = {"type": "MqttC2DMessagesNotInAllowedRange", "device": "dev-01", "count": 1, "details": details}
    d.update(more)
    return "ALERT " + json.dumps(d)


W = {"value": 5, "min": 0, "max": 3, "window_s": 60}


@pytest.mark.parametrize("lines,where,why", [
    ([_alert("oops")], 1, 'details "oops" is not an object'),
    ([_alert(W, device=123)], 1, "device 123 is not a device id"),
    ([_alert(W, device="")], 1, 'device "" is not a device id'),
    (["x", _alert(W, count=-5)], 2, "count -5 is not a whole number >= 1"),
    ([_alert(W, count=True)], 1, "count true is not a whole number >= 1"),
    ([_alert(dict(W, value=True))], 1, "details.value true is not a whole number 0..2147483647"),
    ([_alert(dict(W, value=-1))], 1, "details.value -1 is not a whole number 0..2147483647"),
    ([_alert({"min": 0, "max": 3, "window_s": 60})], 1, "details.value null is not a whole number 0..2147483647"),
    ([_alert(dict(W, max=3 * 10 ** 21))], 1, "details.max 3000000000000000000000 is not a whole number 0..2147483647"),
    ([_alert(W), _alert(dict(W, window_s=99999999))], 2,
     "details.window_s 99999999 is not a whole number of seconds 1..2592000 (P30D)"),
    ([_alert(dict(W, window_s=0))], 1, "details.window_s 0 is not a whole number of seconds 1..2592000 (P30D)"),
    (['ALERT {"type":"ConnectionToIpNotAllowed","device":"d","details":{"remote":"fe80::1%eth0","port":1}}'], 1,
     'details.remote "fe80::1%eth0" is not an IP address'),
    (['ALERT {"type":"ConnectionToIpNotAllowed","device":"d","details":{"port":1}}'], 1,
     "details.remote null is not an IP address"),
    (['ALERT ["MqttC2DMessagesNotInAllowedRange"]'], 1, "not an object with a type"),
])
def test_malformed_console_logs(tmp_path, capsys, lines, where, why):
    log = tmp_path / "c.log"
    log.write_text("\n".join(lines) + "\n")
    assert cli.main(["baseline", "suggest", str(log)]) == 2
    cap = capsys.readouterr()
    assert (cap.out, cap.err) == ("", "microagent baseline: %s:%d: not an agent console line (%s)\n" % (log, where, why))


def test_files_with_nothing_to_suggest_from(tmp_path, capsys):
    empty = tmp_path / "empty.log"
    empty.write_text("")
    junk = tmp_path / "junk.log"
    junk.write_bytes(bytes(range(256)) * 4)
    text = tmp_path / "notes.txt"
    text.write_text("hello\nworld\n")
    quiet = tmp_path / "quiet.log"
    quiet.write_text("microagent: watching /proc/net for device dev-01 (0 window rules, poll 1s)\n")
    short = tmp_path / "short.jsonl"   # a scenario with no whole window and no connection
    short.write_text(json.dumps({"scenario": "s", "device": "dev-01", "start": "2026-06-01T00:00:00Z"}) + "\n"
                     + json.dumps({"t": 1, "event": "c2d_reject"}) + "\n")
    null = tmp_path / "null.jsonl"
    null.write_text("null\n")
    for f, err in [
        (empty, "%s: empty file: nothing to suggest from" % empty),
        (junk, "%s:2: not UTF-8 text (not an agent console log)" % junk),   # line 1 is bytes 0..10
        (text, "%s: no agent console line (ALERT, RECOMMENDATION, microagent:) and not a scenario: nothing to "
               "suggest from" % text),
        (quiet, "nothing to suggest: no whole time window and no outbound connection in %s" % quiet),
        (short, "nothing to suggest: no whole time window and no outbound connection in %s" % short),
        (null, "%s:1: header must be an object (got null)" % null),
    ]:
        assert cli.main(["baseline", "suggest", str(f)]) == 2, f
        cap = capsys.readouterr()
        assert (cap.out, cap.err) == ("", "microagent baseline: %s\n" % err)
    assert cli.main(["baseline", "suggest", str(quiet), "--window", "PT0S"]) == 2
    assert capsys.readouterr().err == "microagent baseline: --window PT0S: must be longer than zero and at most P30D\n"
    assert cli.main(["baseline", "suggest", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "microagent baseline: %s: cannot read (Is a directory)\n" % tmp_path


def test_any_alert_line_gives_a_config_or_one_error_line(tmp_path, capsys):
    # random ALERT lines (every field of any JSON type): status 0 with a
    # config the firmware's config.parse takes, or 2 with one line
    from hypothesis import HealthCheck, given, settings, strategies as st
    from host_tools.scenario import fw
    config = fw()[0]
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 25), st.floats(), st.text(max_size=6),
                     st.sampled_from(["10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "fe80::1%eth0", "dev-01"]))
    value = st.recursive(leaf, lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=3), c, max_size=2),
                         max_leaves=4)
    details = st.dictionaries(st.sampled_from(["value", "min", "max", "window_s", "remote", "port"]), value, max_size=5)
    alert = st.fixed_dictionaries(
        {"type": st.sampled_from(["MqttC2DMessagesNotInAllowedRange", "TwinUpdatesNotInAllowedRange",
                                  "ConnectionToIpNotAllowed", "agent_error", "nope"])},
        optional={"device": value, "count": value, "details": st.one_of(details, value)})

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(alert, min_size=1, max_size=3))
    def check(alerts):
        log = tmp_path / "c.log"
        log.write_text("".join("ALERT %s\n" % json.dumps(a) for a in alerts))
        rc = cli.main(["baseline", "suggest", str(log)])
        cap = capsys.readouterr()
        assert rc in (0, 2)
        if rc == 0:
            config.parse(json.loads(cap.out))
        else:
            assert cap.out == "" and cap.err.count("\n") == 1 and cap.err.startswith("microagent baseline: ")
    check()


def test_threats_are_never_proposed_for_the_allow_list(tmp_path, capsys):
    # regression: a destination the agent reported as suspicious (or that a
    # scenario's threat-intel list names) was widened into the allow list
    def alert(t, remote, count=1):
        return ('ALERT {"type":"%s","name":"x","kind":"alert","source":"device","severity":"high",'
                '"device":"dev-01","time":"2026-06-01T00:00:05Z","count":%d,"details":{"remote":"%s","port":443,'
                '"direction":"out"}}' % (t, count, remote))
    log = tmp_path / "console.log"
    log.write_text("\n".join([alert("suspicious_ip", "203.0.113.80"),
                              alert("ConnectionToIpNotAllowed", "203.0.113.80"),
                              alert("ConnectionToIpNotAllowed", "203.0.113.5", 2),
                              alert("ConnectionToIpNotAllowed", "11.0.0.1")]) + "\n")
    assert cli.main(["baseline", "suggest", str(log)]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["allowlistRules"][0]["allowlistValues"] == ["11.0.0.0/24", "203.0.113.5"]
    assert "# allowlistValues: 203.0.113.80 left out: it is on the threat-intel list or was reported as a " \
           "suspicious IP" in cap.err.splitlines()
    sc = tmp_path / "s.jsonl"
    sc.write_text("\n".join(json.dumps(x) for x in [
        {"scenario": "s", "device": "dev-01", "start": "2026-06-01T00:00:00Z",
         "config": {"deviceId": "dev-01", "threatIntel": {"ips": ["198.51.100.0/24"]}}},
        {"t": 1, "event": "connect", "id": 1, "remote": "198.51.100.9", "port": 443},
        {"t": 2, "event": "connect", "id": 2, "remote": "20.1.2.3", "port": 443}]) + "\n")
    assert cli.main(["baseline", "suggest", str(sc)]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["allowlistRules"][0]["allowlistValues"] == ["20.1.2.0/24"]
