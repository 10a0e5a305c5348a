# Stand-in for MicroPython's `ntptime` on the unix port (no NTP server
# may be reached from the tests): settime() fails until the attempt
# fakes.json names ("ntp_ok_on", default 1), then marks the clock set
# (the test's fake RTC reads 2000 until then).
from network import plan

host = "pool.ntp.org"
attempts = 0
SET = [False]


def settime():
    global attempts
    attempts += 1
    if attempts < plan().get("ntp_ok_on", 1):
        raise OSError("timed out")
    SET[0] = True
