"""The device's IP/CIDR code against CPython's ipaddress: hypothesis on
CPython, and the same generated corpus run on the unix port."""
import ipaddress
import json
import random

from hypothesis import given, settings, strategies as st

from microagent import ipaddr

v4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
v6 = st.integers(0, 2**128 - 1).map(lambda i: ipaddress.IPv6Address(i))
# addresses with runs of zero groups exercise '::' placement
v6_sparse = st.lists(st.sampled_from([0, 0, 0, 1, 0xffff, 0xdb8, 0x2001]), min_size=8, max_size=8).map(
    lambda g: ipaddress.IPv6Address(int("".join("%04x" % x for x in g), 16)))


def _expected_bytes(text):
    a = ipaddress.ip_address(text)
    if a.version == 6 and a.ipv4_mapped is not None:
        return a.ipv4_mapped.packed
    return a.packed


def _expected_text(text):
    a = ipaddress.ip_address(text)
    if a.version == 6 and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return a.compressed


@settings(max_examples=400)
@given(st.one_of(v4, v6.map(str), v6.map(lambda a: a.exploded), v6_sparse.map(str),
                 v6_sparse.map(lambda a: a.exploded.upper())))
def test_parse_and_format_match_ipaddress(text):
    b = ipaddr.parse_ip(text)
    assert b == _expected_bytes(text)
    assert ipaddr.format_ip(b) == _expected_text(text)


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1))
def test_mapped_form_matches_ipv4(i):
    a4 = ipaddress.IPv4Address(i)
    assert ipaddr.parse_ip("::ffff:" + str(a4)) == a4.packed
    assert ipaddr.parse_ip("::ffff:%x:%x" % (i >> 16, i & 0xffff)) == a4.packed


junk = st.text(alphabet="0123456789abcdefABCDEFx.:/%[] -", max_size=45)


@settings(max_examples=1500)
@given(junk)
def test_accepts_only_what_ipaddress_accepts(text):
    try:
        ours = ipaddr.parse_ip(text)
    except ValueError:
        ours = None
    try:
        ref = _expected_bytes(text) if "%" not in text else None
    except ValueError:
        ref = None
    assert ours == ref, text


@settings(max_examples=400)
@given(st.one_of(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.just(4)),
                 st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128), st.just(6))),
       st.integers(0, 2**128 - 1))
def test_cidr_membership_matches_ipaddress(net, probe):
    value, plen, ver = net
    addr_cls = ipaddress.IPv4Address if ver == 4 else ipaddress.IPv6Address
    text = "%s/%d" % (addr_cls(value), plen)
    ref = ipaddress.ip_network(text, strict=False)
    n, p, warn = ipaddr.parse_network(text)
    assert (n, p) == (ref.network_address.packed, ref.prefixlen)
    assert (warn is None) == (ref.network_address == addr_cls(value))
    bits = 32 if ver == 4 else 128
    probe_addr = addr_cls(probe % (1 << bits))
    # probes inside the network too, not just random ones
    inside = addr_cls(int(ref.network_address) | (probe & ((1 << (bits - p)) - 1) if p < bits else 0))
    for a in (probe_addr, inside):
        if ver == 6 and a.ipv4_mapped is not None:
            continue  # mapped addresses match as IPv4 by design
        assert ipaddr.in_network(a.packed, n, p) == (a in ref)


def _corpus(seed=1234, n=600):
    rnd = random.Random(seed)
    cases = []
    for _ in range(n):
        if rnd.random() < 0.5:
            v, bits, cls = rnd.getrandbits(32), 32, ipaddress.IPv4Address
        else:
            groups = [rnd.choice([0, 0, 1, rnd.getrandbits(16)]) for _ in range(8)]
            v, bits, cls = int("".join("%04x" % g for g in groups), 16), 128, ipaddress.IPv6Address
        plen = rnd.randint(0, bits)
        text = str(cls(v))
        net = ipaddress.ip_network("%s/%d" % (text, plen), strict=False)
        probe = cls(int(net.network_address) + rnd.randrange(net.num_addresses)) if rnd.random() < 0.5 else cls(rnd.getrandbits(bits))
        cases.append([text, "%s/%d" % (text, plen), str(probe)])
    for bad in ("010.1.1.1", "0x0a.0.0.1", "10.1", "1.2.3.256", "::ffff:1.2.3", "1:2:3:4:5:6:7:8:9", "1::2::3"):
        cases.append([bad, bad + "/8", "1.2.3.4"])
    return cases


def _reference(cases):
    out = []
    for text, cidr, probe in cases:
        try:
            b = _expected_bytes(text)
            t = _expected_text(text)
        except ValueError:
            out.append(None)
            continue
        net = ipaddress.ip_network(cidr, strict=False)
        p = ipaddress.ip_address(probe)
        mapped = p.version == 6 and p.ipv4_mapped is not None
        out.append([b.hex(), t, net.network_address.packed.hex(), net.prefixlen,
                    None if mapped else (p in net)])
    return out


MP_CODE = r"""
import sys, json, binascii
from microagent import ipaddr
for line in sys.stdin:
    text, cidr, probe = json.loads(line)
    try:
        b = ipaddr.parse_ip(text)
    except ValueError:
        print("null")
        continue
    n, p, w = ipaddr.parse_network(cidr)
    pb = ipaddr.parse_ip(probe)
    mapped = probe.find(":") >= 0 and len(pb) == 4
    print(json.dumps([binascii.hexlify(b).decode(), ipaddr.format_ip(b), binascii.hexlify(n).decode(), p,
                      None if mapped else ipaddr.in_network(pb, n, p)]))
"""


def test_same_corpus_on_micropython(mp):
    cases = _corpus()
    r = mp(MP_CODE, input="".join(json.dumps(c) + "\n" for c in cases), timeout=120)
    assert r.returncode == 0, r.stderr
    got = [json.loads(l) for l in r.stdout.splitlines()]
    assert got == _reference(cases)


@settings(max_examples=300)
@given(st.lists(st.one_of(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.just(4)),
                          st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128), st.just(6))),
                max_size=12),
       st.integers(0, 2**128 - 1), st.booleans())
def test_netlist_matches_ipaddress(nets, probe, v4probe):
    nl = ipaddr.NetList()
    refs = []
    for value, plen, ver in nets:
        cls = ipaddress.IPv4Address if ver == 4 else ipaddress.IPv6Address
        text = "%s/%d" % (cls(value), plen)
        n, p, _ = ipaddr.parse_network(text)
        nl.add(n, p)
        refs.append(ipaddress.ip_network(text, strict=False))
    a = ipaddress.IPv4Address(probe % 2**32) if v4probe else ipaddress.IPv6Address(probe)
    if a.version == 6 and a.ipv4_mapped is not None:
        return
    assert nl.match(a.packed) == any(a in r for r in refs if r.version == a.version)
