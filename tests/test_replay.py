"""`microagent replay`: the worked examples, exit codes 0/1/2 and the diff
text, unreadable files named by file and line, MemoryError under a small
heap, the virtual clock (window ends, `end`, clock events, reboot), the
device filesystem, --json, determinism and the progress bar. Every replay
runs the real agent on the unix port."""
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import cli

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "scenarios"
CORPUS = REPO / "tests" / "scenarios"
START = "2026-06-01T12:00:00Z"
C2D = "devices/dev-01/messages/devicebound/"


def scn(tmp_path, header, events=(), name="s.jsonl", raw=None):
    """Write a scenario file; `raw` replaces the event lines verbatim."""
    h = {"scenario": "t", "device": "dev-01", "start": START, "config": {"deviceId": "dev-01"}}
    h.update(header)
    p = tmp_path / name
    lines = [json.dumps(h)] + ([json.dumps(e) for e in events] if raw is None else raw)
    p.write_text("\n".join(lines) + "\n")
    return p


def replay(capsys, *args):
    rc = cli.main(["replay"] + [str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def rule(rt, lo, hi, size):
    return {"ruleType": rt, "isEnabled": True, "minThreshold": lo, "maxThreshold": hi, "timeWindowSize": size}


def findings(out):
    """(type, time, count, details) of the ALERT/RECOMMENDATION lines."""
    res = []
    for line in out.splitlines():
        if line.startswith(("ALERT ", "RECOMMENDATION ")):
            d = json.loads(line.split(" ", 1)[1])
            res.append((d["type"], d["time"], d["count"], d["details"]))
    return res


# ---- the worked examples ---------------------------------------------------
def test_shared_examples_pass_check(mp_lib, capsys):
    files = sorted(SHARED.glob("example-*.jsonl"))
    assert [f.name for f in files] == ["example-c2d-window.jsonl", "example-suspicious-ip.jsonl"]
    rc, out, _ = replay(capsys, "--check", *files)
    assert rc == 0
    assert out == ("PASS %s (5 events, 2 findings)\nPASS %s (6 events, 2 findings)\n"
                   "2 scenarios: 2 passed, 0 failed, 0 unreadable\n" % tuple(files))


def test_examples_copied_into_corpus_unchanged():
    for f in sorted(SHARED.glob("example-*.jsonl")):
        assert (CORPUS / f.name).read_bytes() == f.read_bytes()


def test_generated_corpus_files_are_current(tmp_path):
    sys.path.insert(0, str(CORPUS))
    try:
        import make_certs
    finally:
        sys.path.remove(str(CORPUS))
    make_certs.main([str(tmp_path)])
    made = sorted(p.name for p in tmp_path.iterdir())
    assert len(made) == 20
    for name in made:
        assert (CORPUS / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_example_console_lines(mp_lib, capsys):
    rc, out, err = replay(capsys, SHARED / "example-c2d-window.jsonl")
    assert rc == 0 and err == ""
    name = "Number of cloud to device messages in MQTT protocol is not in the allowed range"
    assert out == "".join(
        'ALERT {"type":"MqttC2DMessagesNotInAllowedRange","name":"%s","kind":"alert","source":"device",'
        '"severity":"low","device":"sensor-7","time":"%s","count":1,"details":{"value":%d,"min":1,"max":3,'
        '"window_s":30}}\n' % (name, t, v) for t, v in (("2026-06-01T12:00:30Z", 4), ("2026-06-01T12:01:30Z", 0)))


# ---- exit status 1 and the diff ----------------------------------------------
DIFF_HEADER = {
    "config": {"deviceId": "dev-01",
               "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 0, 1, "PT10S")],
               "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                   "allowlistValues": ["10.0.0.0/8"]}]},
    "expect": [{"type": "MqttC2DMessagesNotInAllowedRange", "details": {"value": 3}},
               {"type": "ConnectionToIpNotAllowed", "times": 2},
               {"type": "suspicious_ip"}],
    "exact": True}
DIFF_EVENTS = [{"t": 1, "event": "connect", "id": 1, "remote": "11.0.0.1", "port": 443},
               {"t": 2, "event": "mqtt_message", "topic": C2D, "bytes": 1},
               {"t": 3, "event": "mqtt_message", "topic": C2D, "bytes": 1}]
C2D_LINE = ('ALERT {"type":"MqttC2DMessagesNotInAllowedRange","name":"Number of cloud to device messages in MQTT '
            'protocol is not in the allowed range","kind":"alert","source":"device","severity":"low","device":'
            '"dev-01","time":"2026-06-01T12:00:10Z","count":1,"details":{"value":2,"min":0,"max":1,"window_s":10}}')
NA_LINE = ('ALERT {"type":"ConnectionToIpNotAllowed","name":"Outbound connection to an IP that isn\'t allowed",'
           '"kind":"alert","source":"device","severity":"low","device":"dev-01","time":"2026-06-01T12:00:01Z",'
           '"count":1,"details":{"remote":"11.0.0.1","port":443,"direction":"out"}}')


def test_check_failure_diff_text(mp_lib, tmp_path, capsys):
    p = scn(tmp_path, DIFF_HEADER, DIFF_EVENTS)
    rc, out, _ = replay(capsys, "--check", p)
    assert rc == 1
    assert out == "\n".join([
        "FAIL %s" % p,
        '  unmet: expect[0] {"type": "MqttC2DMessagesNotInAllowedRange", "details": {"value": 3}}: no line matched',
        "    near: " + C2D_LINE,
        "      details.value: got 2, expected 3",
        '  unmet: expect[1] {"type": "ConnectionToIpNotAllowed", "times": 2}: 1 line matched, expected 2',
        "    matched: " + NA_LINE,
        '  unmet: expect[2] {"type": "suspicious_ip"}: no line matched',
        "  unexpected: " + C2D_LINE,
        ""])


def test_check_verbose_prints_console_lines_first(mp_lib, tmp_path, capsys):
    h = dict(DIFF_HEADER, expect=[{"type": "ConnectionToIpNotAllowed", "details": {"remote": "11.0.0.1"}, "times": 1},
                                  {"type": "MqttC2DMessagesNotInAllowedRange", "count": 1}])
    p = scn(tmp_path, h, DIFF_EVENTS)
    rc, out, _ = replay(capsys, "--check", "-v", p)
    assert rc == 0
    assert out == "%s\n%s\nPASS %s (3 events, 2 findings)\n" % (NA_LINE, C2D_LINE, p)


def test_exact_false_ignores_unexpected_lines(mp_lib, tmp_path, capsys):
    h = dict(DIFF_HEADER, expect=[{"type": "ConnectionToIpNotAllowed"}], exact=False)
    rc, out, _ = replay(capsys, "--check", scn(tmp_path, h, DIFF_EVENTS))
    assert rc == 0


def test_nested_detail_missing_key_and_bool_vs_int(mp_lib, tmp_path, capsys):
    h = dict(DIFF_HEADER, expect=[{"type": "ConnectionToIpNotAllowed", "details": {"port": True, "rule": "x"}}],
             exact=False)
    rc, out, _ = replay(capsys, "--check", scn(tmp_path, h, DIFF_EVENTS))
    assert rc == 1
    assert out.splitlines()[-1] == '      details.port: got 443, expected true; details.rule missing (expected "x")'


def test_unexpected_lines_are_capped(mp_lib, tmp_path, capsys):
    h = {"config": {"deviceId": "dev-01", "threatIntel": {"ips": ["203.0.113.0/24"]}}, "expect": [], "exact": True}
    ev = [{"t": i, "event": "connect", "id": i, "remote": "203.0.113.%d" % i, "port": 443} for i in range(1, 13)]
    rc, out, _ = replay(capsys, "--check", scn(tmp_path, h, ev))
    lines = out.splitlines()
    assert rc == 1
    assert len(lines) == 12
    assert sum(l.startswith("  unexpected: ALERT ") for l in lines) == 10
    assert lines[-1] == "  ... and 2 more unexpected lines"


# ---- exit status 2: files that cannot be read ------------------------------
GOOD = [{"t": 1, "event": "mqtt_message", "topic": C2D}]


@pytest.mark.parametrize("raw,line,reason", [
    (['{"t": 1, "event": "c2d_reject"}'] * 5 + ['{"t": 2, "event": "c2d_reject",}'], 7,
     "bad JSON: Expecting property name enclosed in double quotes (column 32)"),
    (['{"t": 1, "event": "mqtt_suback"}'], 2, 'mqtt_suback: missing field "rc"'),
    (['{"t": 1, "event": "disconnect"}'], 2,
     'unknown event "disconnect" (known: connect, accept, close, mqtt_connect, mqtt_connack, mqtt_suback, '
     'mqtt_publish, mqtt_message, c2d_reject, file, clock, reboot)'),
    (['{"t": 1}'], 2, 'missing field "event"'),
    (['{"event": "reboot"}'], 2, 'reboot: missing field "t"'),
    (['{"t": 5, "event": "reboot"}', '', '{"t": 4.5, "event": "reboot"}'], 4, "time goes backwards: t=4.5 after t=5"),
    (['{"t": -1, "event": "reboot"}'], 2, "t must be a number of seconds >= 0 (got -1)"),
    (['{"t": 1, "event": "close", "id": 7}'], 2, "close: connection id 7 is not open"),
    (['{"t": 1, "event": "connect", "id": 1, "remote": "10.0.0.1", "port": 1}',
      '{"t": 2, "event": "connect", "id": 1, "remote": "10.0.0.2", "port": 1}'], 3,
     "connect: connection id 1 is already open"),
    (['{"t": 1, "event": "connect", "id": 1, "remote": "10.0.0.1", "port": 1}', '{"t": 2, "event": "reboot"}',
      '{"t": 3, "event": "close", "id": 1}'], 4, "close: connection id 1 is not open"),
    (['{"t": 1, "event": "connect", "id": 1, "remote": "10.0.0.256", "port": 1}'], 2,
     'remote: IPv4 part above 255 (got "10.0.0.256")'),
    (['{"t": 1, "event": "connect", "id": 1, "remote": "10.0.0.1", "port": 65536}'], 2,
     "port must be a whole number 0..65535 (got 65536)"),
    (['{"t": 1, "event": "mqtt_message", "topic": "x", "byte": 3}'], 2, 'mqtt_message: unknown field "byte"'),
    (['{"t": 1, "event": "mqtt_suback", "rc": [0, 300]}'], 2, "rc[1] must be a whole number 0..255 (got 300)"),
    (['{"t": 1, "event": "file", "path": "../etc/passwd", "text": "x"}'], 2,
     "path: \"../etc/passwd\" is not a relative device path of letters, digits and ._+- (no '..', no leading '/')"),
    (['{"t": 1, "event": "file", "path": "a.pem"}'], 2, "file needs exactly one of text and der_hex"),
    (['{"t": 1, "event": "file", "path": "a.der", "der_hex": "3g"}'], 2, "der_hex must be hex digits, two per byte"),
    (['{"t": 1, "event": "clock", "set": "2026-06-01 12:00:00"}'], 2,
     'set: time must be YYYY-MM-DDTHH:MM:SSZ (got "2026-06-01 12:00:00")'),
    (['[1, 2]'], 2, "an event must be an object"),
])
def test_unreadable_event_lines(mp_lib, tmp_path, capsys, raw, line, reason):
    p = scn(tmp_path, {}, raw=raw)
    rc, out, err = replay(capsys, "--check", p)
    assert rc == 2
    assert out == "ERROR %s:%d: %s\n" % (p, line, reason)


@pytest.mark.parametrize("header,reason", [
    ({"expects": []}, 'header: unknown key "expects" (known: scenario, device, start, clock_set, config, files, '
                      'expect, exact, end)'),
    ({"start": "yesterday"}, 'start: time must be YYYY-MM-DDTHH:MM:SSZ (got "yesterday")'),
    ({"config": {"deviceId": "d", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 0, 1, "PT5X")]}},
     "config: timeWindowRules[0].timeWindowSize: bad duration unit 'X' (got 'PT5X')"),
    ({"expect": [{"type": "MqttC2DMessages"}]}, 'expect[0].type: "MqttC2DMessages" is not a finding type the agent reports'),
    ({"expect": [{"type": "suspicious_ip", "times": -1}]}, "expect[0].times must be a whole number >= 0 (got -1)"),
    ({"files": {"/certs/a.pem": "x"}}, "files[\"/certs/a.pem\"]: \"/certs/a.pem\" is not a relative device path of "
                                       "letters, digits and ._+- (no '..', no leading '/')"),
    ({"files": {"microagent.json": "{}"}},
     'files["microagent.json"]: microagent.json is where the replay writes the header\'s config'),
    ({"files": {"a.der": {"hex": "00"}}}, 'files["a.der"]: unknown key "hex" (text, or {"der_hex": ...})'),
    ({"exact": 1}, "exact must be true or false (got 1)"),
    ({"end": 0.5}, "t=1 is after the header's end (0.5)"),
])
def test_unreadable_headers(mp_lib, tmp_path, capsys, header, reason):
    p = scn(tmp_path, header, GOOD)
    rc, out, _ = replay(capsys, "--check", p)
    assert rc == 2
    line = 2 if "after the header's end" in reason else 1
    assert out == "ERROR %s:%d: %s\n" % (p, line, reason)


def test_unreadable_files(mp_lib, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    missing = tmp_path / "missing.jsonl"
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe{}\n")
    rc, out, _ = replay(capsys, "--check", empty, missing, binary)
    assert rc == 2
    assert out == ("ERROR %s:2: empty file: the first line must be the header\n"
                   "ERROR %s: cannot read (No such file or directory)\n"
                   "ERROR %s:1: not UTF-8 text\n"
                   "3 scenarios: 0 passed, 0 failed, 3 unreadable\n" % (empty, missing, binary))


def test_status_2_wins_over_1_and_0(mp_lib, tmp_path, capsys):
    bad = scn(tmp_path, {}, raw=["{"], name="bad.jsonl")
    fail = scn(tmp_path, DIFF_HEADER, DIFF_EVENTS, name="fail.jsonl")
    ok = scn(tmp_path, {}, GOOD, name="ok.jsonl")
    rc, out, _ = replay(capsys, "--check", ok, fail, bad)
    assert rc == 2
    assert out.splitlines()[0] == "PASS %s (1 event, 0 findings)" % ok
    assert out.splitlines()[-1] == "3 scenarios: 1 passed, 1 failed, 1 unreadable"
    rc, out, _ = replay(capsys, "--check", ok, fail)
    assert rc == 1


def test_console_script_exit_statuses(mp_lib, tmp_path):
    exe = str(Path(sys.executable).parent / "microagent")
    ok = scn(tmp_path, {}, GOOD, name="ok.jsonl")
    fail = scn(tmp_path, DIFF_HEADER, DIFF_EVENTS, name="fail.jsonl")
    bad = scn(tmp_path, {}, raw=['{"t": 1, "event": "nope"}'], name="bad.jsonl")
    for path, status in ((ok, 0), (fail, 1), (bad, 2)):
        r = subprocess.run([exe, "replay", "--check", str(path)], capture_output=True, text=True, timeout=60)
        assert r.returncode == status, r.stdout + r.stderr


def test_unreadable_without_check_goes_to_stderr(mp_lib, tmp_path, capsys):
    p = scn(tmp_path, {}, raw=['{"t": 1, "event": "mqtt_message", "topic": "a"}', '{"t": 2, "event": "x"}'])
    rc, out, err = replay(capsys, p)
    assert rc == 2
    assert out == ""
    assert err.startswith("ERROR %s:3: unknown event \"x\"" % p)


# ---- MemoryError under a board's heap --------------------------------------
MEM_RE = r"memory allocation failed, allocating \d+ bytes"


def test_memory_error_at_start_is_a_failure(mp_lib, tmp_path, capsys):
    p = scn(tmp_path, {"expect": []}, GOOD)
    rc, out, _ = replay(capsys, "--check", "--heap", "16wK", p)
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == "FAIL %s" % p
    assert re.fullmatch(r"  replay failed: MemoryError: %s \(after 0 events, at t=0\.000 s\) under heap 16wK" % MEM_RE,
                        lines[1]), lines[1]
    assert len(lines) == 2


def test_memory_error_mid_stream_is_a_failure(mp_lib, tmp_path, capsys):
    # an MQTT topic of 200 KB cannot be held in a 64 KB board's heap; the
    # host is still sending events when the replay stops
    ev = [{"t": i * 0.01, "event": "mqtt_message", "topic": C2D} for i in range(1, 300)]
    ev.append({"t": 5, "event": "mqtt_message", "topic": C2D + "x" * 200000})
    ev += [{"t": 5 + i * 0.01, "event": "mqtt_message", "topic": C2D} for i in range(1, 20000)]
    p = scn(tmp_path, {"expect": []}, ev)
    rc, out, err = replay(capsys, "--check", p)
    assert rc == 1
    lines = out.splitlines()
    assert re.fullmatch(r"  replay failed: MemoryError: %s \(after 299 events, at t=2\.990 s\) under heap 64wK"
                        % MEM_RE, lines[1]), lines[1]
    # without --check: the failure goes to stderr, status 1
    rc, out, err = replay(capsys, p)
    assert rc == 1 and out == ""
    assert re.fullmatch(r"microagent replay: %s: replay failed: MemoryError: %s \(after 299 events, at t=2\.990 s\) "
                        r"under heap 64wK\n" % (re.escape(str(p)), MEM_RE), err), err
    # the same scenario under the port's default heap runs to its end
    rc, out, err = replay(capsys, "--check", "--heap", "none", p)
    assert rc == 0, out


def test_memory_error_inside_the_agent_is_a_failure(mp_lib, tmp_path, capsys):
    # the agent turns its own faults into agent_error findings; one that is
    # a MemoryError still fails the scenario, even with expectations met
    from host_tools.cmd_replay import Checker, Result
    c = Checker([], False)
    c.feed('ALERT {"type":"agent_error","details":{"operation":"count","error":"MemoryError: memory allocation '
           'failed, allocating 64 bytes"}}')
    r = Result("x.jsonl")
    r.checker = c
    r.heap = "16wK"
    assert not r.ok(True) and not r.ok(False)
    assert r.problems()[0] == {"kind": "error", "error": (
        'MemoryError inside the agent (heap 16wK): ALERT {"type":"agent_error","details":{"operation":"count",'
        '"error":"MemoryError: memory allocation failed, allocating 64 bytes"}}')}


# ---- the virtual clock -------------------------------------------------------
def test_window_ends_and_default_end(mp_lib, tmp_path, capsys):
    # PT10S windows from t=0: an event at exactly t=10 belongs to the second
    # window; the default end (last event + 10 s = 25) closes the window
    # holding the last event (ending at 20) and no later, empty one
    h = {"config": {"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 1, 1, "PT10S")]}}
    ev = [{"t": 9.999, "event": "mqtt_message", "topic": C2D}, {"t": 10, "event": "mqtt_message", "topic": C2D},
          {"t": 10.5, "event": "mqtt_message", "topic": C2D}, {"t": 15, "event": "reboot"}]
    rc, out, _ = replay(capsys, scn(tmp_path, h, ev[:3]))
    W = {"min": 1, "max": 1, "window_s": 10}
    assert findings(out) == [("MqttC2DMessagesNotInAllowedRange", "2026-06-01T12:00:20Z", 1, dict(value=2, **W))]
    # with end: 40 the empty windows ending at 30 and 40 close too
    rc, out, _ = replay(capsys, scn(tmp_path, dict(h, end=40), ev[:3]))
    assert findings(out) == [("MqttC2DMessagesNotInAllowedRange", "2026-06-01T12:00:20Z", 1, dict(value=2, **W)),
                             ("MqttC2DMessagesNotInAllowedRange", "2026-06-01T12:00:30Z", 1, dict(value=0, **W)),
                             ("MqttC2DMessagesNotInAllowedRange", "2026-06-01T12:00:40Z", 1, dict(value=0, **W))]
    # a reboot at 15 starts new windows there: [15, 25) is empty, and the
    # default end (15 + 10) closes it
    rc, out, _ = replay(capsys, scn(tmp_path, h, ev))
    assert findings(out) == [("MqttC2DMessagesNotInAllowedRange", "2026-06-01T12:00:25Z", 1, dict(value=0, **W))]


def test_long_gap_steps_every_window(mp_lib, tmp_path, capsys):
    # two days without events: each of the 48 hourly windows closes on its
    # own, at its own end time (not one folded line)
    h = {"config": {"deviceId": "dev-01", "timeWindowRules": [rule("MqttD2CMessagesNotInAllowedRange", 1, 5, "PT1H")]}}
    ev = [{"t": 1, "event": "mqtt_publish", "topic": "devices/dev-01/messages/events/"},
          {"t": 2 * 86400 + 1, "event": "mqtt_publish", "topic": "devices/dev-01/messages/events/"}]
    rc, out, _ = replay(capsys, scn(tmp_path, h, ev))
    f = findings(out)
    assert len(f) == 47
    assert f[0][1] == "2026-06-01T14:00:00Z" and f[-1][1] == "2026-06-03T12:00:00Z"
    assert {x[2] for x in f} == {1} and {x[3]["value"] for x in f} == {0}


def test_folded_repeats_come_out_at_fold_end_only(mp_lib, tmp_path, capsys):
    h = {"config": {"deviceId": "dev-01", "threatIntel": {"ips": ["203.0.113.0/24"]}}}
    ev = [{"t": 1 + i, "event": "connect", "id": i, "remote": "203.0.113.5", "port": 443} for i in range(3)]
    D = {"remote": "203.0.113.5", "port": 443, "direction": "out"}
    # default end = the last event (no rules): the fold window (PT1M) is
    # still open there, so the two repeats are not printed (yet)
    rc, out, _ = replay(capsys, scn(tmp_path, h, ev))
    assert findings(out) == [("suspicious_ip", "2026-06-01T12:00:01Z", 1, D)]
    rc, out, _ = replay(capsys, scn(tmp_path, dict(h, end=61), ev))
    assert findings(out) == [("suspicious_ip", "2026-06-01T12:00:01Z", 1, D),
                             ("suspicious_ip", "2026-06-01T12:01:01Z", 2, D)]
    rc, out, _ = replay(capsys, scn(tmp_path, dict(h, end=60.999), ev))
    assert findings(out) == [("suspicious_ip", "2026-06-01T12:00:01Z", 1, D)]


def test_clock_set_false_starts_in_2000_until_a_clock_event(mp_lib, tmp_path, capsys):
    h = {"clock_set": False, "end": 130, "config": {
        "deviceId": "dev-01", "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                                  "allowlistValues": ["10.0.0.0/8"]}]}}
    h.pop("start", None)
    ev = [{"t": 61.5, "event": "connect", "id": 1, "remote": "11.0.0.1", "port": 1},
          {"t": 62, "event": "clock", "set": "2026-06-01T12:00:00Z"},
          {"t": 122.9, "event": "connect", "id": 2, "remote": "11.0.0.2", "port": 2}]
    p = tmp_path / "c.jsonl"
    p.write_text("\n".join([json.dumps({"scenario": "c", "device": "dev-01", **h})] + [json.dumps(e) for e in ev]))
    rc, out, _ = replay(capsys, p)
    assert [(f[1], f[3]["remote"]) for f in findings(out)] == [
        ("2000-01-01T00:01:01Z", "11.0.0.1"), ("2026-06-01T12:01:00Z", "11.0.0.2")]


def test_reboot_forgets_counts_keeps_files_and_clock(mp_lib, tmp_path, capsys):
    # a file written before the reboot is the configuration's certificate
    # path: after the reboot the agent reads it (agent_error: not a
    # certificate); the clock keeps running across the reboot
    h = {"config": {"deviceId": "dev-01", "certificates": [{"path": "certs/dev.pem"}]}, "end": 20}
    ev = [{"t": 5, "event": "file", "path": "certs/dev.pem", "text": "not a certificate"},
          {"t": 9, "event": "reboot"}]
    rc, out, _ = replay(capsys, scn(tmp_path, h, ev))
    got = [(f[0], f[1], f[3]["path"]) for f in findings(out)]
    assert got == [("agent_error", "2026-06-01T12:00:00Z", "certs/dev.pem"),   # missing at start
                   ("agent_error", "2026-06-01T12:00:05Z", "certs/dev.pem"),   # the watcher: not a certificate
                   ("agent_error", "2026-06-01T12:00:09Z", "certs/dev.pem")]   # read again after the reboot
    errs = [f[3]["error"] for f in findings(out)]
    assert errs[0] == "cannot read (ENOENT)"
    assert errs[1] == errs[2] != errs[0]


def test_binary_files_and_long_lines_reach_the_device(mp_lib, tmp_path, capsys):
    # a DER file from der_hex, and a header line far longer than the
    # runner's 4 KB read: the agent reads the DER through the thumbprint pin
    sys.path.insert(0, str(CORPUS))
    try:
        import make_certs
    finally:
        sys.path.remove(str(CORPUS))
    der = make_certs.GOOD
    h = {"config": {"deviceId": "dev-01", "certificates": [{"path": "a/b/c.der", "expectedThumbprint": "00" * 20}]},
         "files": {"a/b/c.der": {"der_hex": der.hex()}, "pad.txt": "p" * 20000},
         "expect": [{"type": "cert_thumbprint_mismatch", "details": {"actual": make_certs.sha1(der)}, "times": 1}],
         "exact": True}
    rc, out, _ = replay(capsys, "--check", scn(tmp_path, h, GOOD))
    assert rc == 0, out


def test_topics_with_tabs_and_newlines(mp_lib, tmp_path, capsys):
    h = {"config": {"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 0, 1, "PT10S")]},
         "expect": [{"type": "MqttC2DMessagesNotInAllowedRange", "details": {"value": 3}, "times": 1}], "exact": True}
    ev = [{"t": 1, "event": "mqtt_message", "topic": C2D + "a\tb"},
          {"t": 2, "event": "mqtt_message", "topic": C2D + "a\nb", "bytes": 3},
          {"t": 3, "event": "mqtt_message", "topic": C2D + "\u00e9"},
          {"t": 4, "event": "mqtt_message", "topic": "devices/dev-02/messages/devicebound/"},
          {"t": 5, "event": "mqtt_connect", "client_id": "dev-01", "username": None, "password": None}]
    rc, out, _ = replay(capsys, "--check", scn(tmp_path, h, ev))
    assert rc == 0, out


# ---- output forms --------------------------------------------------------------
def test_json_lines_output(mp_lib, tmp_path, capsys):
    ok = scn(tmp_path, {"expect": [{"type": "ConnectionToIpNotAllowed"}]} | {"config": DIFF_HEADER["config"]},
             DIFF_EVENTS, name="ok.jsonl")
    bad = scn(tmp_path, {}, raw=["{"], name="bad.jsonl")
    rc, out, _ = replay(capsys, "--check", "--json", ok, bad)
    assert rc == 2
    rows = [json.loads(l) for l in out.splitlines()]
    assert rows == [
        {"file": str(ok), "console": NA_LINE},
        {"file": str(ok), "console": C2D_LINE},
        {"file": str(ok), "scenario": "t", "result": "pass", "events": 3, "lines": 2, "findings": 2, "problems": []},
        {"file": str(bad), "scenario": "t", "result": "unreadable", "events": 0, "lines": 0, "findings": 0,
         "error": "%s:2: bad JSON: Expecting property name enclosed in double quotes (column 2)" % bad}]
    fail = scn(tmp_path, DIFF_HEADER, DIFF_EVENTS, name="fail.jsonl")
    rc, out, _ = replay(capsys, "--check", "--json", fail)
    last = json.loads(out.splitlines()[-1])
    assert rc == 1 and last["result"] == "fail"
    assert [p["kind"] for p in last["problems"]] == ["unmet", "unmet", "unmet", "unexpected"]
    assert last["problems"][0]["near"] == [{"line": C2D_LINE, "differs": ["details.value: got 2, expected 3"]}]


def test_several_files_without_check(mp_lib, tmp_path, capsys):
    a = scn(tmp_path, {"config": DIFF_HEADER["config"]}, DIFF_EVENTS[:1], name="a.jsonl")
    b = scn(tmp_path, {}, GOOD, name="b.jsonl")
    rc, out, _ = replay(capsys, a, b)
    assert rc == 0
    assert out == "==> %s <==\n%s\n==> %s <==\n" % (a, NA_LINE, b)


def test_output_is_deterministic(mp_lib, capsys):
    outs = set()
    for _ in range(2):
        rc, out, _ = replay(capsys, CORPUS / "reboot-control-no-reboot.jsonl", CORPUS / "cert-rotation.jsonl",
                            CORPUS / "clock-not-set-fire.jsonl")
        outs.add(out)
    assert len(outs) == 1
    assert len(findings(outs.pop())) == 8


def test_progress_bar_on_a_terminal(mp_lib, tmp_path):
    # a >1 MB scenario with stderr on a pseudo-terminal shows rich's bar
    ev = ['{"t": %d.%03d, "event": "mqtt_message", "topic": "%s%d", "bytes": 10}' % (i // 1000, i % 1000, C2D, i)
          for i in range(20000)]
    p = scn(tmp_path, {}, raw=ev)
    assert p.stat().st_size > 1 << 20
    master, slave = pty.openpty()
    exe = str(Path(sys.executable).parent / "microagent")
    proc = subprocess.Popen([exe, "replay", "--check", str(p)], stdout=subprocess.PIPE, stderr=slave,
                            env=dict(os.environ, COLUMNS="100", TERM="xterm"))
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert out.decode() == "PASS %s (20000 events, 0 findings)\n" % p
    assert b"s.jsonl" in seen and "\u2501".encode() in seen   # the bar's description and its line


def test_config_rewritten_by_a_file_event_takes_effect_at_reboot(mp_lib, tmp_path, capsys):
    # a new baseline written to flash (microagent.json) is read at the next
    # start; an invalid one is refused with one line and no rules
    new = {"deviceId": "dev-01", "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                                     "allowlistValues": ["10.0.0.0/8"]}]}
    ev = [{"t": 1, "event": "file", "path": "microagent.json", "text": json.dumps(new)},
          {"t": 2, "event": "connect", "id": 1, "remote": "11.0.0.1", "port": 443},
          {"t": 3, "event": "reboot"},
          {"t": 4, "event": "connect", "id": 1, "remote": "11.0.0.2", "port": 443},
          {"t": 5, "event": "file", "path": "microagent.json", "text": '{"deviceId": 7}'},
          {"t": 6, "event": "reboot"},
          {"t": 7, "event": "connect", "id": 1, "remote": "11.0.0.3", "port": 443}]
    rc, out, _ = replay(capsys, scn(tmp_path, {}, ev))
    assert rc == 0
    assert [(f[0], f[1], f[3]["remote"]) for f in findings(out)] == [
        ("ConnectionToIpNotAllowed", "2026-06-01T12:00:04Z", "11.0.0.2")]
    assert out.splitlines()[-1] == ("microagent: config error: deviceId: must be a non-empty string of at most "
                                    "128 characters")


def test_bad_heap_value(tmp_path, capsys):
    rc, out, err = replay(capsys, "--heap", "lots", scn(tmp_path, {}, GOOD))
    assert rc == 2
    assert err == "microagent replay: --heap lots: not a micropython heap size (e.g. 64wK, 256K, 1M, none)\n"
