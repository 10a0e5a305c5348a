"""SAS token parse + signature check: µs per token on the unix port vs CPython.

The device's code (firmware/microagent/sas.py, HMAC from hashlib.sha256)
runs on the MicroPython unix port under a 64 KB board heap; the same run
times CPython's stdlib doing the same job (urllib.parse.unquote,
base64.b64decode, hmac.new, hmac.compare_digest) and the firmware module on
CPython. Also: heap bytes one parse + verify allocates on the unix port.
"""
import base64
import hashlib
import hmac
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU="
TOKEN = ("SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01"
         "&sig=OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D&se=1900000000")
N = 2000

MP_CODE = r"""
import sys, time, gc
gc.collect()
m0 = gc.mem_alloc()
from microagent import sascheck
gc.collect()
m1 = gc.mem_alloc()
from microagent import sas, hmacsha
tok = sys.argv[1]
key = sas.decode_key(sys.argv[2])
n = int(sys.argv[3])
assert sas.verify(sas.parse(tok), key)
t0 = time.ticks_us()
for i in range(n):
    t = sas.parse(tok)
    ok = sas.verify(t, key)
t1 = time.ticks_us()
msg = b"contoso-hub.azure-devices.net%2Fdevices%2Fdev-01\n1900000000"
for i in range(n):
    hmacsha.hmac_sha256(key, msg)
t2 = time.ticks_us()
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
t = sas.parse(tok)
ok = sas.verify(t, key)
a1 = gc.mem_alloc()
gc.enable()
print(time.ticks_diff(t1, t0) / n, time.ticks_diff(t2, t1) / n, a1 - a0, m1 - m0)
"""


def _cpython_stdlib(token, key_b64):
    # what a CPython program would write: split, unquote, b64decode, hmac
    fields = dict(p.split("=", 1) for p in token[len("SharedAccessSignature "):].split("&"))
    sig = base64.b64decode(urllib.parse.unquote(fields["sig"]), validate=True)
    key = base64.b64decode(key_b64, validate=True)
    mac = hmac.new(key, (fields["sr"] + "\n" + fields["se"]).encode(), hashlib.sha256).digest()
    return hmac.compare_digest(mac, sig) and int(fields["se"]) > 0


def _per_call_us(fn, n=N):
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def run():
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "firmware"))
    from host_tools import unixport
    from microagent import sas

    r = unixport.run_code(MP_CODE, [TOKEN, KEY, str(N)])
    if r.returncode:
        raise RuntimeError("micropython: " + r.stderr.strip()[-400:])
    mp_us, mp_hmac_us, mp_bytes, mp_import = r.stdout.split()
    mp_us, mp_hmac_us, mp_bytes, mp_import = float(mp_us), float(mp_hmac_us), int(mp_bytes), int(mp_import)

    assert _cpython_stdlib(TOKEN, KEY)
    ref_us = _per_call_us(lambda: _cpython_stdlib(TOKEN, KEY))
    key = sas.decode_key(KEY)
    fw_us = _per_call_us(lambda: sas.verify(sas.parse(TOKEN), key))
    msg = b"contoso-hub.azure-devices.net%2Fdevices%2Fdev-01\n1900000000"
    kb = base64.b64decode(KEY)
    ref_hmac_us = _per_call_us(lambda: hmac.new(kb, msg, hashlib.sha256).digest())
    return [
        ("parse + verify, unix port (firmware sas.py)", mp_us, "us/token", "heap 64wK, %d tokens" % N),
        ("parse + verify, CPython stdlib (urllib/base64/hmac)", ref_us, "us/token", "same token"),
        ("parse + verify, CPython running firmware sas.py", fw_us, "us/token", "same source as the board"),
        ("unix port / CPython stdlib", mp_us / ref_us, "x", "slowdown of the device code on the port"),
        ("HMAC-SHA256 only, unix port (hmacsha)", mp_hmac_us, "us/call", "61-byte message, 32-byte key"),
        ("HMAC-SHA256 only, CPython hmac", ref_hmac_us, "us/call", "same inputs"),
        ("heap allocated per parse + verify, unix port", mp_bytes, "bytes", "gc.mem_alloc delta, gc disabled"),
        ("heap kept by importing sascheck (+sas, hmacsha) .mpy", mp_import, "bytes", "64-bit port; frozen, the bytecode stays in flash"),
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
