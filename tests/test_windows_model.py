"""Tumbling windows against a plain reference model, with hypothesis:
random timelines of counted events and connections, polled every second."""
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "portable"))
from mphelp import Lines, ManualClock  # noqa: E402

from microagent import config  # noqa: E402
from microagent.agent import Agent  # noqa: E402

BASE = 1796000000

events = st.lists(st.tuples(st.integers(0, 119), st.sampled_from(["c2d", "open", "close"])), max_size=60)


def _model(evts, size, lo, hi, c2d_lo, c2d_hi, end):
    """Alerts a correct agent prints: (type, value, window end second)."""
    out = []
    open_now = 0
    peak = {}
    c2d = {}
    for t, kind in sorted(evts, key=lambda e: e[0]):
        w = t // size
        if kind == "c2d":
            c2d[w] = c2d.get(w, 0) + 1
        elif kind == "open":
            open_now += 1
            peak[w] = max(peak.get(w, 0), open_now)
        elif open_now:
            open_now -= 1
        # carry the open count into windows without events
        peak.setdefault(w, open_now)
    # a window's peak is at least the connections open when it started
    opened = 0
    start_open = {}
    timeline = sorted(evts, key=lambda e: e[0])
    i = 0
    for w in range(end // size):
        while i < len(timeline) and timeline[i][0] < w * size:
            k = timeline[i][1]
            if k == "open":
                opened += 1
            elif k == "close" and opened:
                opened -= 1
            i += 1
        start_open[w] = opened
    for w in range(end // size):
        v = max(peak.get(w, 0), start_open[w])
        c = c2d.get(w, 0)
        if not lo <= v <= hi:
            out.append(("ActiveConnectionsNotInAllowedRange", v, (w + 1) * size))
        if not c2d_lo <= c <= c2d_hi:
            out.append(("MqttC2DMessagesNotInAllowedRange", c, (w + 1) * size))
    return out


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 40), st.integers(0, 3), st.integers(0, 4), st.integers(0, 2), st.integers(0, 4))
def test_windows_match_model(evts, size, lo, span, c2d_lo, c2d_span):
    hi = lo + span
    c2d_hi = c2d_lo + c2d_span
    clk = ManualClock(BASE)
    out = Lines()
    a = Agent(clk, out)
    a.configure({"deviceId": "m", "timeWindowRules": [
        {"ruleType": "ActiveConnectionsNotInAllowedRange", "isEnabled": True, "minThreshold": lo,
         "maxThreshold": hi, "timeWindowSize": "PT%dS" % size},
        {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": c2d_lo,
         "maxThreshold": c2d_hi, "timeWindowSize": "PT%dS" % size}]})
    end = 120
    by_t = {}
    for t, kind in evts:
        by_t.setdefault(t, []).append(kind)
    for sec in range(end + 1):
        # poll first: the window ending at this second closes before the
        # second's events, which belong to the next window
        a.poll()
        for kind in by_t.get(sec, []) if sec < end else []:
            if kind == "c2d":
                a.count(config.C2D)
            elif kind == "open":
                a.connection_opened("10.0.0.1", 1)
            else:
                a.connection_closed()
        clk.advance(1)
    got = []
    for al in out.alerts():
        sec = _seconds(al["time"]) - BASE
        got.append((al["type"], al["details"]["value"], sec))
        assert al["count"] == 1 and al["details"]["window_s"] == size
    want = _model([e for e in evts if e[0] < end], size, lo, hi, c2d_lo, c2d_hi, end)
    assert sorted(got, key=lambda g: (g[2], g[0])) == sorted(want, key=lambda g: (g[2], g[0]))


def _seconds(iso):
    import calendar
    import time
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
