from microagent import ipaddr
from mphelp import raises


def _in(addr, net):
    n, p, _ = ipaddr.parse_network(net)
    return ipaddr.in_network(ipaddr.parse_ip(addr), n, p)


def test_mapped_ipv4_matches_ipv4_network():
    assert _in("::ffff:10.0.0.1", "10.0.0.0/8")
    assert ipaddr.parse_ip("::ffff:10.0.0.1") == bytes([10, 0, 0, 1])


def test_default_route_v4_covers_mapped_but_not_ipv6():
    assert _in("::ffff:8.8.8.8", "0.0.0.0/0")
    assert not _in("2001:db8::1", "0.0.0.0/0")
    assert _in("2001:db8::1", "::/0")
    assert not _in("10.0.0.1", "::/0")


def test_host_bits_set_reads_as_network_with_warning():
    net, plen, warn = ipaddr.parse_network("203.0.113.77/24")
    assert (net, plen) == (bytes([203, 0, 113, 0]), 24)
    assert warn == "203.0.113.77/24 has host bits set; read as 203.0.113.0/24"
    assert _in("203.0.113.1", "203.0.113.77/24")
    assert ipaddr.parse_network("203.0.113.0/24")[2] is None


def test_ambiguous_ipv4_literals_refused():
    assert "leading zero" in str(raises(ValueError, ipaddr.parse_ip, "010.1.1.1"))
    raises(ValueError, ipaddr.parse_ip, "0x0a.0.0.1")
    assert "four" in str(raises(ValueError, ipaddr.parse_ip, "10.1"))
    for bad in ("256.1.1.1", "1.2.3.4.5", "1..2.3", "", " 1.2.3.4", "1.2.3.4 ", "-1.2.3.4", "1.2.3.04"):
        raises(ValueError, ipaddr.parse_ip, bad)


def test_ipv6_forms():
    assert ipaddr.parse_ip("::") == bytes(16)
    assert ipaddr.parse_ip("::1") == bytes(15) + b"\x01"
    assert ipaddr.format_ip(ipaddr.parse_ip("2001:DB8:0:0:1:0:0:1")) == "2001:db8::1:0:0:1"
    assert ipaddr.format_ip(ipaddr.parse_ip("2001:db8::")) == "2001:db8::"
    assert ipaddr.format_ip(ipaddr.parse_ip("1:0:0:2:0:0:0:3")) == "1:0:0:2::3"
    assert ipaddr.format_ip(ipaddr.parse_ip("1:0:2:3:4:5:6:7")) == "1:0:2:3:4:5:6:7"
    assert ipaddr.format_ip(ipaddr.parse_ip("::ffff:192.0.2.1")) == "192.0.2.1"
    assert ipaddr.format_ip(ipaddr.parse_ip("::192.0.2.1")) == "::c000:201"
    for bad in (":::", "1:::2", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
                "::g", ":1::", "1::2:", "fe80::1%eth0", "[::1]", "1:2:3:4:5:6:7:8::",
                "::ffff:010.0.0.1", "1.2.3.4::", "::1.2.3"):
        raises(ValueError, ipaddr.parse_ip, bad)


def test_network_prefix_errors():
    for bad in ("10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1", "::/129",
                "10.0.0.0/8/8", "10.1/8", "::ffff:10.0.0.0/95", "10.0.0.0/ 8"):
        raises(ValueError, ipaddr.parse_network, bad)


def test_mapped_network_becomes_ipv4():
    assert ipaddr.parse_network("::ffff:10.0.0.0/104") == (bytes([10, 0, 0, 0]), 8, None)


def test_single_address_is_full_prefix():
    assert ipaddr.parse_network("198.51.100.23") == (bytes([198, 51, 100, 23]), 32, None)
    assert ipaddr.parse_network("::1")[1] == 128


def test_prefix_boundary_bits():
    assert _in("10.0.0.127", "10.0.0.0/25")
    assert not _in("10.0.0.128", "10.0.0.0/25")
    assert _in("2001:db8:ffff::", "2001:db8::/32")
    assert not _in("2001:db9::", "2001:db8::/32")


def test_from_sockaddr_raw_and_tuple():
    raw4 = bytes([2, 0, 0x1F, 0x90, 127, 0, 0, 66]) + bytes(8)
    assert ipaddr.from_sockaddr(raw4) == (bytes([127, 0, 0, 66]), 8080)
    raw6 = bytes([10, 0, 0x01, 0xBB]) + bytes(4) + bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3]) + bytes(4)
    assert ipaddr.from_sockaddr(raw6) == (bytes([10, 1, 2, 3]), 443)
    assert ipaddr.from_sockaddr(("2001:db8::1", 8883)) == (ipaddr.parse_ip("2001:db8::1"), 8883)


def test_netlist_matches_like_in_network():
    nets = ["10.0.0.0/8", "192.0.2.128/25", "0.0.0.0/32", "2001:db8::/32", "::1", "fe80::/10", "198.51.100.7"]
    nl = ipaddr.NetList()
    for n in nets:
        net, plen, _ = ipaddr.parse_network(n)
        nl.add(net, plen)
    assert len(nl) == 7
    assert nl.items()[0] == (bytes([10, 0, 0, 0]), 8)
    for probe in ("10.255.0.1", "11.0.0.1", "192.0.2.127", "192.0.2.128", "0.0.0.0", "0.0.0.1",
                  "2001:db8:1::", "2001:db9::", "::1", "::2", "febf::1", "fec0::1", "198.51.100.7",
                  "198.51.100.8", "::ffff:10.1.1.1"):
        a = ipaddr.parse_ip(probe)
        want = False
        for n in nets:
            net, plen, _ = ipaddr.parse_network(n)
            want = want or ipaddr.in_network(a, net, plen)
        assert nl.match(a) == want, probe
    assert not ipaddr.NetList().match(bytes(4))


def test_only_ascii_digits():
    raises(ValueError, ipaddr.parse_network, "10.0.0.0/\u0668")   # Arabic-Indic eight
    raises(ValueError, ipaddr.parse_ip, "1\u0660.0.0.1")
