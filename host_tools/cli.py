"""The `microagent` command line. Each subcommand lives in its own module
host_tools/cmd_<name>.py with add_parser(subparsers); a module that is not
there (yet) is simply not offered."""
import argparse
import importlib
import sys

# order shown in --help
COMMANDS = ("run", "replay", "sas", "cert", "import", "baseline")


def build_parser():
    """The argparse parser with every subcommand module that is present."""
    p = argparse.ArgumentParser(prog="microagent", description="On-device security micro-agent: host tools.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module("host_tools.cmd_" + name)
        except ModuleNotFoundError as e:
            if e.name != "host_tools.cmd_" + name:
                raise
            continue
        mod.add_parser(sub)
    return p


def main(argv=None):
    """Entry point of the `microagent` console script; returns the exit
    status (argv: list of str, default sys.argv[1:])."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
