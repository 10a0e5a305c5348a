# The replay's device side (microagent.replay) fed from a byte stream: the
# virtual clock, window ends, reboot, the JSON slow path. No files: the
# configuration is handed over as a document.
import io

from microagent import replay
from mphelp import Lines

START = 1780315200  # 2026-06-01T12:00:00Z
C2D = b"devices/dev-01/messages/devicebound/x"
CFG = {"deviceId": "dev-01", "timeWindowRules": [
    {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 1,
     "timeWindowSize": "PT10S"}]}


def _run(lines):
    out = Lines()
    r = replay.Replay(out, CFG)
    n = r.run(io.BytesIO(b"\n".join(lines) + b"\n"))
    return r, n, out


def test_virtual_clock():
    c = replay.VirtualClock(replay.UNSET_UTC)
    c.ms = 61500
    assert (c.ticks_ms(), c.time()) == (61500, replay.UNSET_UTC + 61)
    c.set(START)
    c.ms = 62400
    assert c.time() == START


def test_window_end_times_and_counts():
    r, n, out = _run([b"0\tC\t%d" % START, b"0\tS", b"1000\tm\t5\t" + C2D, b"2500\tm\t5\t" + C2D,
                      b"10000\tm\t5\t" + C2D, b"25000\tE"])
    assert n == 3
    assert out.brief() == [("MqttC2DMessagesNotInAllowedRange", 1, {"value": 2, "min": 0, "max": 1, "window_s": 10})]
    assert out.alerts()[0]["time"] == "2026-06-01T12:00:10Z"
    assert r.clock.ms == 25000


def test_reboot_restarts_windows_and_json_events():
    r, n, out = _run([b"0\tC\t%d" % START, b"0\tS", b"1000\tm\t5\t" + C2D, b"2000\tm\t5\t" + C2D,
                      b"3000\tb", b'4000\tJ\t{"event": "mqtt_message", "topic": "devices/dev-01/messages/'
                      b'devicebound/a\\nb", "bytes": 1}', b"5000\tm\t1\t" + C2D, b"13000\tE"])
    assert n == 5  # the reboot is an event
    # the reboot at 3 s dropped the first window's 2; [3 s, 13 s) holds 2
    assert out.brief() == [("MqttC2DMessagesNotInAllowedRange", 1, {"value": 2, "min": 0, "max": 1, "window_s": 10})]
    assert out.alerts()[0]["time"] == "2026-06-01T12:00:13Z"


def test_unset_clock_and_clock_event():
    r, n, out = _run([b"0\tS", b"1000\tC\t%d" % START, b"61000\tE"])
    assert n == 1
    assert r.clock.time() == START + 60
