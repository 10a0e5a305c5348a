"""firmware/manifest.py freezes every board module and no unix-only one."""
import ast
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
UNIX_ONLY = {"unixmain.py", "procnet.py", "replay.py"}


def test_manifest_lists_every_board_module():
    tree = ast.parse((FIRMWARE / "manifest.py").read_text())
    call = next(n.value for n in tree.body if isinstance(n, ast.Expr))
    files = next(kw.value for kw in call.keywords if kw.arg == "files")
    listed = {e.value for e in files.elts}
    on_disk = {p.name for p in (FIRMWARE / "microagent").glob("*.py")}
    assert listed == on_disk - UNIX_ONLY
