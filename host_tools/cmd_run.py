"""`microagent run`: the agent on the unix port watching this machine."""
import argparse
import os
import signal
import subprocess
import sys

from . import unixport

CODE = "import sys\nfrom microagent import unixmain\nunixmain.main(sys.argv[1:])"


def cmd_run(args):
    """Run the agent on the unix port until --duration ends or a signal;
    returns its exit status (0 done, 2 bad arguments or configuration)."""
    try:
        lib = unixport.stage()
    except (RuntimeError, FileNotFoundError) as e:
        print("microagent: %s" % e, file=sys.stderr)
        return 2
    argv = ["--config", os.path.abspath(args.config), "--interval", str(args.interval)]
    if args.duration is not None:
        argv += ["--duration", str(args.duration)]
    argv += ["--max-connections", str(args.max_connections)]
    if args.proc:
        argv += ["--proc", os.path.abspath(args.proc)]
    # the config's folder is the device's filesystem root, as on a board:
    # certificate paths in it are relative to where microagent.json lies
    proc = subprocess.Popen(unixport.command(CODE, argv, args.heap), env=unixport.env(lib),
                            cwd=os.path.dirname(os.path.abspath(args.config)))

    stopping = []

    def stop(signum, frame):
        # Ctrl-C reaches the whole group, but `kill -INT/-TERM <this pid>`
        # only us: pass it on as SIGINT, which the agent turns into a clean
        # stop (flush folded repeats, print the summary)
        stopping.append(signum)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    old_term = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:
                stop(signal.SIGINT, None)
                try:
                    rc = proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    return 1
                break
        # the PyPI unix port runs MicroPython inside CPython, whose wrapper
        # exits 130 after a SIGINT even when the agent stopped cleanly
        if stopping and rc in (130, -signal.SIGINT):
            return 0
        return rc
    finally:
        signal.signal(signal.SIGTERM, old_term)


def _number(kind, low, high, text, whole=False):
    try:
        v = int(text) if whole else float(text)
    except ValueError:
        v = None
    if v is None or not low <= v <= high:
        raise argparse.ArgumentTypeError("must be %s from %g to %g, got %r" % (kind, low, high, text))
    return v


def _interval(text):
    return _number("seconds", 0.001, 3600, text)


def _duration(text):
    return _number("seconds", 0, 10**9, text)


def _heap(text):
    try:
        return unixport.parse_heap(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _count(text):
    return _number("a whole number", 1, 65536, text, whole=True)


def add_parser(sub):
    """Register `microagent run` on an argparse subparsers object."""
    r = sub.add_parser("run", help="run the agent on the unix port, watching this machine's connections")
    r.add_argument("--config", default=str(unixport.REPO / "boards" / "unix" / "microagent.json"),
                   help="baseline configuration (config.md; default boards/unix/microagent.json)")
    r.add_argument("--duration", type=_duration, help="stop after S seconds (default: until Ctrl-C)")
    r.add_argument("--interval", type=_interval, default=1.0, help="seconds between /proc/net polls, up to 3600 (default 1)")
    r.add_argument("--heap", type=_heap, default=unixport.DEFAULT_HEAP, help="micropython heap size (default 64wK, a 64 KB board)")
    r.add_argument("--max-connections", type=_count, default=512,
                   help="most sockets tracked at once (default 512); beyond it sockets are neither checked nor counted as active")
    r.add_argument("--proc", help=argparse.SUPPRESS)  # tests: another /proc/net
    r.set_defaults(func=cmd_run)
