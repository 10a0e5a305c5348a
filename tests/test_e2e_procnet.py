"""End to end: `microagent run` (the real agent on the unix port, watching
/proc/net) while real loopback connections open and close. Runs in a
network namespace of its own so the machine's other sockets cannot change
the counts; the namespace has only loopback, so nothing leaves the host."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CONFIG = {
    "deviceId": "e2e-host",
    "timeWindowRules": [{"ruleType": "ActiveConnectionsNotInAllowedRange", "isEnabled": True,
                         "minThreshold": 0, "maxThreshold": 3, "timeWindowSize": "PT15S"}],
    "allowlistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                        "allowlistValues": ["127.0.0.1", "::1"]}],
    "threatIntel": {"ips": ["127.0.0.66"]},
}

# Phases, each held long enough for several polls, closed before the next.
DRIVER = r"""
import socket, time
HOLD = 0.8
def pair(listen_addr, family=socket.AF_INET, dest=None, src=("127.0.0.1", 0)):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen_addr); srv.listen(8)
    return srv
def hold_and_close(socks):
    time.sleep(HOLD)
    for s in socks: s.close()
    time.sleep(0.4)
# 1: threat-intel address, outbound
srv = pair(("127.0.0.66", 7000))
c = socket.socket(); c.bind(("127.0.0.1", 0)); c.connect(("127.0.0.66", 7000)); a, _ = srv.accept()
hold_and_close([c, a, srv])
# 2: address outside the allow list
srv = pair(("127.0.0.77", 7001))
c = socket.socket(); c.bind(("127.0.0.1", 0)); c.connect(("127.0.0.77", 7001)); a, _ = srv.accept()
hold_and_close([c, a, srv])
# 3: three allowed connections at once: 6 sockets (both ends are on this host)
srv = pair(("127.0.0.1", 7002))
cs = []
for i in range(3):
    c = socket.socket(); c.connect(("127.0.0.1", 7002)); cs.append(c); cs.append(srv.accept()[0])
hold_and_close(cs + [srv])
# 4: a connected UDP socket to the threat-intel address
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); u.connect(("127.0.0.66", 5353))
hold_and_close([u])
# 5: IPv6 socket reaching the threat-intel address as ::ffff:127.0.0.66 (tcp6)
srv = pair(("127.0.0.66", 7004))
c = socket.socket(socket.AF_INET6); c.connect(("::ffff:127.0.0.66", 7004)); a, _ = srv.accept()
hold_and_close([c, a, srv])
# 6: plain IPv6 loopback, allowed
srv6 = socket.socket(socket.AF_INET6); srv6.bind(("::1", 7005)); srv6.listen(1)
c = socket.socket(socket.AF_INET6); c.connect(("::1", 7005)); a, _ = srv6.accept()
hold_and_close([c, a, srv6])
print("driver done", flush=True)
"""


def _common(t):
    return {"name": {"suspicious_ip": "Communication with a suspicious IP address detected",
                     "ConnectionToIpNotAllowed": "Outbound connection to an IP that isn't allowed",
                     "ActiveConnectionsNotInAllowedRange": "Number of active connections is not in the allowed range"}[t],
            "kind": "alert", "source": "device",
            "severity": "high" if t == "suspicious_ip" else "low", "device": "e2e-host"}


def _alert(t, count, details):
    d = {"type": t, "count": count, "details": details}
    d.update(_common(t))
    return d


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace (CI runs as root)")
    name = "microagent-e2e-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name])


def test_alerts_for_real_connections(netns, tmp_path, mp_lib):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(CONFIG))
    agent = subprocess.Popen(netns + [str(BIN / "microagent"), "run", "--config", str(cfg),
                                      "--duration", "17", "--interval", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    first = agent.stdout.readline()
    assert first.startswith("microagent: watching /proc/net for device e2e-host"), first + agent.stderr.read()
    drv = subprocess.run(netns + [sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=60)
    assert drv.stdout == "driver done\n", drv.stderr
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    lines = [l for l in out.splitlines() if l.startswith("ALERT ")]
    got = []
    for l in lines:
        a = json.loads(l[6:])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", a.pop("time"))
        got.append(a)
    out_ = "out"
    assert got == [
        _alert("suspicious_ip", 1, {"remote": "127.0.0.66", "port": 7000, "direction": out_}),
        _alert("ConnectionToIpNotAllowed", 1, {"remote": "127.0.0.66", "port": 7000, "direction": out_}),
        _alert("ConnectionToIpNotAllowed", 1, {"remote": "127.0.0.77", "port": 7001, "direction": out_}),
        _alert("suspicious_ip", 1, {"remote": "127.0.0.66", "port": 5353, "direction": out_}),
        _alert("ConnectionToIpNotAllowed", 1, {"remote": "127.0.0.66", "port": 5353, "direction": out_}),
        _alert("suspicious_ip", 1, {"remote": "127.0.0.66", "port": 7004, "direction": out_}),
        _alert("ConnectionToIpNotAllowed", 1, {"remote": "127.0.0.66", "port": 7004, "direction": out_}),
        _alert("ActiveConnectionsNotInAllowedRange", 1, {"value": 6, "min": 0, "max": 3, "window_s": 15}),
    ], out
    # 6 phases, each pair opened and closed: 2+2+6+1+2+2 opens and as many closes
    assert out.splitlines()[-1] == "microagent: stopped (30 events, 8 findings)"


def test_bad_config_exits_2_with_one_line(tmp_path, mp_lib):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"deviceId": "x", "threatIntel": {"ips": ["010.1.1.1"]}}))
    r = subprocess.run([str(BIN / "microagent"), "run", "--config", str(cfg), "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout + r.stderr == \
        "microagent: config error: threatIntel.ips[0]: leading zero in IPv4 part (octal is ambiguous) (got '010.1.1.1')\n"
    cfg.write_text("{not json")
    r = subprocess.run([str(BIN / "microagent"), "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout.startswith("microagent: config error: %s: not valid JSON" % cfg) and r.stdout.count("\n") == 1
    assert "Traceback" not in r.stdout + r.stderr
    r = subprocess.run([str(BIN / "microagent"), "run", "--config", str(tmp_path / "missing.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout.startswith("microagent: config error: ") and r.stdout.count("\n") == 1


def test_ctrl_c_stops_cleanly(tmp_path, mp_lib):
    import signal
    proc = subprocess.Popen([str(BIN / "microagent"), "run", "--config", str(ROOT / "boards/unix/microagent.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                            start_new_session=True)
    assert proc.stdout.readline().startswith("microagent: watching /proc/net for device unix-host")
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)   # what a terminal's Ctrl-C does: the whole group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err == ""
    assert re.fullmatch(r"microagent: stopped \(\d+ events, \d+ findings\)\n", out.splitlines(True)[-1])


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_to_the_host_process_alone_stops_cleanly(sig, mp_lib):
    import signal
    proc = subprocess.Popen([str(BIN / "microagent"), "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/", start_new_session=True)
    assert proc.stdout.readline().startswith("microagent: watching /proc/net for device unix-host")
    proc.send_signal(getattr(signal, sig))   # `kill` of the microagent process only, not its group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert re.fullmatch(r"microagent: stopped \(\d+ events, \d+ findings\)\n", out.splitlines(True)[-1])


@pytest.mark.parametrize("argv,message", [
    (["--interval", "-1"], "argument --interval: must be seconds from 0.001 to 3600, got '-1'"),
    (["--interval", "nan"], "argument --interval: must be seconds from 0.001 to 3600, got 'nan'"),
    (["--duration", "-1"], "argument --duration: must be seconds from 0 to 1e+09, got '-1'"),
    (["--max-connections", "0"], "argument --max-connections: must be a whole number from 1 to 65536, got '0'"),
    (["--heap", "2K"], "argument --heap: 2048 bytes is outside 4K..1G"),
])
def test_bad_arguments_exit_2(argv, message, mp_lib):
    r = subprocess.run([str(BIN / "microagent"), "run"] + argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == "microagent run: error: " + message


def test_oversized_config_and_heap_exit_2(tmp_path, mp_lib):
    cfg = tmp_path / "big.json"
    cfg.write_text(json.dumps({"deviceId": "x", "threatIntel": {"ips": ["198.51.%d.%d" % (i // 250, i % 250)
                                                                      for i in range(1000)]}}))
    r = subprocess.run([str(BIN / "microagent"), "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (2, "microagent: config error: %s: too large for this device's heap "
                                                     "(a 64 KB board holds a few hundred threat-intel entries)\n" % cfg, "")
    r = subprocess.run([str(BIN / "microagent"), "run", "--max-connections", "65536"], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert (r.returncode, r.stdout) == (2, "microagent: --max-connections 65536 does not fit in this heap; "
                                           "give fewer or a larger --heap\n")
    cfg.write_bytes(b'{"deviceId": "caf\xe9"}')
    r = subprocess.run([str(BIN / "microagent"), "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (2, "microagent: config error: %s: not valid JSON (or not UTF-8 text)\n" % cfg)


def test_certificate_paths_are_relative_to_the_config_and_fit_with_the_socket_table(tmp_path, mp_lib):
    # regression: from another directory a config's certificate was not
    # found; and certificates beside the default 512-socket table ran the
    # 64 KB heap out ("--max-connections 512 does not fit")
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-01")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(9).not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cfg.json").write_text(json.dumps({"deviceId": "dev-01", "certificates": [{"path": "c.pem"}]}))
    r = subprocess.run([str(BIN / "microagent"), "run", "--config", str(tmp_path / "cfg.json"), "--duration", "0.5"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr
    alerts = [json.loads(l[6:]) for l in r.stdout.splitlines() if l.startswith("ALERT ")]
    assert [(a["type"], a["details"]["path"], a["details"]["subject"]) for a in alerts] == [
        ("cert_expired", "c.pem", "dev-01")]


def test_duration_stops_by_itself(mp_lib):
    t0 = time.monotonic()
    r = subprocess.run([str(BIN / "microagent"), "run", "--duration", "1.5", "--interval", "0.5"],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "microagent: watching /proc/net for device unix-host (1 window rules, poll 0.5s)"
    assert 1.4 < time.monotonic() - t0 < 30
