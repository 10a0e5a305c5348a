"""microagent.utf8 against CPython's UTF-8 codec (the reference): hypothesis
on CPython, and a seeded batch on the unix port, where the built-in decoder
would accept overlong forms, surrogates and code points above U+10FFFF."""
import binascii
import random

from hypothesis import given, settings, strategies as st

from microagent import utf8

# bytes near every boundary of RFC 3629's table, so short random strings
# hit the interesting cases often
EDGES = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
         0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
edgy = st.lists(st.one_of(st.sampled_from(EDGES), st.integers(0, 255)), max_size=12).map(bytes)


def reference(b):
    try:
        b.decode("utf-8")
        return -1
    except UnicodeDecodeError as e:
        return e.start


@settings(max_examples=3000)
@given(st.one_of(edgy, st.binary(max_size=16), st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_bad_matches_cpython(b):
    assert utf8.bad(b, 0, len(b)) == reference(b)
    assert utf8.bad(b"x" + b + b"y", 1, len(b) + 1) == (reference(b) + 1 if reference(b) >= 0 else -1)


MP_BATCH = r"""
import sys, binascii
from microagent import utf8
for line in sys.stdin:
    b = binascii.unhexlify(line.strip())
    print(utf8.bad(b, 0, len(b)))
"""


def test_unix_port_matches_cpython(mp):
    rnd = random.Random(20240101)
    batch = []
    for _ in range(3000):
        n = rnd.randrange(0, 9)
        batch.append(bytes(rnd.choice(EDGES) if rnd.random() < 0.7 else rnd.randrange(256) for _ in range(n)))
    r = mp(MP_BATCH, input="\n".join(binascii.hexlify(b).decode() for b in batch) + "\n")
    assert r.returncode == 0, r.stderr
    got = [int(x) for x in r.stdout.split()]
    assert got == [reference(b) for b in batch]
    assert sum(1 for g in got if g >= 0) > 1000  # the batch is mostly ill-formed
