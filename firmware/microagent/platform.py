# The one module that knows how this port keeps time: epochs and tick
# counters differ between ports (DESIGN.md, "MicroPython facts that bite").
import time

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
except AttributeError:  # CPython: same arithmetic with a board's 2**30 period
    _PERIOD = 1 << 30
    _HALF = _PERIOD >> 1

    def ticks_ms():
        """Milliseconds, wrapping at 2**30 as on a board."""
        return int(time.monotonic() * 1000) & (_PERIOD - 1)

    def ticks_diff(a, b):
        """Signed a - b for wrapping tick values (time.ticks_diff)."""
        return ((a - b + _HALF) & (_PERIOD - 1)) - _HALF

    def ticks_add(a, d):
        """a + d wrapped to the tick period (time.ticks_add)."""
        return (a + d) & (_PERIOD - 1)

# Seconds from 1970-01-01 to this port's epoch: 0 on unix and rp2,
# 2000-01-01 on ESP32 and STM32.
EPOCH_OFFSET = 0 if time.gmtime(0)[0] == 1970 else 946684800

# A device clock before this (2024-01-01T00:00:00Z) was never set: an unset
# RTC reads 2021 on rp2, 2015 on STM32, ~2000 on ESP32.
CLOCK_FLOOR = 1704067200


class Clock:
    """The device's real clocks.

    ticks_ms(): monotonic milliseconds, wrapping (compare with ticks_diff).
    time(): UTC seconds since 1970-01-01 (int), whatever the port's epoch.
    """

    def ticks_ms(self):
        """Monotonic milliseconds (wrapping)."""
        return ticks_ms()

    def time(self):
        """UTC seconds since 1970-01-01."""
        return int(time.time()) + EPOCH_OFFSET


def civil(utc):
    """(Y, M, D, h, m, s) of int UTC seconds since 1970, by integer
    arithmetic (H. Hinnant's civil_from_days, with Python's floor
    division), not time.gmtime: no 2038 or 31-bit limit on a board, any
    epoch, any year."""
    days = utc // 86400
    s = utc - days * 86400
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return (y, m, d, s // 3600, s // 60 % 60, s % 60)


def iso8601(utc):
    """'YYYY-MM-DDTHH:MM:SSZ' for int UTC seconds since 1970 (see civil()).
    Years after 9999 are written with a '+' and more digits (ISO 8601
    expanded representation)."""
    t = civil(utc)
    return "%s%04d-%02d-%02dT%02d:%02d:%02dZ" % (("+" if t[0] > 9999 else "",) + t)


def is_decimal(text):
    """True if `text` is one or more ASCII digits 0-9. (str.isdigit also
    takes other scripts' digits on CPython, and int() reads them, while
    MicroPython refuses them: the device must decide the same everywhere.)"""
    if not text:
        return False
    for c in text:
        if c < "0" or c > "9":
            return False
    return True


_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_iso8601(text):
    """UTC seconds since 1970 for 'YYYY-MM-DDTHH:MM:SSZ' (RFC 3339, whole
    seconds, 'Z' only). Raises ValueError for any other form."""
    if not isinstance(text, str) or len(text) != 20 or text[4] != "-" or text[7] != "-" \
            or text[10] not in "Tt" or text[13] != ":" or text[16] != ":" or text[19] not in "Zz":
        raise ValueError("time must be YYYY-MM-DDTHH:MM:SSZ")
    f = []
    for a, b in ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19)):
        s = text[a:b]
        if not is_decimal(s):
            raise ValueError("time must be YYYY-MM-DDTHH:MM:SSZ")
        f.append(int(s))
    y, mo, d, h, mi, s = f
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not (1 <= mo <= 12 and 1 <= d <= _MDAYS[mo - 1] + (1 if mo == 2 and leap else 0)
            and h < 24 and mi < 60 and s < 60):
        raise ValueError("time out of range")
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    algorithm); plain integer arithmetic, no time module, any year."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
