"""`microagent replay`: the worked examples, exit codes 0/1/2 and the diff
text, unreadable files named by file and line, MemoryError under a small
heap, the virtual clock (window ends, `end`, clock events, reboot), the
device filesystem, --json, determinism and the progress bar. Every replay
runs the real agent on the unix port."""
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
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
    assert len(made) == 24
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
    (['{"t": -1, "event": "reboot"}'], 2, "t must be a number of seconds from 0 to 3155760000 (100 years) (got -1)"),
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


def _big_cert():
    # a certificate of 150 KB (one large extension): more than a 64 KB
    # board's heap can hold while the agent reads it
    sys.path.insert(0, str(CORPUS))
    try:
        import make_certs
    finally:
        sys.path.remove(str(CORPUS))
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID, ObjectIdentifier
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "big")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(make_certs._key(2).public_key())
         .serial_number(5).not_valid_before(make_certs.A_YEAR_AGO).not_valid_after(make_certs.START + make_certs.YEAR)
         .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x00" * 150000),
                        critical=False))
    return b.sign(make_certs.CA_KEY, None).public_bytes(serialization.Encoding.DER)


BIG_CERT_LINE = ('ALERT {"type":"agent_error","name":"Security agent internal error","kind":"alert","source":"device",'
                 '"severity":"low","device":"dev-01","time":"2026-06-01T12:00:00Z","count":1,"details":{"operation":'
                 '"certificate","path":"certs/big.der","error":"too large for the heap"}}')


def test_memory_error_inside_the_agent_is_a_failure(mp_lib, tmp_path, capsys):
    # the agent catches the MemoryError and reports it in its own words
    # ("too large for the heap"): the scenario still failed, with --check
    # and without, whatever the expectations say - unless an expect entry
    # matches that very agent_error line
    h = {"config": {"deviceId": "dev-01", "certificates": [{"path": "certs/big.der"}]},
         "files": {"certs/big.der": {"der_hex": _big_cert().hex()}}, "expect": [], "exact": False}
    p = scn(tmp_path, h, GOOD)
    rc, out, err = replay(capsys, "--check", p)
    assert rc == 1
    assert out == "FAIL %s\n  MemoryError inside the agent (heap 64wK): %s\n" % (p, BIG_CERT_LINE)
    rc, out, err = replay(capsys, p)
    assert rc == 1
    assert out == BIG_CERT_LINE + "\n"
    assert err == "microagent replay: %s: MemoryError inside the agent (heap 64wK): %s\n" % (p, BIG_CERT_LINE)
    rc, out, err = replay(capsys, "--check", "--json", p)
    assert json.loads(out.splitlines()[-1])["problems"] == [
        {"kind": "error", "error": "MemoryError inside the agent (heap 64wK): " + BIG_CERT_LINE}]
    # expected: an entry matches the line
    q = scn(tmp_path, dict(h, expect=[{"type": "agent_error", "details": {"error": "too large for the heap"},
                                       "times": 1}], exact=True), GOOD, name="q.jsonl")
    rc, out, err = replay(capsys, "--check", q)
    assert (rc, out) == (0, "PASS %s (1 event, 1 finding)\n" % q)
    # an agent_error entry that does not match this line excuses nothing
    r = scn(tmp_path, dict(h, expect=[{"type": "agent_error", "details": {"operation": "count"}, "times": 0}]),
            GOOD, name="r.jsonl")
    rc, out, err = replay(capsys, "--check", r)
    assert rc == 1 and out.splitlines()[1] == "  MemoryError inside the agent (heap 64wK): " + BIG_CERT_LINE
    # with the port's default heap the certificate is read: no finding
    rc, out, err = replay(capsys, "--check", "--heap", "none", p)
    assert (rc, out) == (0, "PASS %s (1 event, 0 findings)\n" % p)


def test_memory_errors_however_worded():
    from host_tools.cmd_replay import is_memory_error

    def f(err, ftype="agent_error"):
        return {"type": ftype, "details": {"operation": "x", "error": err}}
    assert [is_memory_error(f(e)) for e in (
        "MemoryError: memory allocation failed, allocating 64 bytes", "memory allocation failed",
        "too large for the heap", "config: too large for this device's heap (a 64 KB board holds a few hundred threat-intel entries)",
        "MemoryError: ", "cannot read (ENOENT)", "SAS token: sig is not base64", "heapsize",
    )] == [True, True, True, True, True, False, False, False]
    assert not is_memory_error(f("MemoryError", "cert_expired"))
    assert not is_memory_error({"type": "agent_error", "details": "MemoryError"})


def test_config_the_device_cannot_load_fails_the_scenario(mp_lib, tmp_path, capsys):
    # 4000 threat-intel networks: valid per config.md (the host's check),
    # too large for a 64 KB board's heap - the agent runs without rules,
    # which is a failed scenario, not a pass with no findings
    ips = ["10.%d.%d.0/24" % (i // 256, i % 256) for i in range(4000)]
    h = {"config": {"deviceId": "dev-01", "threatIntel": {"ips": ips}}, "expect": [], "exact": True}
    p = scn(tmp_path, h, GOOD)
    rc, out, _ = replay(capsys, "--check", p)
    assert rc == 1
    assert out == ("FAIL %s\n  the agent could not load its configuration and ran without rules: microagent: config "
                   "error: microagent.json: too large for this device's heap (a 64 KB board holds a few "
                   "hundred threat-intel entries)\n" % p)
    rc, out, _ = replay(capsys, "--check", "--heap", "4M", p)
    assert (rc, out) == (0, "PASS %s (1 event, 0 findings)\n" % p)


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
    # start; an invalid one is refused with one line and no rules: a failed
    # scenario (status 1), with --check and without
    new = {"deviceId": "dev-01", "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                                     "allowlistValues": ["10.0.0.0/8"]}]}
    ev = [{"t": 1, "event": "file", "path": "microagent.json", "text": json.dumps(new)},
          {"t": 2, "event": "connect", "id": 1, "remote": "11.0.0.1", "port": 443},
          {"t": 3, "event": "reboot"},
          {"t": 4, "event": "connect", "id": 1, "remote": "11.0.0.2", "port": 443}]
    rc, out, _ = replay(capsys, scn(tmp_path, {}, ev))
    assert rc == 0
    assert [(f[0], f[1], f[3]["remote"]) for f in findings(out)] == [
        ("ConnectionToIpNotAllowed", "2026-06-01T12:00:04Z", "11.0.0.2")]
    bad = ev + [{"t": 5, "event": "file", "path": "microagent.json", "text": '{"deviceId": 7}'},
                {"t": 6, "event": "reboot"},
                {"t": 7, "event": "connect", "id": 1, "remote": "11.0.0.3", "port": 443}]
    p = scn(tmp_path, {}, bad)
    rc, out, err = replay(capsys, p)
    assert rc == 1
    line = "microagent: config error: deviceId: must be a non-empty string of at most 128 characters"
    assert out.splitlines()[-1] == line
    assert err == "microagent replay: %s: the agent could not load its configuration and ran without rules: %s\n" % (
        p, line)
    rc, out, err = replay(capsys, "--check", p)
    assert rc == 1
    assert out == "FAIL %s\n  the agent could not load its configuration and ran without rules: %s\n" % (p, line)


def test_default_end_follows_a_config_rewritten_before_a_reboot(mp_lib, tmp_path, capsys):
    # the header has no window rule; the config written at t=1 and loaded
    # at the reboot (t=2) has a PT10S one: the default end is 2 + 10 s, so
    # the window holding the last event closes (empty, below its min of 1)
    new = {"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 1, 5, "PT10S")]}
    ev = [{"t": 1, "event": "file", "path": "microagent.json", "text": json.dumps(new)}, {"t": 2, "event": "reboot"}]
    rc, out, _ = replay(capsys, scn(tmp_path, {}, ev))
    assert rc == 0
    assert findings(out) == [("MqttC2DMessagesNotInAllowedRange", "2026-06-01T12:00:12Z", 1,
                              {"value": 0, "min": 1, "max": 5, "window_s": 10})]
    # written but never loaded (no reboot after it): the header's config
    # (no rules) holds at the end, which is the last event
    rc, out, _ = replay(capsys, scn(tmp_path, {}, ev[:1] + [{"t": 2, "event": "c2d_reject"}]))
    assert (rc, findings(out)) == (0, [])
    # the same as der_hex bytes
    ev2 = [{"t": 1, "event": "file", "path": "microagent.json", "der_hex": json.dumps(new).encode().hex()},
           {"t": 2, "event": "reboot"}]
    rc, out, _ = replay(capsys, scn(tmp_path, {}, ev2))
    assert [f[1] for f in findings(out)] == ["2026-06-01T12:00:12Z"]


@pytest.mark.parametrize("value,reason", [
    ("lots", "not a micropython heap size: digits, an optional w (words), an optional K or M (e.g. 64wK, 256K, 1M; "
             "or none)"),
    ("064K", "not a micropython heap size: digits, an optional w (words), an optional K or M (e.g. 64wK, 256K, 1M; "
             "or none)"),
    ("0", "not a micropython heap size: digits, an optional w (words), an optional K or M (e.g. 64wK, 256K, 1M; "
          "or none)"),
    ("", "not a micropython heap size: digits, an optional w (words), an optional K or M (e.g. 64wK, 256K, 1M; "
         "or none)"),
    ("1G", "not a micropython heap size: digits, an optional w (words), an optional K or M (e.g. 64wK, 256K, 1M; "
           "or none)"),
    ("64 K", "not a micropython heap size: digits, an optional w (words), an optional K or M (e.g. 64wK, 256K, 1M; "
             "or none)"),
    ("100", "100 bytes is outside 4K..1G"),
    ("1wK", "2048 bytes is outside 4K..1G"),
    ("2048M", "2147483648 bytes is outside 4K..1G"),
    ("99999999999K", "not a micropython heap size: digits, an optional w (words), an optional K or M (e.g. 64wK, "
                     "256K, 1M; or none)"),
])
def test_bad_heap_value(tmp_path, capsys, value, reason):
    rc, out, err = replay(capsys, "--heap", value, scn(tmp_path, {}, GOOD))
    assert (rc, out) == (2, "")
    assert err == "microagent replay: --heap %s: %s\n" % (value, reason)


def test_heap_values_micropython_takes():
    from host_tools.cmd_replay import parse_heap
    assert [parse_heap(v) for v in ("none", "64wK", "2wK", "4K", "4096", "1M", "512m", "1024M")] == [
        None, "64wK", "2wK", "4K", "4096", "1M", "512m", "1024M"]


# ---- long replays in a board's heap --------------------------------------------
def test_many_findings_do_not_exhaust_a_boards_heap(mp_lib, tmp_path, capsys):
    # 25,000 outbound connections to distinct disallowed addresses (each one
    # an ALERT) among 100,000 events, under the default 64wK heap: the
    # runner reads stdin into one buffer made at its start, so a heap
    # fragmented by a long run never has to find a large free block
    p = tmp_path / "allow-only.jsonl"
    with open(p, "w") as f:
        f.write(json.dumps({"scenario": "allow-only", "device": "d", "start": "2026-01-01T00:00:00Z",
                            "config": {"allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                                           "allowlistValues": ["10.0.0.0/8"]}]}}) + "\n")
        for i in range(100000):
            t = "%d.%02d" % (i // 20, i % 20 * 5)
            k = i % 4
            if k == 0:
                f.write('{"t":%s,"event":"connect","id":%d,"remote":"11.%d.%d.%d","port":443}\n' % (
                    t, i, i >> 16 & 255, i >> 8 & 255, i & 255))
            elif k == 1:
                f.write('{"t":%s,"event":"close","id":%d}\n' % (t, i - 1))
            else:
                f.write('{"t":%s,"event":"mqtt_message","topic":"devices/d/messages/devicebound/x","bytes":10}\n' % t)
    rc, out, err = replay(capsys, "--check", p)
    assert (rc, out, err) == (0, "PASS %s (100000 events, 25000 findings)\n" % p, "")


# ---- inputs that must be refused with one line, never a traceback ------------
DEEP = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize("raw,line,reason", [
    (['{"t": %s, "event": "c2d_reject"}' % ("9" * 400)], 2,
     "t must be a number of seconds from 0 to 3155760000 (100 years) (got 99999999999999999999999999999999999999999"
     "9999999999999999999...)"),
    (['{"t": %s, "event": "c2d_reject"}' % ("1" * 5000)], 2,
     "bad JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits"),
    (['{"t": 1e400, "event": "c2d_reject"}'], 2,
     "t must be a number of seconds from 0 to 3155760000 (100 years) (got Infinity)"),
    (['{"t": 3155760000.001, "event": "c2d_reject"}'], 2,
     "t must be a number of seconds from 0 to 3155760000 (100 years) (got 3155760000.001)"),
    (['{"t": 1, "event": "c2d_reject", "x": %s}' % DEEP], 2, "bad JSON: nested too deeply"),
    (['{"t": 1, "event": [1]}'], 2, 'unknown event [1] (known: connect, accept, close, mqtt_connect, mqtt_connack, '
                                    'mqtt_suback, mqtt_publish, mqtt_message, c2d_reject, file, clock, reboot)'),
    (['{"t": 1, "event": "mqtt_message", "topic": "devices/dev-01/messages/devicebound/\\ud800"}'], 2,
     "topic: text with a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode, cannot be UTF-8"),
    (['{"t": 1, "event": "mqtt_connect", "client_id": "\\udfff"}'], 2,
     "client_id: text with a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode, cannot be UTF-8"),
    (['{"t": 1, "event": "file", "path": "a.txt", "text": "x\\ud83d"}'], 2,
     "text: text with a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode, cannot be UTF-8"),
    (['{"t": 1, "event": "mqtt_message", "topic": "x", "bytes": 268435456}'], 2,
     "bytes must be a whole number 0..268435455 (got 268435456)"),
    (['{"t": 1, "event": "file", "path": "certs/a.pem/b", "text": "x"}'], 2,
     'path: "certs/a.pem/b" cannot be written: "certs/a.pem" is a file, not a folder'),
    (['{"t": 1, "event": "file", "path": "certs", "text": "x"}'], 2,
     'path: "certs" is already a folder (of "certs/a.pem")'),
    (['{"t": 1, "event": "file", "path": "microagent.json/x", "text": "x"}'], 2,
     'path: "microagent.json/x" cannot be written: "microagent.json" is a file, not a folder'),
    (['{"t": 1, "event": "file", "path": "%s", "text": "x"}' % ("a" * 256)], 2,
     'path: "%s... has a part longer than 255 characters' % ("a" * 59)),
])
def test_unreadable_inputs_without_tracebacks(mp_lib, tmp_path, capsys, raw, line, reason):
    p = scn(tmp_path, {"files": {"certs/a.pem": "x"}}, raw=raw)
    rc, out, err = replay(capsys, "--check", p)
    assert (rc, out, err) == (2, "ERROR %s:%d: %s\n" % (p, line, reason), "")


@pytest.mark.parametrize("header,reason", [
    ("null", "header must be an object (got null)"),
    ("[1]", "header must be an object (got [1])"),
    (DEEP, "bad JSON: nested too deeply"),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "config": {"deviceId": "\\ud800"}}',
     "config.deviceId: text with a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode, cannot be UTF-8"),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "files": {"a.txt": "\\ud800"}}',
     'files["a.txt"]: text with a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode, cannot be UTF-8'),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "files": {"a": "x", "a/b": "y"}}',
     'files["a/b"]: "a/b" cannot be written: "a" is a file, not a folder'),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "files": {"a/b": "y", "a": "x"}}',
     'files["a"]: "a" is already a folder (of "a/b")'),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "end": 1e300}',
     "end must be a number of seconds from 0 to 3155760000 (100 years) (got 1e+300)"),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "end": %s}' % ("7" * 400),
     "end must be a number of seconds from 0 to 3155760000 (100 years) (got 77777777777777777777777777777777777777777"
     "7777777777777777777...)"),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "expect": [{"type": [1]}]}',
     "expect[0].type: [1] is not a finding type the agent reports"),
    ('{"scenario": "x", "start": "2026-06-01T12:00:00Z", "expect": [{"type": "suspicious_ip", "details": '
     '{"remote": %s}}]}' % ("[" * 40 + "]" * 40), "expect[0] nests deeper than 32 levels"),
])
def test_unreadable_headers_without_tracebacks(mp_lib, tmp_path, capsys, header, reason):
    p = tmp_path / "h.jsonl"
    p.write_text(header + "\n" + json.dumps(GOOD[0]) + "\n")
    rc, out, err = replay(capsys, "--check", p)
    assert (rc, out, err) == (2, "ERROR %s:1: %s\n" % (p, reason), "")


def test_expect_true_never_equals_1(mp_lib, tmp_path, capsys):
    from host_tools.cmd_replay import same
    assert [same(True, 1), same(1, True), same(False, 0), same(0, False), same(1, 1.0), same(True, True),
            same([1], [True]), same({"a": True}, {"a": 1}), same([1, [2]], [1, [2]])] == [
        False, False, False, False, True, True, False, False, True]
    h = {"config": {"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 0, 1, "PT10S")]},
         "expect": [{"type": "MqttC2DMessagesNotInAllowedRange", "count": True}], "exact": False}
    ev = [{"t": i, "event": "mqtt_message", "topic": C2D} for i in (1, 2)]
    p = scn(tmp_path, h, ev)
    rc, out, _ = replay(capsys, "--check", p)
    assert rc == 1
    assert out.splitlines()[-1] == "      count: got 1, expected true"


def test_reader_raises_only_scenario_errors(tmp_path):
    # any JSON a line may hold (huge and tiny numbers, lone surrogates,
    # deep nesting, wrong types everywhere) is a ScenarioError naming the
    # file and line, never another exception
    from hypothesis import HealthCheck, given, settings, strategies as st

    from host_tools.scenario import Scenario, ScenarioError
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), st.floats(),
                     st.text(max_size=8), st.sampled_from(["\ud800", "x\udfffy", "2026-06-01T12:00:00Z", "10.0.0.1",
                                                           "a/b", "microagent.json", "zz", "00ff"]),
                     st.sampled_from([10 ** 400, 3155760000, 3155760001, 268435456, -1, 65536]))
    value = st.recursive(leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                         max_leaves=8)
    hkeys = st.sampled_from(["scenario", "device", "start", "clock_set", "config", "files", "expect", "exact", "end",
                             "x"])
    ekeys = st.sampled_from(["t", "event", "id", "remote", "port", "proto", "client_id", "username", "password", "rc",
                             "topic", "bytes", "path", "text", "der_hex", "set"])
    names = st.sampled_from(["connect", "accept", "close", "mqtt_connect", "mqtt_connack", "mqtt_suback",
                             "mqtt_publish", "mqtt_message", "c2d_reject", "file", "clock", "reboot"])
    # mostly one odd thing at a time, so that the lines after it are read too
    header = st.one_of(st.just({"start": "2026-06-01T12:00:00Z"}),
                       st.builds(lambda k, v: {"start": "2026-06-01T12:00:00Z", k: v}, hkeys, value),
                       st.dictionaries(hkeys, value, max_size=4))
    event = st.one_of(
        st.builds(lambda n, t, d: dict(d, event=n, t=t), names, st.one_of(st.integers(0, 5), value),
                  st.dictionaries(ekeys, value, max_size=2)),
        st.builds(lambda d, k, v: dict(d, **{k: v}), st.sampled_from([
            {"t": 1, "event": "connect", "id": 1, "remote": "10.0.0.1", "port": 1},
            {"t": 1, "event": "mqtt_message", "topic": "x"}, {"t": 1, "event": "mqtt_connect", "client_id": "c"},
            {"t": 1, "event": "file", "path": "a/b", "text": "x"}, {"t": 1, "event": "clock", "set": "2026-06-01T12:00:00Z"},
            {"t": 1, "event": "mqtt_suback", "rc": 0}]), ekeys, value))

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(header, st.lists(st.one_of(event, value), max_size=4))
    def check(h, evs):
        p = tmp_path / "f.jsonl"
        p.write_text("\n".join(json.dumps(x) for x in [h] + evs) + "\n")
        try:
            with Scenario.open(p) as sc:
                for _ in sc.events():
                    pass
                sc.end_ms()
        except ScenarioError as e:
            assert str(e).startswith("%s:" % p)
    check()


# ---- long idle times, and a replay stopped half-way ------------------------------
def test_a_hundred_years_of_idle_time_is_quick(mp_lib, tmp_path, capsys):
    # nothing is due between the events: the clock jumps (in 6.2-day
    # strides a tick counter can measure), it does not step day by day;
    # findings carry the right time, a fold window still closes on time
    h = {"config": {"deviceId": "dev-01", "threatIntel": {"ips": ["203.0.113.0/24"]}}, "end": 3000000061}
    ev = [{"t": 1, "event": "c2d_reject"},
          {"t": 3000000000, "event": "connect", "id": 1, "remote": "203.0.113.5", "port": 443},
          {"t": 3000000001, "event": "connect", "id": 2, "remote": "203.0.113.5", "port": 443}]
    D = {"remote": "203.0.113.5", "port": 443, "direction": "out"}
    rc, out, _ = replay(capsys, scn(tmp_path, h, ev))
    assert rc == 0
    assert findings(out) == [("suspicious_ip", "2121-06-25T17:20:00Z", 1, D),
                             ("suspicious_ip", "2121-06-25T17:21:00Z", 1, D)]
    rc, out, _ = replay(capsys, scn(tmp_path, {"end": 3155760000}, [{"t": 3155760000, "event": "reboot"}]))
    assert (rc, out) == (0, "")


def _children(pid):
    # pids of the micropython processes whose parent is `pid`
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/status" % d) as f:
                    st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
            except OSError:
                continue
            if st.get("PPid", "").strip() == str(pid) and st.get("Name", "").strip() == "micropython":
                out.append(int(d))
    return out


def _gone(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return "zombie" in f.read()
    except OSError:
        return True


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_to_the_host_kills_the_runner(mp_lib, tmp_path, sig, status):
    # a PT1S rule stepped over 3,000,000 s keeps micropython busy for long;
    # the signal goes to the host process alone (not its group), which
    # must take the runner down before it exits
    h = {"config": {"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 0, 5, "PT1S")]},
         "end": 3000000}
    p = scn(tmp_path, h, GOOD)
    exe = str(Path(sys.executable).parent / "microagent")
    proc = subprocess.Popen([exe, "replay", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        kids = []
        for _ in range(300):
            kids = _children(proc.pid)
            if kids:
                break
            time.sleep(0.05)
        assert len(kids) == 1
        time.sleep(0.3)
        assert proc.poll() is None and not _gone(kids[0])
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == status
        assert _gone(kids[0])
        if sig != signal.SIGINT:
            assert err.decode() == "microagent replay: stopped by %s\n" % signal.Signals(sig).name
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_an_exception_in_the_host_kills_the_runner(mp_lib, tmp_path, monkeypatch):
    from host_tools import cmd_replay
    started = []
    real = subprocess.Popen

    def popen(*a, **kw):
        started.append(real(*a, **kw))
        return started[-1]

    def feed(sc, pipe, bar):
        raise RuntimeError("the host broke half-way")
    monkeypatch.setattr(cmd_replay.subprocess, "Popen", popen)
    monkeypatch.setattr(cmd_replay, "_feed", feed)
    with pytest.raises(RuntimeError):
        cmd_replay.replay(scn(tmp_path, {}, GOOD), lib=mp_lib)
    assert len(started) == 1 and started[0].returncode == -signal.SIGKILL


def test_output_closed_early_stops_the_replay(mp_lib, tmp_path):
    # `microagent replay big.jsonl | head -1`: the reader of stdout goes
    # away; the replay stops (no hang on a full pipe), quietly, with the
    # status of a SIGPIPE (141), and takes the runner down with it
    h = {"config": {"deviceId": "dev-01", "threatIntel": {"ips": ["203.0.113.0/24"]}}}
    ev = [{"t": i * 0.001, "event": "connect", "id": i, "remote": "203.0.113.%d" % (i % 256), "port": i % 60000 + 1}
          for i in range(20000)]
    p = scn(tmp_path, h, ev)
    exe = str(Path(sys.executable).parent / "microagent")
    proc = subprocess.Popen([exe, "replay", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(b'ALERT {"type":"suspicious_ip"')
        kids = _children(proc.pid)
        assert len(kids) == 1
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=60)
        assert (proc.returncode, err) == (141, b"")
        assert _gone(kids[0])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
