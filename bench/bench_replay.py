"""replay throughput on the unix port and peak RSS of a whole replay

A scenario of N events is generated into a temporary file (streamed, never
held), with every rule kind configured (seven time-window rules, an allow
list, a threat-intel list) and a mix of events (C2D, D2C, direct methods,
twin patches, rejections, CONNACK/SUBACK, connections opened and closed).
`microagent replay FILE` (the CLI's code path, 64wK heap) runs it in a
child Python process that reports its own peak RSS (the host: reading,
validating, piping; RUSAGE_SELF ru_maxrss) and that of the micropython
process running the agent (VmHWM from /proc, polled every 0.2 s while it
runs; VmHWM only grows, so the last poll is its peak). Both must stay flat from
100,000 to 1,000,000 events: neither side holds the scenario.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONFIG = {
    "deviceId": "dev-01",
    "timeWindowRules": [
        {"ruleType": rt, "isEnabled": True, "minThreshold": 0, "maxThreshold": hi, "timeWindowSize": "PT1M"}
        for rt, hi in (("ActiveConnectionsNotInAllowedRange", 6), ("MqttC2DMessagesNotInAllowedRange", 700),
                       ("MqttD2CMessagesNotInAllowedRange", 400), ("DirectMethodInvokesNotInAllowedRange", 60),
                       ("MqttC2DRejectedMessagesNotInAllowedRange", 60), ("TwinUpdatesNotInAllowedRange", 60),
                       ("UnauthorizedOperationsNotInAllowedRange", 10))],
    "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                        "allowlistValues": ["10.0.0.0/8", "20.0.0.0/8", "2001:db8::/32"]}],
    "threatIntel": {"ips": ["198.51.100.23", "203.0.113.0/24"]},
}

RUNNER = r"""
import os, resource, sys, threading, time
from host_tools import cli

peak = [0]
done = threading.Event()

def status(pid):
    try:
        with open("/proc/%s/status" % pid) as f:
            return dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    except OSError:
        return None

def watch():
    # the micropython child's own peak RSS (VmHWM of its exec'd image; the
    # children's ru_maxrss would count the host's pages copied at fork)
    me = str(os.getpid())
    child = None
    while not done.is_set():
        if child is None:
            for pid in os.listdir("/proc"):
                st = status(pid) if pid.isdigit() else None
                if st and st.get("PPid", "").strip() == me and st.get("Name", "").strip() == "micropython":
                    child = pid
                    break
        else:
            st = status(child)
            if st is not None and "VmHWM" in st:
                peak[0] = max(peak[0], int(st["VmHWM"].split()[0]))
        time.sleep(0.01 if child is None else 0.2)

t = threading.Thread(target=watch, daemon=True)
t.start()
rc = cli.main(["replay", "--json", sys.argv[1]])
done.set()
t.join()
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RSS", rc, me, peak[0], file=sys.stderr)
"""


def generate(path, n):
    """Write an n-event scenario to `path`, 20 events a second, line by line."""
    topics = ("devices/dev-01/messages/devicebound/%24.mid=1", "devices/dev-01/messages/events/",
              "$iothub/methods/POST/reboot/?$rid=7", "$iothub/twin/PATCH/properties/desired/?$version=3")
    with open(path, "w") as f:
        f.write(json.dumps({"scenario": "bench", "device": "dev-01", "start": "2026-06-01T00:00:00Z",
                            "config": CONFIG}) + "\n")
        open_ids = []
        cid = 0
        for i in range(n):
            t = "%d.%02d" % (i // 20, (i % 20) * 5)
            k = i % 20
            if k < 9:
                line = '{"t": %s, "event": "mqtt_message", "topic": "%s", "bytes": 64}' % (t, topics[0])
            elif k < 14:
                line = '{"t": %s, "event": "mqtt_publish", "topic": "%s", "bytes": 120}' % (t, topics[1])
            elif k == 14:
                line = '{"t": %s, "event": "mqtt_message", "topic": "%s", "bytes": 2}' % (t, topics[2])
            elif k == 15:
                line = '{"t": %s, "event": "mqtt_message", "topic": "%s", "bytes": 40}' % (t, topics[3])
            elif k == 16:
                line = '{"t": %s, "event": "c2d_reject"}' % t
            elif k == 17:
                line = ('{"t": %s, "event": "mqtt_connack", "rc": %d}' % (t, 5 if i % 2000 == 17 else 0))
            elif k == 18 or not open_ids:
                cid += 1
                open_ids.append(cid)
                remote = "203.0.113.9" if cid % 500 == 0 else "20.1.%d.%d" % (cid // 250 % 250, cid % 250)
                line = '{"t": %s, "event": "connect", "id": %d, "remote": "%s", "port": 8883}' % (t, cid, remote)
            else:
                line = '{"t": %s, "event": "close", "id": %d}' % (t, open_ids.pop(0))
            f.write(line + "\n")


def replay(path):
    """(seconds, events, host peak RSS KiB, micropython peak RSS KiB, findings)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", RUNNER, str(path)], capture_output=True, text=True, env=env,
                       cwd=str(REPO), timeout=3600)
    dt = time.perf_counter() - t0
    rss = [l for l in r.stderr.splitlines() if l.startswith("RSS ")]
    if not rss:
        raise RuntimeError("replay failed: %s" % r.stderr[-500:])
    _, rc, me, kids = rss[-1].split()
    last = json.loads(r.stdout.splitlines()[-1])
    if rc != "0" or last["result"] != "done":
        raise RuntimeError("replay failed: %s" % last)
    return dt, last["events"], int(me), int(kids), last["findings"]


def run():
    from host_tools import unixport
    unixport.stage()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as d:
        for n in (100000, 1000000):
            p = Path(d) / ("s%d.jsonl" % n)
            generate(p, n)
            size = p.stat().st_size
            dt, events, host, mp, findings = replay(p)
            assert events == n, (events, n)
            label = "%s events" % format(n, ",")
            rows += [
                ("replay throughput, %s (unix port, 64wK heap)" % label, events / dt, "events/s",
                 "%.1f s wall, %.0f MB file, %d findings" % (dt, size / 1e6, findings)),
                ("peak RSS host CPython, %s" % label, host / 1024.0, "MB", "reading, validating, piping"),
                ("peak RSS micropython, %s" % label, mp / 1024.0, "MB", "the agent under replay"),
                ("peak RSS whole replay, %s" % label, (host + mp) / 1024.0, "MB", "host + micropython"),
            ]
            p.unlink()
    return rows
