import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# CPython runs the firmware from source; the unix port gets the staged .mpy.
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def mp_lib():
    """The firmware staged as .mpy for the unix port (a board's /lib)."""
    from host_tools import unixport
    return unixport.stage()


@pytest.fixture(scope="session")
def mp(mp_lib):
    """mp(code, *args, heap='64wK', timeout=60) -> CompletedProcess: run
    MicroPython source on the unix port with the staged firmware."""
    from host_tools import unixport

    def run(code, *args, heap=unixport.DEFAULT_HEAP, timeout=60, input=None, cwd=None):
        return unixport.run_code(code, args, heap=heap, lib=mp_lib, timeout=timeout, input=input, cwd=cwd)
    return run
