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

# An unset device clock starts here (2000-01-01T00:00:00Z, what an ESP32's
# RTC reads after power-up) and runs on from there until a clock event.
UNSET_UTC = 946684800
CONFIG = "microagent.json"
_DAY_MS = 86400000  # poll at least this often, as a board must (ticks wrap)


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

    def start(self):
        self.agent = None
        gc.collect()
        self.t0 = self.clock.ms
        self.agent = microagent.start(self.config, self.clock, self.out)

    def advance(self, T):
        """Step the clock to T ms, polling the agent at every window end
        (and fold end) on the way, so findings carry the window-end time."""
        c = self.clock
        a = self.agent
        while True:
            nxt = -1
            due = a.next_due() if a is not None else -1
            if due >= 0:
                nxt = self.t0 + due * 1000
            if 0 <= self.poll_at and (nxt < 0 or self.poll_at < nxt):
                nxt = self.poll_at
            if nxt < 0 or nxt > T:
                if a is None or T - c.ms <= _DAY_MS:
                    break
                nxt = c.ms + _DAY_MS
            elif nxt - c.ms > _DAY_MS:
                nxt = c.ms + _DAY_MS
            if nxt <= c.ms:  # never stand still
                nxt = c.ms + 1
            if nxt >= self.poll_at:
                self.poll_at = -1
            c.ms = nxt
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

    def run(self, src):
        """Read lines from `src` until the end line or EOF. Returns the
        number of events handled. A line longer than one read is joined
        once, not grown read by read."""
        rd = src.read
        parts = []
        while True:
            c = rd(4096)
            if not c:
                break
            i = 0
            if parts:
                j = c.find(b"\n")
                if j < 0:
                    parts.append(c)
                    continue
                parts.append(c[:j])
                line = b"".join(parts)
                parts = []
                if not self.event(line):
                    return self.n
                line = None
                i = j + 1
            while True:
                j = c.find(b"\n", i)
                if j < 0:
                    break
                if not self.event(c[i:j]):
                    return self.n
                i = j + 1
            if i < len(c):
                parts.append(c[i:])
            c = None
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
