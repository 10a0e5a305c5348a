"""`microagent replay FILE... [--check] [--heap SIZE] [--json]`: scenario
files (../shared/spec/scenario.md) through the real agent on the
MicroPython unix port.

The host reads each file line by line (host_tools/scenario.py validates
every line and names the file and line of a problem) and pipes the events,
one short line each, to `micropython -c "from microagent import replay;
replay.main()"` running in a temporary directory that is the device's
filesystem; that process runs the staged agent (.mpy, as on a board) with a
virtual clock the events step, and prints the agent's console lines, which
a thread here reads as they come. Neither side holds the scenario: memory
is constant in its length.

Exit status: 0 when every scenario ran (and with --check, every
expectation held); 1 when a scenario failed (an expectation, or the replay
itself: a MemoryError under --heap, or an agent that could not do its job -
a configuration it could not load, a MemoryError it caught); 2 when a file
cannot be read (bad JSON, unknown event, missing field, time going
backwards... named FILE:LINE) or --heap is not a heap size — 2 wins over 1.
The micropython process never outlives the command: an exception, Ctrl-C
or SIGTERM/SIGHUP kills it before the command exits.
"""
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

from . import unixport
from .scenario import CONFIG_FILE, Scenario, ScenarioError

CODE = """try:
    from microagent import replay
except MemoryError as e:
    print("@replay error MemoryError: %s (loading the replay)" % e)
    raise SystemExit(3)
replay.main()
"""
KEEP = 5  # lines shown per unmet expectation / near miss; unexpected lines shown
PROGRESS_BYTES = 1 << 20  # a progress bar on a terminal for files above this


# ---- expectations -------------------------------------------------------
def same(a, b):
    """JSON equality as an expectation means it: true and false equal only
    themselves (never 1 or 0, on either side); lists item by item; objects
    key by key; 1 and 1.0 are the same number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k]) for k in a))
    return a == b


def _diff(want, got, prefix, out):
    # keys of `want` that `got` lacks or holds differently (dicts key by key)
    for k, v in want.items():
        name = prefix + k
        if k not in got:
            out.append("%s missing (expected %s)" % (name, json.dumps(v)))
        elif isinstance(v, dict) and isinstance(got[k], dict):
            _diff(v, got[k], name + ".", out)
        elif not same(got[k], v):
            out.append("%s: got %s, expected %s" % (name, json.dumps(got[k]), json.dumps(v)))
    return out


def _matches(entry, finding):
    if finding.get("type") != entry.get("type"):
        return False
    want = {k: v for k, v in entry.items() if k != "times"}
    return not _diff(want, finding, "", [])


def finding_of(line):
    """The decoded JSON of an ALERT/RECOMMENDATION console line ({} when it
    is not JSON), or None for any other line."""
    if line.startswith("ALERT "):
        body = line[6:]
    elif line.startswith("RECOMMENDATION "):
        body = line[15:]
    else:
        return None
    try:
        f = json.loads(body)
    except ValueError:
        return {}
    return f if isinstance(f, dict) else {}


class Checker:
    """Compares console lines with a header's expectations (scenario.md):
    an entry matches lines of its `type` whose other given keys are equal
    (`details` key by key); `times` is the exact number of matches, else at
    least one; with exact=True an ALERT/RECOMMENDATION line no entry
    matches is a problem. Keeps a bounded number of lines per entry, so
    memory does not grow with the scenario."""

    def __init__(self, expect, exact):
        self.expect = expect
        self.exact = exact
        self.count = [0] * len(expect)
        self.seen = [[] for _ in expect]   # first matching lines
        self.near = [[] for _ in expect]   # first same-type lines that did not match
        self.unexpected = []
        self.n_unexpected = 0

    def feed(self, line, f=False):
        """One console line (without newline); f: its finding_of() when
        the caller has it."""
        if f is False:
            f = finding_of(line)
        if f is None:
            return
        hit = False
        for i, e in enumerate(self.expect):
            if _matches(e, f):
                hit = True
                self.count[i] += 1
                if len(self.seen[i]) < KEEP:
                    self.seen[i].append(line)
            elif f.get("type") == e["type"] and len(self.near[i]) < KEEP:
                self.near[i].append((line, _diff({k: v for k, v in e.items() if k != "times"}, f, "", [])))
        if not hit and self.exact:
            self.n_unexpected += 1
            if len(self.unexpected) < 2 * KEEP:
                self.unexpected.append(line)

    def problems(self):
        """List of problems, each a dict: kind "unmet" (expect, index,
        matched, lines, near) or "unexpected" (line) or "more_unexpected"
        (count)."""
        out = []
        for i, e in enumerate(self.expect):
            n = self.count[i]
            want = e.get("times")
            if (want is None and n == 0) or (want is not None and n != want):
                out.append({"kind": "unmet", "index": i, "expect": e, "matched": n,
                            "lines": list(self.seen[i]),
                            "near": [{"line": l, "differs": d} for l, d in self.near[i]] if n == 0 else []})
        for line in self.unexpected:
            out.append({"kind": "unexpected", "line": line})
        if self.n_unexpected > len(self.unexpected):
            out.append({"kind": "more_unexpected", "count": self.n_unexpected - len(self.unexpected)})
        return out


CONFIG_ERROR = "microagent: config error:"
_HEAP_WORDS = re.compile(r"MemoryError|memory allocation failed|\bheap\b", re.I)


def is_memory_error(f):
    """True for an agent_error finding (decoded) whose error is a
    MemoryError however the agent worded it: the exception's name, the
    port's "memory allocation failed", or a heap that was too small
    ("too large for the heap")."""
    d = f.get("details")
    err = d.get("error") if isinstance(d, dict) else None
    return f.get("type") == "agent_error" and isinstance(err, str) and bool(_HEAP_WORDS.search(err))


class Health:
    """Whether the agent could do its job, from its console lines: a
    "microagent: config error:" line (at the start or after a reboot: the
    agent then runs without rules) or an agent_error finding that is a
    MemoryError fails the scenario, with or without --check - unless an
    entry of the header's `expect` matches that agent_error line (then
    it is what the scenario tests). Keeps at most KEEP lines."""

    def __init__(self, expect):
        self.expect = [e for e in expect if e.get("type") == "agent_error"]
        self.lines = []   # (kind, line)
        self.count = 0

    def feed(self, line, f):
        if f is None:
            if not line.startswith(CONFIG_ERROR):
                return
            kind = "config"
        elif is_memory_error(f) and not any(_matches(e, f) for e in self.expect):
            kind = "memory"
        else:
            return
        self.count += 1
        if len(self.lines) < KEEP:
            self.lines.append((kind, line))

    def problems(self, heap):
        """The problems (kind "error") of the lines seen."""
        out = []
        for kind, line in self.lines:
            if kind == "config":
                why = "the agent could not load its configuration and ran without rules"
            else:
                why = "MemoryError inside the agent (heap %s)" % (heap or "default")
            out.append({"kind": "error", "error": "%s: %s" % (why, line)})
        if self.count > len(self.lines):
            out.append({"kind": "error", "error": "... and %d more such lines" % (self.count - len(self.lines))})
        return out


def format_problem(p):
    """The readable lines of one problem (as --check prints them)."""
    if p["kind"] == "unexpected":
        return ["  unexpected: " + p["line"]]
    if p["kind"] == "more_unexpected":
        return ["  ... and %d more unexpected lines" % p["count"]]
    if p["kind"] == "error":
        return ["  " + p["error"]]
    e = p["expect"]
    want = e.get("times")
    if want is None:
        head = "  unmet: expect[%d] %s: no line matched" % (p["index"], json.dumps(e))
    else:
        head = "  unmet: expect[%d] %s: %d line%s matched, expected %d" % (
            p["index"], json.dumps(e), p["matched"], "" if p["matched"] == 1 else "s", want)
    out = [head]
    for l in p["lines"]:
        out.append("    matched: " + l)
    if p["matched"] > len(p["lines"]):
        out.append("    ... and %d more matched" % (p["matched"] - len(p["lines"])))
    for n in p["near"]:
        out.append("    near: " + n["line"])
        out.append("      " + "; ".join(n["differs"]))
    return out


# ---- one scenario on the unix port --------------------------------------
def _encode(ev):
    """The runner's line for an event (firmware/microagent/replay.py)."""
    f = ev.fields
    n = ev.name
    ms = ev.ms
    if n in ("mqtt_message", "mqtt_publish"):
        topic = f["topic"]
        if "\n" not in topic:
            return "%d\t%s\t%d\t%s\n" % (ms, "m" if n == "mqtt_message" else "p", f.get("bytes", 0), topic)
    elif n == "connect":
        return "%d\tc\t%d\t%s\n" % (ms, f["port"], f["remote"])
    elif n == "accept":
        return "%d\ta\t%d\t%s\n" % (ms, f["port"], f["remote"])
    elif n == "close":
        return "%d\tx\n" % ms
    elif n == "mqtt_connack":
        return "%d\tk\t%d\n" % (ms, f["rc"])
    elif n == "mqtt_suback":
        return "%d\ts\t%s\n" % (ms, ",".join(str(r) for r in f["rc"]))
    elif n == "c2d_reject":
        return "%d\tr\n" % ms
    elif n == "reboot":
        return "%d\tb\n" % ms
    elif n == "clock":
        return "%d\tC\t%d\n" % (ms, f["set"])
    elif n == "file":
        return _file_lines(ms, f["path"], f.get("text"), f.get("der_hex"))
    d = {"event": n}
    for k, v in f.items():
        if k not in ("t", "event"):
            d[k] = v
    return "%d\tJ\t%s\n" % (ms, json.dumps(d))


# bytes of a file's content per line: a line of 2 * 192 hex digits fits
# the runner's 512-byte read buffer (longer lines work, joined from pieces)
FILE_CHUNK = 192


def _file_lines(ms, path, text, der_hex):
    # a file goes in chunks, so the runner never holds all of it at once
    data = text.encode() if text is not None else bytes.fromhex(der_hex)
    out = ["%d\tF\t%s\n" % (ms, path)]
    for i in range(0, len(data), FILE_CHUNK):
        out.append("%d\tD\t%s\n" % (ms, data[i:i + FILE_CHUNK].hex()))
    out.append("%d\tG\n" % ms)
    return "".join(out)


class Result:
    """What one scenario did. status: "done" (ran to its end), "failed"
    (the replay itself failed: error says why) or "unreadable" (error is
    'FILE:LINE: reason'); events, lines, findings: counts; checker:
    Checker or None; health: Health (config errors and MemoryErrors the
    agent printed); heap: the heap size used."""

    def __init__(self, path):
        self.path = path
        self.name = ""
        self.status = "done"
        self.error = None
        self.events = 0
        self.lines = 0
        self.findings = 0
        self.checker = None
        self.health = Health([])
        self.heap = None

    def problems(self):
        if self.status == "failed":
            # the expectations of a replay that did not finish say nothing
            return [{"kind": "error", "error": self.error}]
        out = self.health.problems(self.heap)
        if self.checker is not None:
            out.extend(self.checker.problems())
        return out

    def ok(self, check):
        """True when the scenario ran to its end, the agent could do its
        job, and (check) every expectation held."""
        if self.status != "done" or self.health.count:
            return False
        return not (check and self.checker is not None and self.checker.problems())


def _progress(path, size):
    if not sys.stderr.isatty() or size < PROGRESS_BYTES:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    p = Progress(TextColumn("{task.description}"), BarColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                 console=Console(stderr=True), transient=True)
    p.start()
    p.add_task(os.path.basename(str(path)), total=size)
    return p


def replay(path, heap=unixport.DEFAULT_HEAP, lib=None, on_line=None, check=True):
    """Replay one scenario file on the unix port.

    path: scenario file; heap: micropython heap size ("64wK", None for the
    port's default); lib: staged firmware (unixport.stage()); on_line(line)
    is called with each console line as it comes (from a reader thread);
    check: compare with the header's expectations. Returns a Result; never
    raises for a bad file (status "unreadable"); an exception from on_line
    stops the replay and is raised here. Whatever ends it (an exception,
    KeyboardInterrupt, Terminated), the micropython process is dead when
    this returns or raises.
    """
    res = Result(str(path))
    res.heap = heap
    try:
        sc = Scenario.open(path)
    except ScenarioError as e:
        res.status, res.error = "unreadable", str(e)
        return res
    with sc:
        h = sc.header
        res.name = h.name
        res.health = Health(h.expect)
        if check:
            res.checker = Checker(h.expect, h.exact)
        lib = lib or unixport.stage()
        with tempfile.TemporaryDirectory(prefix="microagent-replay-") as fs:
            proc = subprocess.Popen(unixport.command(CODE, [], heap), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=unixport.env(lib),
                                    cwd=fs, bufsize=1 << 16)
            status = {}
            tail = collections.deque(maxlen=20)

            def read_out():
                try:
                    for raw in proc.stdout:
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        if line.startswith("@replay "):
                            status["last"] = line[8:]
                            continue
                        res.lines += 1
                        f = finding_of(line)
                        if f is not None:
                            res.findings += 1
                        res.health.feed(line, f)
                        if res.checker is not None:
                            res.checker.feed(line, f)
                        if on_line is not None:
                            on_line(line)
                except BaseException as e:  # on_line failed (stdout closed: `| head`): stop the replay
                    status["error"] = e
                    proc.kill()

            def read_err():
                for raw in proc.stderr:
                    tail.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

            threads = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
            for t in threads:
                t.start()
            bar = None
            try:
                try:
                    bar = _progress(path, os.path.getsize(path))
                    _feed(sc, proc.stdin, bar)
                except ScenarioError as e:
                    res.status, res.error = "unreadable", str(e)
                    proc.kill()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the runner stopped early: its last words say why
                finally:
                    if bar is not None:
                        bar.stop()
                try:
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                proc.wait()
            except BaseException:
                # an exception, Ctrl-C, SIGTERM: the runner must not outlive us
                _kill(proc)
                raise
            finally:
                for t in threads:
                    t.join()
            if "error" in status:
                raise status["error"]
            if res.status == "unreadable":
                return res
            last = status.get("last", "")
            if last.startswith("end "):
                res.events = int(last[4:])
            else:
                res.status = "failed"
                if last.startswith("error "):
                    msg = last[6:]
                    if msg.startswith("MemoryError"):
                        msg += " under heap %s" % (heap or "default")
                    res.error = "replay failed: " + msg
                else:
                    res.error = "replay failed: micropython exited with status %d%s" % (
                        proc.returncode, (": " + " | ".join(tail)) if tail else "")
                if tail and last.startswith("error ") and not last[6:].startswith("MemoryError"):
                    res.error += " | " + " | ".join(list(tail)[-3:])
    return res


def _kill(proc):
    # kill the runner and reap it, even when interrupted again meanwhile
    while True:
        try:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            try:
                proc.stdin.close()
            except OSError:
                pass
            return
        except BaseException:
            continue


def _feed(sc, pipe, bar):
    h = sc.header
    w = pipe.write
    if h.start is not None:
        w(b"0\tC\t%d\n" % h.start)
    w(_file_lines(0, CONFIG_FILE, json.dumps(h.config), None).encode())
    for p, text, hexd in h.files:
        w(_file_lines(0, p, text, hexd).encode())
    w(b"0\tS\n")
    buf = []
    n = 0
    for ev in sc.events():
        buf.append(_encode(ev))
        n += 1
        if len(buf) >= 512:
            w("".join(buf).encode())
            buf = []
            if bar is not None and n % 8192 == 0:
                bar.update(0, completed=sc.bytes)
    buf.append("%d\tE\n" % sc.end_ms())
    w("".join(buf).encode())


# ---- the command ----------------------------------------------------------
def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


# --heap: one definition for every command that runs the unix port
HEAP_MIN = unixport.HEAP_MIN
HEAP_MAX = unixport.HEAP_MAX
parse_heap = unixport.parse_heap


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (signum): the replay stops, its
    micropython process is killed."""

    def __init__(self, signum):
        BaseException.__init__(self, signum)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


def cmd_replay(args):
    try:
        heap = parse_heap(args.heap)
    except ValueError as e:
        print("microagent replay: --heap %s: %s" % (args.heap, e), file=sys.stderr)
        return 2
    try:
        lib = unixport.stage()
    except (RuntimeError, FileNotFoundError) as e:
        print("microagent: %s" % e, file=sys.stderr)
        return 2
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup stays nohup
                old[sig] = signal.signal(sig, _terminate)
    try:
        return _replay_all(args, heap, lib)
    except Terminated as e:
        sys.stdout.flush()
        print("microagent replay: stopped by %s" % signal.Signals(e.signum).name, file=sys.stderr)
        return 128 + e.signum
    except BrokenPipeError:
        # whoever read our output went away (`| head`): stop quietly, as a
        # program killed by SIGPIPE would, and let nothing flush there again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 128 + signal.SIGPIPE
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _replay_all(args, heap, lib):
    out = sys.stdout
    lock = threading.Lock()
    many = len(args.files) > 1
    counts = {"passed": 0, "failed": 0, "unreadable": 0}
    for path in args.files:
        if args.json:
            def on_line(line, path=path):
                with lock:
                    out.write(json.dumps({"file": path, "console": line}) + "\n")
        elif not args.check or args.verbose:
            if many:
                out.write("==> %s <==\n" % path)

            def on_line(line):
                out.write(line + "\n")
        else:
            on_line = None
        res = replay(path, heap, lib, on_line, check=args.check)
        out.flush()
        probs = res.problems()
        if res.status == "unreadable":
            counts["unreadable"] += 1
            verdict = "unreadable"
        elif res.ok(args.check):
            counts["passed"] += 1
            verdict = "pass" if args.check else "done"
        else:
            counts["failed"] += 1
            verdict = "fail"
        if args.json:
            d = {"file": path, "scenario": res.name, "result": verdict, "events": res.events,
                 "lines": res.lines, "findings": res.findings}
            if res.status == "unreadable":
                d["error"] = res.error
            else:
                d["problems"] = probs
            out.write(json.dumps(d) + "\n")
        elif verdict == "unreadable":
            print("ERROR " + res.error, file=out if args.check else sys.stderr)
        elif args.check:
            if verdict == "pass":
                out.write("PASS %s (%s, %s)\n" % (path, _plural(res.events, "event"), _plural(res.findings, "finding")))
            else:
                out.write("FAIL %s\n" % path)
                for p in probs:
                    for l in format_problem(p):
                        out.write(l + "\n")
        elif verdict == "fail":
            for p in probs:
                for l in format_problem(p):
                    print("microagent replay: %s:%s" % (path, l[1:]), file=sys.stderr)
        out.flush()
    if args.check and not args.json and many:
        out.write("%d scenarios: %d passed, %d failed, %d unreadable\n" % (
            len(args.files), counts["passed"], counts["failed"], counts["unreadable"]))
    out.flush()
    if counts["unreadable"]:
        return 2
    return 1 if counts["failed"] else 0


def add_parser(sub):
    r = sub.add_parser("replay", help="replay scenario files through the agent on the unix port",
                       description="Replay scenario files (JSON Lines, scenario.md) through the real agent on "
                                   "the MicroPython unix port with a virtual clock; print the agent's console "
                                   "lines, or with --check compare them with the header's expectations.")
    r.add_argument("files", nargs="+", metavar="FILE", help="scenario files (.jsonl)")
    r.add_argument("--check", action="store_true", help="compare with each header's expect/exact: exit 0 all "
                   "hold, 1 with a diff when not, 2 for a file that cannot be read")
    r.add_argument("--heap", default=unixport.DEFAULT_HEAP,
                   help="micropython heap size (default 64wK, a 64 KB board's; 'none' for the port's default)")
    r.add_argument("--json", action="store_true", help="JSON Lines: each console line, then one result per file")
    r.add_argument("-v", "--verbose", action="store_true", help="with --check: print the console lines too")
    r.set_defaults(func=cmd_replay)
