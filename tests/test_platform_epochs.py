"""platform.py on a port whose epoch is 2000 (ESP32, STM32). No such board
runs here, so this test stands one in: it loads platform.py with a `time`
module whose gmtime(0) is 2000-01-01 and time() counts from 2000, as those
ports' do."""
import calendar
import importlib.util
import sys
import time as _time
import types
from pathlib import Path

from hypothesis import given, strategies as st

from microagent import platform

SRC = Path(__file__).resolve().parent.parent / "firmware" / "microagent" / "platform.py"
Y2K = 946684800


def _load_with_time(fake):
    spec = importlib.util.spec_from_file_location("platform_2000", SRC)
    mod = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("time")
    sys.modules["time"] = fake
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules["time"] = saved
    return mod


def test_2000_epoch_port_reports_1970_seconds():
    fake = types.SimpleNamespace(
        gmtime=lambda t=None: _time.gmtime((t or 0) + Y2K),   # 2000-based, like ESP32
        time=lambda: 849315200,                               # 2026-11-30T00:53:20Z since 2000
        monotonic=_time.monotonic)
    p = _load_with_time(fake)
    assert p.EPOCH_OFFSET == Y2K
    assert p.Clock().time() == 1796000000
    assert p.iso8601(1796000000) == "2026-11-30T00:53:20Z"


def test_1970_epoch_port():
    assert platform.EPOCH_OFFSET == 0


@given(st.integers(-62135596800, 253402300799))
def test_days_from_civil_matches_calendar(ts):
    t = _time.gmtime(ts)
    assert platform.days_from_civil(t.tm_year, t.tm_mon, t.tm_mday) * 86400 + \
        t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec == ts
    if 1 <= t.tm_year <= 9999 and ts >= -62135596800:
        text = "%04d-%02d-%02dT%02d:%02d:%02dZ" % t[:6]
        assert platform.parse_iso8601(text) == calendar.timegm(t)


@given(st.integers(-62135596800, 253402300799))
def test_iso8601_matches_gmtime(ts):
    assert platform.iso8601(ts) == "%04d-%02d-%02dT%02d:%02d:%02dZ" % _time.gmtime(ts)[:6]


def test_iso8601_beyond_2038_and_9999():
    assert platform.iso8601(2**31) == "2038-01-19T03:14:08Z"
    assert platform.iso8601(253402300800) == "+10000-01-01T00:00:00Z"


@given(st.integers(-62135596800, 253402300799))
def test_civil_matches_gmtime(ts):
    assert platform.civil(ts) == tuple(_time.gmtime(ts)[:6])
