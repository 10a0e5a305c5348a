"""Runs every tests/portable/test_*.py case on the MicroPython unix port
(under a 64 KB board heap), the same cases pytest runs on CPython."""
import ast
from pathlib import Path

import pytest

from host_tools import unixport

PORTABLE = Path(__file__).resolve().parent / "portable"

RUNNER = r"""
import sys, gc
mod = __import__(sys.argv[1])
names = [n for n in dir(mod) if n.startswith("test_")]
names.sort()
for n in names:
    gc.collect()
    try:
        getattr(mod, n)()
        print("PASS", n)
    except Exception as e:
        print("FAIL", n, type(e).__name__, e)
"""


def _cases():
    for f in sorted(PORTABLE.glob("test_*.py")):
        tree = ast.parse(f.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield f.stem, node.name


_results = {}


def _run_module(mod, lib):
    if mod not in _results:
        env = unixport.env(lib)
        env["MICROPYPATH"] = "%s:%s:.frozen" % (PORTABLE, lib)
        import subprocess
        r = subprocess.run(unixport.command(RUNNER, [mod]), env=env, capture_output=True,
                           text=True, timeout=300, cwd=str(PORTABLE))
        res = {}
        for line in r.stdout.splitlines():
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[0] in ("PASS", "FAIL"):
                res[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
        _results[mod] = (res, r.stdout[-2000:] + r.stderr[-2000:])
    return _results[mod]


@pytest.mark.parametrize("mod,name", list(_cases()), ids=lambda v: v)
def test_on_micropython(mod, name, mp_lib):
    res, tail = _run_module(mod, mp_lib)
    assert name in res, "did not run on micropython:\n" + tail
    verdict, msg = res[name]
    assert verdict == "PASS", msg
