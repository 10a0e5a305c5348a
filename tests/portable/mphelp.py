# Helpers the portable tests use on CPython and on MicroPython alike.


def raises(exc, fn, *args):
    """Call fn(*args); return the exception of class `exc` it raised, or
    fail the test if it raised nothing."""
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %s%r" % (exc.__name__, getattr(fn, "__name__", fn), args))


class ManualClock:
    """A clock the test drives: ticks_ms() and time() (UTC seconds).
    ticks start at `ticks` so a test can start just before a wrap."""

    def __init__(self, utc=1796000000, ticks=0):
        import time
        self.utc0 = utc
        self.ms = 0
        self.t0 = ticks
        self._add = getattr(time, "ticks_add", None)

    def advance(self, seconds):
        self.ms += int(seconds * 1000)

    def ticks_ms(self):
        if self._add:
            return self._add(self.t0, self.ms)
        from microagent import platform
        return platform.ticks_add(self.t0, self.ms)

    def time(self):
        return self.utc0 + self.ms // 1000


class Lines:
    """Collects console lines; .alerts() parses the ALERT/RECOMMENDATION ones."""

    def __init__(self):
        self.lines = []

    def __call__(self, line):
        self.lines.append(line)

    def alerts(self):
        import json
        out = []
        for l in self.lines:
            if l.startswith("ALERT ") or l.startswith("RECOMMENDATION "):
                out.append(json.loads(l[l.index(" ") + 1:]))
        return out

    def brief(self):
        """(type, count, details) of each alert, for exact comparison."""
        return [(a["type"], a["count"], a["details"]) for a in self.alerts()]


def _unique():
    import os
    b = os.urandom(6)
    return "%02x%02x%02x%02x%02x%02x" % (b[0], b[1], b[2], b[3], b[4], b[5])


# one per process: runs of the suite side by side (CPython and the unix
# port, or two checkouts on one machine) never share a scratch file
RUN = _unique()


def scratch(name):
    """A path under /tmp for a test's scratch file, unique to this process
    (name: a short tag; the same tag gives the same path in one run)."""
    import sys
    return "/tmp/microagent-test-%s-%s-%s" % (name, sys.implementation.name, RUN)


def fixture(name):
    """Path of a fixture file in tests/portable/certs/."""
    d = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return d + "/certs/" + name


def read_fixture(name):
    """The bytes of a fixture file in tests/portable/certs/."""
    with open(fixture(name), "rb") as f:
        return f.read()
