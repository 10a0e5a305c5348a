from microagent import platform
from mphelp import raises


def test_iso8601_round_trip():
    assert platform.iso8601(0) == "1970-01-01T00:00:00Z"
    assert platform.iso8601(1796000000) == "2026-11-30T00:53:20Z"
    assert platform.parse_iso8601("2026-11-30T00:53:20Z") == 1796000000
    assert platform.parse_iso8601("2000-01-01T00:00:00Z") == 946684800
    assert platform.parse_iso8601("2024-02-29T23:59:59Z") == 1709251199
    assert platform.CLOCK_FLOOR == platform.parse_iso8601("2024-01-01T00:00:00Z")


def test_parse_iso8601_refuses_other_forms():
    for bad in ("2026-11-30T00:53:20", "2026-11-30T00:53:20+00:00", "2026-11-30 00:53:20Z",
                "2026-11-30T00:53:20.5Z", "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z",
                "2026-11-31T00:00:00Z", "2026-11-30T24:00:00Z", "26-11-30T00:00:00Z", 5, None):
        raises(ValueError, platform.parse_iso8601, bad)


def test_days_from_civil_far_dates():
    assert platform.days_from_civil(1970, 1, 1) == 0
    assert platform.days_from_civil(9999, 12, 31) == 2932896
    assert platform.days_from_civil(1950, 1, 1) == -7305
    assert platform.days_from_civil(2000, 3, 1) == 11017


def test_ticks_arithmetic_wraps():
    a = platform.ticks_add(0, -10)
    assert platform.ticks_diff(platform.ticks_add(a, 25), a) == 25
    assert platform.ticks_diff(a, platform.ticks_add(a, 25)) == -25
