# Scenario replay, the device side (../shared/spec/scenario.md). The host
# (host_tools/cmd_replay.py) reads and validates a scenario file and pipes
# its events here, one short line each; this module drives the real agent
# with a virtual clock the events step, in the current directory as the
# device's filesystem. Like unixmain it is an entry point of the unix port,
# imported only by a replay: a board's app never loads it.
#
# Lines on stdin (bytes, fields separated by TAB, MS = integer virtual
# milliseconds since the scenario's t=0, never decreasing):
#   0 C UTC                               before the start: the clock at t=0
#                                         (without it the clock starts unset)
#   0 S                                   start the agent (microagent.start)
#   MS c PORT REMOTE / MS a PORT REMOTE   connect (outbound) / accept (inbound)
#   MS x                                  close
#   MS m BYTES TOPIC / MS p BYTES TOPIC   mqtt_message / mqtt_publish
#   MS k RC / MS s RC,RC..                mqtt_connack / mqtt_suback
#   MS r / MS b                           c2d_reject / reboot
#   MS C UTC                              clock set
#   MS F PATH / MS D HEX / MS G           a file: open (truncate) / append
#                                         bytes / close (a `file` event; at
#                                         t=0 before S, the header's files)
#   MS J {event object}                   any event as in the scenario file
#   MS E                                  end: run the clock to MS, stop
# Stdout: the agent's console lines as it prints them, and lines starting
# "@replay " for the host ("@replay end N", "@replay error ...").
import binascii
import gc
import json
import os
import sys

import microagent
from microagent import platform

# An unset device clock starts here (2000-01-01T00:00:00Z, what an ESP32's
# RTC reads after power-up) and runs on from there until a clock event.
UNSET_UTC = 946684800
CONFIG = "microagent.json"
# The longest step between two polls: a board's tick counter wraps at
# 2**30 ms, and ticks_diff() measures at most 2**29 - 1 ms (6.2 days).
STRIDE_MS = (1 << 29) - 1
# stdin is read into one buffer of this size, allocated at start: a long
# replay in a fragmented heap never needs a large free block for reading.
# A line longer than this (a long MQTT topic) is joined from pieces.
LINE_BUF = 512


class VirtualClock:
    """The replay's clock, driven by the events: `ms` is the virtual
    milliseconds since t=0 (the host steps it); ticks_ms() returns it (the
    agent only takes differences); time() is UTC seconds since 1970.
    """

    def __init__(self, utc):
        self.ms = 0
        self.base = utc * 1000  # UTC milliseconds at ms == 0

    def set(self, utc):
        """The device clock reads `utc` (int seconds since 1970) now."""
        self.base = utc * 1000 - self.ms

    def ticks_ms(self):
        return self.ms

    def time(self):
        return (self.base + self.ms) // 1000


def open_file(path):
    """Open a device file for writing, creating its parent folders.
    Returns the binary file object. Raises OSError."""
    d = ""
    for part in path.split("/")[:-1]:
        d = part if not d else d + "/" + part
        try:
            os.mkdir(d)
        except OSError:
            pass
    return open(path, "wb")


def touch(path, utc):
    """Set a file's mtime to `utc` (int seconds since 1970): the virtual
    time of the write, so that a rewrite is a change to os.stat() even
    within one real second (the unix port's os has no utime; touch(1)
    does it). `path` is a checked relative path of [A-Za-z0-9._+-/]."""
    if hasattr(os, "system") and "'" not in path:
        os.system("touch -c -d @%d '%s'" % (utc, path))


class Replay:
    """Runs one scenario read by run(src) (a binary stream of the lines
    above); out(line) receives the agent's console lines; config is what
    each start loads (a path, default microagent.json, or a document)."""

    def __init__(self, out=print, config=CONFIG):
        self.out = out
        self.config = config
        self.clock = VirtualClock(UNSET_UTC)
        self.agent = None
        self.t0 = 0      # virtual ms at which the running agent started
        self.poll_at = -1  # an extra poll (certificate file watcher), ms
        self.n = 0       # events handled
        self.f = None    # the file being written
        self.path = None
        self.polls = 0   # agent polls made by advance() (tests count them)

    def start(self):
        self.agent = None
        gc.collect()
        self.t0 = self.clock.ms
        self.agent = microagent.start(self.config, self.clock, self.out)

    def _next(self):
        # virtual ms of the next poll a board would make, or -1: a window
        # or fold end, the file watcher's look, the moment an unset clock
        # reaches the floor by itself
        a = self.agent
        c = self.clock
        nxt = -1
        due = a.next_due()
        if due >= 0:
            nxt = self.t0 + due * 1000
        if 0 <= self.poll_at and (nxt < 0 or self.poll_at < nxt):
            nxt = self.poll_at
        if c.time() < platform.CLOCK_FLOOR:
            f = platform.CLOCK_FLOOR * 1000 - c.base
            if nxt < 0 or f < nxt:
                nxt = f
        return nxt

    def advance(self, T):
        """Step the clock to T ms, polling the agent at every window end
        (and fold end) on the way, so findings carry the window-end time.
        With nothing due the clock jumps to T, in steps of at most
        STRIDE_MS (what a tick counter can measure): the polls are as many
        as the window and fold ends on the way, plus one per 6.2 days."""
        c = self.clock
        a = self.agent
        if a is None:
            c.ms = T
            return
        while True:
            nxt = self._next()
            if nxt < 0 or nxt > T:
                if T - c.ms <= STRIDE_MS:
                    break
                nxt = c.ms + STRIDE_MS
            elif nxt - c.ms > STRIDE_MS:
                nxt = c.ms + STRIDE_MS
            if nxt <= c.ms:  # never stand still
                nxt = c.ms + 1
            if nxt >= self.poll_at:
                self.poll_at = -1
            c.ms = nxt
            self.polls += 1
            a.poll()
        c.ms = T

    def event(self, line):
        f = line.split(b"\t", 3)
        T = int(f[0])
        if T != self.clock.ms:
            self.advance(T)
        op = f[1]
        a = self.agent
        self.n += 1
        if op == b"m":
            a.mqtt_message(f[3].decode(), int(f[2]))
        elif op == b"p":
            a.mqtt_publish(f[3].decode(), int(f[2]))
        elif op == b"c":
            a.connection_opened(f[3].decode(), int(f[2]))
        elif op == b"x":
            a.connection_closed()
        elif op == b"a":
            a.connection_opened(f[3].decode(), int(f[2]), True)
        elif op == b"k":
            a.mqtt_connack(int(f[2]))
        elif op == b"s":
            a.mqtt_suback([int(v) for v in f[2].split(b",")])
        elif op == b"r":
            a.c2d_rejected()
        elif op == b"b":
            self.start()
        elif op == b"C":
            self.clock.set(int(f[2]))
            if a is None:
                self.n -= 1
            else:
                a.poll()
        elif op == b"D":
            self.n -= 1
            self.f.write(binascii.unhexlify(f[2]))
        elif op == b"F":
            self.path = f[2].decode()
            self.f = open_file(self.path)
        elif op == b"G":
            self.f.close()
            self.f = None
            touch(self.path, self.clock.time())
            self.n -= 1  # F counted the file event
            if a is None:  # a file of the header, not an event
                self.n -= 1
            else:
                a.poll()
                cc = sys.modules.get("microagent.certcheck")
                if cc is not None:  # its watcher looks at files every STAT_EVERY_S
                    self.poll_at = self.clock.ms + getattr(cc, "STAT_EVERY_S", 5) * 1000
        elif op == b"J":
            self.json_event(json.loads(f[2] if len(f) == 3 else b"\t".join(f[2:])))
        elif op == b"S":
            self.n -= 1
            self.start()
        elif op == b"E":
            # the observation ends here; the device is not shut down, so
            # repeats whose fold window is still open are not printed
            self.n -= 1
            return False
        else:
            raise ValueError("unknown replay line %r" % (line[:40],))
        return True

    def json_event(self, e):
        # the slow path: events with free text (MQTT CONNECT) or
        # with characters the short form cannot carry
        a = self.agent
        ev = e["event"]
        if ev == "mqtt_connect":
            a.mqtt_connect(e.get("client_id"), e.get("username"), e.get("password"))
        elif ev == "mqtt_message":
            a.mqtt_message(e["topic"], e.get("bytes", 0))
        elif ev == "mqtt_publish":
            a.mqtt_publish(e["topic"], e.get("bytes", 0))
        elif ev in ("connect", "accept"):
            a.connection_opened(e["remote"], e["port"], ev == "accept")
        else:
            raise ValueError("unknown event %r" % (ev,))

    def run(self, src, size=LINE_BUF):
        """Read lines from the binary stream `src` until the end line or
        EOF. Returns the number of events handled.

        The lines are read into one buffer of `size` bytes allocated here
        (readinto), so reading needs no free heap block larger than a
        line. A line longer than the buffer is joined from its pieces:
        memory for what it holds, never for a size it claims."""
        buf = bytearray(size)
        mv = memoryview(buf)
        rd = src.readinto
        s = 0      # buf[s:e] is read and not yet handled
        e = 0
        parts = None  # the earlier pieces of a line longer than the buffer
        while True:
            if e == size:
                if s == 0:  # a full buffer and no end of line: a long line
                    if parts is None:
                        parts = []
                    parts.append(bytes(buf))
                    e = 0
                else:  # move the partial line to the front
                    tail = bytes(mv[s:e])
                    e -= s
                    mv[0:e] = tail
                    tail = None
                    s = 0
            n = rd(mv[e:])
            if not n:
                break
            i = buf.find(b"\n", e, e + n)
            e += n
            while i >= 0:
                if parts is not None:
                    parts.append(bytes(mv[s:i]))
                    line = b"".join(parts)
                    parts = None
                else:
                    line = bytes(mv[s:i])
                s = i + 1
                if not self.event(line):
                    return self.n
                line = None
                i = buf.find(b"\n", s, e)
            if s == e:
                s = e = 0
        return self.n


def main():
    """Replay the lines on stdin; prints "@replay end N" when done, or
    "@replay error TYPE: message" (and exits 3) when the replay itself
    failed, a MemoryError under a board's heap included."""
    r = Replay()
    try:
        n = r.run(sys.stdin.buffer)
    except Exception as e:
        r.agent = None
        gc.collect()
        print("@replay error %s: %s (after %d events, at t=%d.%03d s)" % (type(e).__name__, e, r.n, r.clock.ms // 1000, r.clock.ms % 1000))
        if not isinstance(e, MemoryError):
            try:
                sys.print_exception(e, sys.stderr)
            except AttributeError:  # CPython
                import traceback
                traceback.print_exc()
        sys.exit(3)
    print("@replay end %d" % n)
