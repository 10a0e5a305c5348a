# The replay's device side (microagent.replay) fed from a byte stream: the
# virtual clock, window ends, reboot, the JSON slow path. No files: the
# configuration is handed over as a document.
import binascii
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


class _Trickle:
    """A binary stream that hands out at most `step` bytes per readinto()
    (a pipe delivers what is there, not what was asked for)."""

    def __init__(self, data, step):
        self.data = data
        self.pos = 0
        self.step = step

    def readinto(self, buf):
        n = min(len(buf), self.step, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def test_lines_longer_than_the_read_buffer():
    # a 100-byte buffer: a topic of 700 bytes, a file written in a 900-byte
    # D line, lines split across reads at every offset; the events all
    # arrive whole, in order
    long_topic = C2D + b"/" + b"y" * 700
    text = b"0123456789" * 45
    name = b"replay-runner-test.tmp"  # in the current directory, removed at the end
    lines = [b"0\tC\t%d" % START, b"0\tS", b"1000\tm\t5\t" + long_topic, b"1500\tF\t" + name,
             b"1500\tD\t" + binascii.hexlify(text), b"1500\tG", b"2000\tm\t5\t" + C2D, b"2500\tm\t5\t" + C2D,
             b"13000\tE"]
    data = b"\n".join(lines) + b"\n"
    import os
    try:
        for step in (1, 7, 99, 100, 101, 4096):
            out = Lines()
            r = replay.Replay(out, CFG)
            n = r.run(_Trickle(data, step), 100)
            assert n == 4, (step, n)
            # the long topic counted with the other two C2D messages
            assert out.brief() == [("MqttC2DMessagesNotInAllowedRange", 1, {"value": 3, "min": 0, "max": 1,
                                                                               "window_s": 10})], step
            with open(name.decode(), "rb") as f:
                assert f.read() == text
    finally:
        try:
            os.remove(name.decode())
        except OSError:
            pass


def test_idle_time_is_jumped_in_tick_sized_strides():
    # nothing due (no window rule): 3e9 s pass in as many polls as a tick
    # counter needs (one per 2**29 - 1 ms), not one a day
    out = Lines()
    r = replay.Replay(out, {"deviceId": "dev-01"})
    T = 3000000000 * 1000
    n = r.run(io.BytesIO(b"0\tC\t%d\n0\tS\n%d\tr\n%d\tE\n" % (START, T, T)))
    assert n == 1
    assert r.polls == T // replay.STRIDE_MS
    assert r.clock.time() == START + 3000000000
    assert out.lines == []


def test_polls_are_the_window_ends_on_the_way():
    # a PT1D rule over 30 days: one poll per window end, nothing more
    cfg = {"deviceId": "dev-01", "timeWindowRules": [
        {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 5,
         "timeWindowSize": "P1D"}]}
    r = replay.Replay(Lines(), cfg)
    r.run(io.BytesIO(b"0\tC\t%d\n0\tS\n%d\tr\n%d\tE\n" % (START, 30 * 86400000, 30 * 86400000)))
    assert r.polls == 30


def test_an_unset_clock_reaching_the_floor_is_polled_there():
    # the clock starts unset (2000-01-01) and runs past 2024-01-01 by
    # itself: the replay polls at that very second, as a board polling
    # often would, and the agent sees a set clock from then on
    from microagent import platform
    r = replay.Replay(Lines(), {"deviceId": "dev-01"})
    at = (platform.CLOCK_FLOOR - replay.UNSET_UTC) * 1000
    r.run(io.BytesIO(b"0\tS\n%d\tE\n" % (at + 5000,)))
    assert r.polls == at // replay.STRIDE_MS + 1
    assert r.agent.utc_if_set() == platform.CLOCK_FLOOR + 5
