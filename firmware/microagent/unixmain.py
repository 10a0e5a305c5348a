# `microagent run` on the unix port: the agent watching this machine's
# connections through /proc/net, printing alerts as they happen.
import sys
import time

from .agent import Agent
from .procnet import ProcNet


def _usage(msg):
    print("microagent: " + msg)
    sys.exit(2)


def main(argv):
    """argv: [--config PATH] [--duration S] [--interval S] [--proc DIR]
    [--max-connections N].
    Exits 0 when done or on Ctrl-C, 2 for bad arguments or configuration."""
    path = "microagent.json"
    duration = -1  # until Ctrl-C
    interval = 1.0
    root = "/proc/net"
    limit = 512
    i = 0
    while i < len(argv):
        a = argv[i]
        if i + 1 >= len(argv):
            _usage("option %s needs a value" % a)
        v = argv[i + 1]
        try:
            if a == "--config":
                path = v
            elif a == "--duration":
                duration = float(v)
            elif a == "--interval":
                interval = float(v)
            elif a == "--proc":
                root = v
            elif a == "--max-connections":
                limit = int(v)
            else:
                _usage("unknown option " + a)
        except ValueError:
            _usage("option %s needs a number" % a)
        i += 2
    if not interval > 0 or interval > 3600:
        _usage("--interval must be more than 0 and at most 3600 seconds")
    if duration != -1 and not duration >= 0:
        _usage("--duration must be 0 or more seconds")
    if not 1 <= limit <= 65536:
        _usage("--max-connections must be 1 to 65536")
    agent = Agent()
    try:
        # the socket table first, while the heap is still in one piece
        pn = ProcNet(agent, root, limit)
    except MemoryError:
        _usage("--max-connections %d does not fit in this heap; give fewer or a larger --heap" % limit)
    try:
        warnings = agent.load(path)
    except OSError as e:
        _usage("config error: %s: cannot read (%s)" % (path, e))
    except ValueError as e:
        _usage("config error: %s" % (str(e) or type(e).__name__))
    t0 = time.ticks_ms()
    try:
        # the banner is inside: a Ctrl-C right after it must stop cleanly too
        print("microagent: watching %s for device %s (%d window rules, poll %gs)" % (
            root, agent.device, len(agent.cfg.windows), interval))
        while duration < 0 or time.ticks_diff(time.ticks_ms(), t0) < duration * 1000:
            pn.poll()
            agent.poll()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    try:
        _summary(agent, pn)
    except KeyboardInterrupt:  # a second Ctrl-C: one more try, then go
        _summary(agent, pn)


def _summary(agent, pn):
    agent.flush()
    if pn.skipped:
        print("microagent: /proc/net: %d unparseable lines skipped" % pn.skipped)
    if pn.untracked:
        print("microagent: /proc/net: up to %d connections beyond --max-connections %d were not tracked" % (pn.untracked, pn.limit))
    print("microagent: stopped (%d events, %d findings)" % (agent.stats["events"], agent.stats["findings"]))
