"""agent core on the unix port: events/s through the socket collector and rules, heap"""
import json
import socket
import threading
from pathlib import Path

from host_tools import unixport

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = (ROOT / "boards" / "unix" / "microagent.json").read_text()

# The collector path without syscalls: MonitoredSocket around a stand-in
# socket whose connect/close do nothing, so the figure is the agent's cost.
API_LOOP = r"""
import gc, json, time, microagent
from microagent.sockwrap import MonitoredSocket
cfg = json.loads(%r)
class NullSock:
    def connect(self, a): pass
    def close(self): pass
N = %d
addrs = [("10.%%d.%%d.%%d" %% (i >> 16 & 255, i >> 8 & 255, i & 255), 443) for i in range(256)]
def loop(agent):
    t0 = time.ticks_us()
    for i in range(N):
        if agent is None:
            s = NullSock(); s.connect(addrs[i & 255]); s.close()
        else:
            s = MonitoredSocket(agent, NullSock()); s.connect(addrs[i & 255]); s.close()
    return time.ticks_diff(time.ticks_us(), t0)
a = microagent.start(cfg, out=lambda l: None)
off = loop(None)
on = loop(a)
print(json.dumps({"on_us": on, "off_us": off, "events": 2 * N}))
"""

REAL_LOOP = r"""
import json, socket, time, microagent
a = microagent.start(json.loads(%r), out=lambda l: None)
addr = socket.getaddrinfo("127.0.0.1", %d)[0][-1]
N = %d
def loop(make):
    t0 = time.ticks_us()
    for i in range(N):
        s = make(); s.connect(addr); s.close()
    return time.ticks_diff(time.ticks_us(), t0)
# alternate, best of three each: loopback TCP timing drifts with the
# kernel's TIME_WAIT table, so neither side may run only first or last
off = on = None
for r in range(3):
    t = loop(socket.socket)
    off = t if off is None else min(off, t)
    t = loop(microagent.socket)
    on = t if on is None else min(on, t)
print(json.dumps({"on_us": on, "off_us": off, "events": a.stats["events"]}))
"""

HEAP = r"""
import gc, json
gc.collect()
base = gc.mem_alloc()
import microagent
a = microagent.start(json.loads(%r), out=lambda l: None)
gc.collect()
after_start = gc.mem_alloc() - base
def run(n, public):
    for i in range(n):
        if public:
            ip = "%%d.%%d.%%d.%%d" %% (11 + (i >> 24 & 127), i >> 16 & 255, i >> 8 & 255, i & 255)
        else:
            ip = "10.%%d.%%d.%%d" %% (i >> 16 & 255, i >> 8 & 255, i & 255)
        a.connection_opened(ip, 443)
        a.connection_closed()
res = {"after_start": after_start}
for public in (False, True):
    run(1000, public)          # warm-up: fills the fixed fold table
    gc.collect()
    m0 = gc.mem_alloc()
    run(100000, public)
    gc.collect()
    res["growth_public" if public else "growth_private"] = gc.mem_alloc() - m0
res["findings"] = a.stats["findings"]
print(json.dumps(res))
"""


def _mp(code, timeout=600):
    r = unixport.run_code(code, timeout=timeout)
    if r.returncode:
        raise RuntimeError(r.stderr.strip() or r.stdout.strip())
    return json.loads(r.stdout.strip().splitlines()[-1])


def run():
    rows = []
    n = 100000
    api = _mp(API_LOOP % (DEFAULT_CONFIG, n))
    rows.append(("socket collector + rules (stand-in socket)", api["events"] / (api["on_us"] / 1e6), "events/s",
                 "connect+close, default config, 64wK heap"))
    rows.append(("  same loop, agent disabled", api["events"] / (api["off_us"] / 1e6), "events/s", ""))
    rows.append(("  cost ratio (agent on / off)", api["on_us"] / api["off_us"], "x", ""))
    rows.append(("  agent cost per event", (api["on_us"] - api["off_us"]) / api["events"], "us", ""))

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    stop = []

    def drain():
        srv.settimeout(0.5)
        while not stop:
            try:
                srv.accept()[0].close()
            except OSError:
                pass
    th = threading.Thread(target=drain, daemon=True)
    th.start()
    real_n = 500
    try:
        real = _mp(REAL_LOOP % (DEFAULT_CONFIG, srv.getsockname()[1], real_n))
    finally:
        stop.append(1)
        th.join(2)
        srv.close()
    if real["events"] != 3 * 2 * real_n:
        raise RuntimeError("watched loop reported %d events, expected %d" % (real["events"], 6 * real_n))
    rows.append(("real loopback TCP connect+close, watched", 2 * real_n / (real["on_us"] / 1e6), "events/s",
                 "best of 3 x %d connections, alternating" % real_n))
    rows.append(("  same with plain socket.socket", 2 * real_n / (real["off_us"] / 1e6), "events/s", ""))
    rows.append(("  ratio (watched / plain time)", real["on_us"] / real["off_us"], "x", ""))

    heap = _mp(HEAP % DEFAULT_CONFIG)
    rows.append(("heap: agent after start, default config", heap["after_start"], "bytes", "gc.mem_alloc delta incl. imports"))
    rows.append(("heap growth, 100k connect/close, distinct private IPs", heap["growth_private"], "bytes",
                 "after gc.collect(); must be 0"))
    rows.append(("heap growth, 100k connect/close, distinct public IPs", heap["growth_public"], "bytes",
                 "each one an alert; fold table full; must be 0"))
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
