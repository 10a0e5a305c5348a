"""Run every benchmark module (bench/bench_*.py) and print its figures.
`python -m bench NAME...` runs only those modules."""
import importlib
import pkgutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv):
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if n[6:] in argv or n in argv]
    failed = 0
    for name in names:
        t0 = time.time()
        mod = importlib.import_module("bench." + name)
        print("== %s (%s)" % (name[6:], (mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else ""), flush=True)
        try:
            rows = mod.run()
        except Exception as e:  # one broken bench must not hide the others
            failed += 1
            print("   FAILED: %s: %s" % (type(e).__name__, e), flush=True)
            continue
        for metric, value, unit, note in rows:
            v = ("%.3g" % value) if isinstance(value, float) else str(value)
            print("   %-52s %14s %-10s %s" % (metric, v, unit, note), flush=True)
        print("   (%.1f s)" % (time.time() - t0), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
