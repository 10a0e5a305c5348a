"""`microagent run`: the agent on the unix port watching this machine."""
import os
import signal
import subprocess
import sys

from . import unixport

CODE = "import sys\nfrom microagent import unixmain\nunixmain.main(sys.argv[1:])"


def cmd_run(args):
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
    proc = subprocess.Popen(unixport.command(CODE, argv, args.heap), env=unixport.env(lib))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # the terminal sent SIGINT to the whole group: let the agent finish
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        return 0


def add_parser(sub):
    r = sub.add_parser("run", help="run the agent on the unix port, watching this machine's connections")
    r.add_argument("--config", default="boards/unix/microagent.json", help="baseline configuration (config.md)")
    r.add_argument("--duration", type=float, help="stop after S seconds (default: until Ctrl-C)")
    r.add_argument("--interval", type=float, default=1.0, help="seconds between /proc/net polls (default 1)")
    r.add_argument("--heap", default=unixport.DEFAULT_HEAP, help="micropython heap size (default 64wK, a 64 KB board)")
    r.add_argument("--max-connections", type=int, default=512,
                   help="most connections tracked at once; more are counted, not tracked (default 512)")
    r.add_argument("--proc", help=argparse_suppress())
    r.set_defaults(func=cmd_run)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS
