"""Cross-checks of the device's HMAC-SHA256 and SAS token code against
CPython's hmac/base64/urllib (the reference), with hypothesis on CPython and
seeded random batches on the MicroPython unix port (64 KB heap)."""
import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import urllib.parse

from hypothesis import given, settings, strategies as st

from host_tools import cmd_sas
from microagent import hmacsha, sas

PREFIX = "SharedAccessSignature "
# IoT Hub device id characters (IoT Hub identity registry docs)
DEVICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.%_*?!(),:=@$'"
hubs = st.from_regex(r"[a-z][a-z0-9-]{1,20}\.azure-devices\.net", fullmatch=True)
devices = st.text(DEVICE_CHARS, min_size=1, max_size=128)
keys = st.binary(min_size=1, max_size=96)
policies = st.one_of(st.none(), st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True))


def ref_hmac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def ref_verify(token, key):
    """CPython's own reading of a token the device accepted: fields split on
    '&', values percent-decoded with urllib (no '+' to space), sig base64
    with validation; True/False for the signature."""
    assert token.startswith(PREFIX)
    fields = dict(part.split("=", 1) for part in token[len(PREFIX):].split("&"))
    sig = base64.b64decode(urllib.parse.unquote(fields["sig"]), validate=True)
    return hmac.compare_digest(ref_hmac(key, (fields["sr"] + "\n" + fields["se"]).encode()), sig)


# ---- HMAC-SHA256 -------------------------------------------------------------

@given(keys | st.binary(max_size=200), st.binary(max_size=600), st.integers(0, 600))
@settings(max_examples=400)
def test_hmac_matches_cpython(key, msg, cut):
    assert hmacsha.hmac_sha256(key, msg) == ref_hmac(key, msg)
    h = hmacsha.HMAC(key, msg[:cut])
    h.update(msg[cut:])
    assert h.digest() == ref_hmac(key, msg)


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_equal_matches_compare_digest(a, b):
    assert hmacsha.equal(a, b) == hmac.compare_digest(a, b)


HMAC_BATCH = r"""
import sys, binascii
from microagent import hmacsha
for line in sys.stdin:
    k, m = line.split()
    k = binascii.unhexlify(k) if k != "-" else b""
    m = binascii.unhexlify(m) if m != "-" else b""
    print(binascii.hexlify(hmacsha.hmac_sha256(k, m)).decode())
"""


def test_hmac_random_batch_on_unix_port(mp):
    rnd = random.Random(4231)
    cases = []
    for i in range(300):
        # key lengths around the 64-byte block edge and beyond
        kl = rnd.choice((0, 1, 20, 32, 63, 64, 65, 100, 131, 200, rnd.randrange(0, 300)))
        ml = rnd.choice((0, 1, 55, 56, 63, 64, 65, rnd.randrange(0, 1000)))
        cases.append((bytes(rnd.getrandbits(8) for _ in range(kl)), bytes(rnd.getrandbits(8) for _ in range(ml))))
    stdin = "".join("%s %s\n" % (k.hex() or "-", m.hex() or "-") for k, m in cases)
    r = mp(HMAC_BATCH, input=stdin)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ref_hmac(k, m).hex() for k, m in cases]


# ---- SAS tokens ----------------------------------------------------------------

@given(hubs, devices, keys, st.integers(1, 10 ** 12), st.integers(0, 4 * 10 ** 9), policies)
@settings(max_examples=300)
def test_generated_tokens_verify_with_the_device_parser(hub, device, key, ttl, now, policy):
    kb64 = base64.b64encode(key).decode()
    tok = cmd_sas.generate(hub, device, kb64, now + ttl, policy)
    t = sas.parse(tok)
    assert (t.hub, t.device, t.module, t.policy) == (hub, device, None, policy)
    assert t.resource == hub + "/devices/" + device
    assert int(t.se) == now + ttl
    assert sas.verify(t, sas.decode_key(kb64)) is True
    assert sas.verify(t, key + b"x") is False
    assert sas.expired(t.se, now) is False
    assert sas.expired(t.se, now + ttl) is True
    assert ref_verify(tok, key) is True


@st.composite
def hand_made_tokens(draw):
    """Tokens as other tools make them: any field order, sr and sig encoded
    or not, '+' raw or %2B, an empty skn, se above 2**31, leading zeros."""
    hub, device, key = draw(hubs), draw(devices), draw(keys)
    sr = draw(st.sampled_from([
        urllib.parse.quote(hub + "/devices/" + device, safe=""),
        urllib.parse.quote(hub + "/devices/" + device),
        hub + "/devices/" + urllib.parse.quote(device, safe=""),
    ]))
    se = draw(st.one_of(st.integers(0, 2 ** 31 + 10).map(str), st.integers(2 ** 31, 10 ** 19).map(str),
                        st.integers(0, 10 ** 10).map(lambda n: "000" + str(n))))
    b64 = base64.b64encode(ref_hmac(key, (sr + "\n" + se).encode())).decode()
    sig = draw(st.sampled_from([urllib.parse.quote(b64, safe=""), urllib.parse.quote(b64), b64,
                                re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(b64, safe=""))]))
    fields = ["sr=" + sr, "sig=" + sig, "se=" + se]
    skn = draw(st.sampled_from([None, "", "device", "registryReadWrite"]))
    if skn is not None:
        fields.append("skn=" + skn)
    fields = draw(st.permutations(fields))
    return PREFIX + "&".join(fields), key, hub, device, skn or None


@given(hand_made_tokens())
@settings(max_examples=400)
def test_hand_made_tokens_verify_both_ways(case):
    tok, key, hub, device, policy = case
    t = sas.parse(tok)
    assert (t.hub, t.device, t.policy) == (hub, device, policy)
    assert sas.verify(t, key) is True
    assert ref_verify(tok, key) is True


_MUTATIONS = "%&=+ A/0z\u00e9\n"


@given(hand_made_tokens(), st.integers(0, 10 ** 6), st.sampled_from(_MUTATIONS), st.sampled_from(("replace", "insert", "delete")))
@settings(max_examples=600)
def test_mutated_tokens_are_refused_or_judged_like_cpython(case, pos, ch, how):
    tok, key = case[0], case[1]
    i = len(PREFIX) + pos % (len(tok) - len(PREFIX))
    if how == "replace":
        tok = tok[:i] + ch + tok[i + 1:]
    elif how == "insert":
        tok = tok[:i] + ch + tok[i:]
    else:
        tok = tok[:i] + tok[i + 1:]
    try:
        t = sas.parse(tok)
    except ValueError as e:
        msg = str(e)
        assert msg and tok[len(PREFIX):] not in msg   # clear, and no token text
        return
    # accepted by the device: CPython reads it the same way
    assert sas.verify(t, key) is ref_verify(tok, key)


SAS_BATCH = r"""
import sys
from microagent import sas
for line in sys.stdin:
    k, tok = line.rstrip("\n").split(" ", 1)
    try:
        t = sas.parse(tok)
        print("OK", t.resource, t.device, t.policy, t.se, sas.verify(t, sas.decode_key(k)),
              sas.expired(t.se, 1796000000), sas.iso8601(int(t.se)))
    except ValueError as e:
        print("ERR", e)
"""


def _device_view(k, tok):
    # the same lines, from the same firmware module on CPython
    try:
        t = sas.parse(tok)
        return "OK %s %s %s %s %s %s %s" % (t.resource, t.device, t.policy, t.se, sas.verify(t, sas.decode_key(k)),
                                            sas.expired(t.se, 1796000000), sas.iso8601(int(t.se)))
    except ValueError as e:
        return "ERR %s" % e


def test_sas_random_batch_same_on_unix_port_and_cpython(mp):
    rnd = random.Random(2104)
    lines = []
    for i in range(200):
        key = bytes(rnd.getrandbits(8) for _ in range(rnd.choice((16, 32, 64, 65))))
        k64 = base64.b64encode(key).decode()
        dev = "".join(rnd.choice(DEVICE_CHARS) for _ in range(rnd.randrange(1, 30)))
        se = rnd.choice((rnd.randrange(0, 2 ** 31), rnd.randrange(2 ** 31, 2 ** 40), 10 ** 19 + rnd.randrange(10 ** 18)))
        tok = cmd_sas.generate("hub-%d.azure-devices.net" % i, dev, k64, se, rnd.choice((None, "device")))
        if i % 3 == 1:      # a mutation: refused or judged
            j = rnd.randrange(len(PREFIX), len(tok))
            tok = tok[:j] + rnd.choice("%&=+ A/0z") + tok[j + 1:]
        elif i % 3 == 2:    # fields reordered, sig partly decoded
            parts = tok[len(PREFIX):].split("&")
            rnd.shuffle(parts)
            tok = PREFIX + "&".join(parts).replace("%2B", "+")
        lines.append((k64, tok))
    r = mp(SAS_BATCH, input="".join("%s %s\n" % kt for kt in lines))
    assert r.returncode == 0, r.stderr
    want = [_device_view(k, t) for k, t in lines]
    assert r.stdout.splitlines() == want
    # both paths were exercised: verified tokens and refused ones
    assert sum(1 for w in want if w.startswith("OK") and " True " in w) > 120
    assert sum(1 for w in want if w.startswith("ERR")) > 20


def test_sas_check_cli_on_a_token_the_unix_port_accepts(mp, capsys):
    # one more path: the CLI's verdict equals what the device found
    tok = cmd_sas.generate("contoso-hub.azure-devices.net", "dev-01", "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU=",
                           2 ** 32)
    r = mp(SAS_BATCH, input="rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU= " + tok + "\n")
    assert r.stdout == ("OK contoso-hub.azure-devices.net/devices/dev-01 dev-01 None 4294967296 True False "
                        "2106-02-07T06:28:16Z\n")
    from host_tools import cli
    rc = cli.main(["sas", "check", tok, "--key", "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU=", "--json",
                   "--now", "1796000000"])
    out = json.loads(capsys.readouterr().out)
    assert (rc, out["signature"], out["expired"], out["expiry"]) == (0, "valid", False, "2106-02-07T06:28:16Z")


@given(st.binary(min_size=32, max_size=32), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))
@settings(max_examples=300)
def test_sig_accepted_only_in_canonical_base64(mac, last):
    # a sig text is accepted exactly when it is the one text CPython's
    # base64 makes of the bytes it decodes to (IoT Hub compares text)
    text = base64.b64encode(mac).decode()[:-2] + last + "="
    tok = PREFIX + "sr=h&sig=" + urllib.parse.quote(text, safe="") + "&se=1"
    canonical = base64.b64encode(base64.b64decode(text)).decode() == text
    try:
        sas.parse(tok)
        accepted = True
    except ValueError as e:
        assert str(e) == "sig is not canonical base64 (character 42 leaves bits after the last byte)"
        accepted = False
    assert accepted == canonical
