from microagent import procnet
from mphelp import raises

TCP4 = "   0: 0100007F:1F90 4200007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 20 4 30 10 -1"
TCP6 = "   1: 00000000000000000000000001000000:0016 0000000000000000FFFF00004200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 20 4 1 10 -1"


def test_parse_ipv4_line():
    la, lp, ra, rp, st, ino = procnet.parse_line(TCP4)
    assert la == bytes([127, 0, 0, 1]) and lp == 8080
    assert ra == bytes([127, 0, 0, 66]) and rp == 50000
    assert st == 1 and ino == 12345


def test_parse_ipv6_line():
    la, lp, ra, rp, st, ino = procnet.parse_line(TCP6)
    assert la == bytes(15) + b"\x01" and lp == 22
    assert ra == bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 66]) and rp == 54321
    assert ino == 555


def test_garbage_lines_refused():
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    for bad in (header, "", "0: 0100007F:1F90", TCP4.replace("0100007F:1F90", "0100007F1F90"),
                TCP4.replace("4200007F", "42007F"), TCP4.replace(" 01 ", " 1 "),
                TCP4.replace("1F90", "ZZZZ"), TCP4.replace("12345", "x")):
        raises(ValueError, procnet.parse_line, bad)


class _Agent:
    def __init__(self):
        self.events = []

    def connection_opened(self, ra, rp, inbound):
        self.events.append(("open", ra, rp, inbound))

    def connection_closed(self):
        self.events.append(("close",))

    def _fault(self, where, e):
        raise e


def _write(path, lines):
    with open(path, "w") as f:
        f.write("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
        for l in lines:
            f.write(l + "\n")


def test_collector_reports_changes_and_direction():
    import os
    import random
    d = "/tmp/ma_procnet_%d" % random.getrandbits(24)
    try:
        os.mkdir(d)
    except OSError:
        pass
    listen = "   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 9 1 0000000000000000 20 4 30 10 -1"
    outbound = "   3: 0100007F:C350 4200007F:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 10 1 0000000000000000 20 4 30 10 -1"
    tw = "   4: 0100007F:C351 4200007F:01BB 06 00000000:00000000 00:00000000 00000000  1000        0 0 1 0000000000000000 20 4 30 10 -1"
    _write(d + "/tcp", [listen, TCP4, outbound, tw, "garbage line"])
    _write(d + "/udp", ["   5: 0100007F:D000 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 11 2 0000000000000000 0",
                        "   6: 0100007F:D001 0800A8C0:0035 01 00000000:00000000 00:00000000 00000000  1000        0 12 2 0000000000000000 0"])
    a = _Agent()
    pn = procnet.ProcNet(a, d)
    pn.poll()
    assert a.events == [("open", bytes([127, 0, 0, 66]), 8080, True),
                        ("open", bytes([127, 0, 0, 66]), 443, False),
                        ("open", bytes([192, 168, 0, 8]), 53, False)]
    assert pn.skipped == 1
    assert pn.missing == ["tcp6", "udp6"]
    pn.poll()
    assert len(a.events) == 3
    _write(d + "/tcp", [listen, outbound])
    pn.poll()
    assert a.events[3:] == [("close",)]
    for f in ("tcp", "udp"):
        os.remove(d + "/" + f)
    os.rmdir(d)


def test_limit_bounds_state_and_inode_less_entries():
    import os
    import random
    d = "/tmp/ma_procnet_%d" % random.getrandbits(24)
    os.mkdir(d)
    row = "   %d: 0100007F:%04X 4200007F:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0000000000000000 20 4 30 10 -1"
    # two embryonic entries without inode (0), keyed by their endpoints
    _write(d + "/tcp", [row % (0, 0xC000, 0), row % (1, 0xC001, 0), row % (2, 0xC002, 77)])
    a = _Agent()
    pn = procnet.ProcNet(a, d, limit=2)
    pn.poll()
    assert len(a.events) == 2 and pn.untracked == 1
    pn.poll()
    assert len(a.events) == 2 and pn.untracked == 1
    _write(d + "/tcp", [row % (1, 0xC001, 0)])
    pn.poll()
    assert a.events[2:] == [("close",)]
    assert pn.missing == ["tcp6", "udp", "udp6"]
    os.remove(d + "/tcp")
    os.rmdir(d)


def test_fault_while_polling_is_reported_not_raised():
    class Broken(_Agent):
        def __init__(self):
            _Agent.__init__(self)
            self.faults = []

        def connection_opened(self, ra, rp, inbound):
            raise MemoryError("memory allocation failed")

        def _fault(self, where, e):
            self.faults.append((where, type(e).__name__))
    import os
    import random
    d = "/tmp/ma_procnet_%d" % random.getrandbits(24)
    os.mkdir(d)
    _write(d + "/tcp", [TCP4])
    a = Broken()
    pn = procnet.ProcNet(a, d)
    pn.poll()
    assert a.faults == [("procnet", "MemoryError")]
    os.remove(d + "/tcp")
    os.rmdir(d)


def test_socket_table_against_a_set():
    import random
    t = procnet.SocketTable(64)
    ref = {}
    gen = 0
    for rounds in range(40):
        gen = (gen + 1) & 0xFF
        # keep some, drop some, add some (colliding keys included)
        keep = [k for k in ref if random.getrandbits(2)]
        new = [random.getrandbits(20) * 2048 + 1 for i in range(random.getrandbits(4))]
        new += [-2 - random.getrandbits(5) for i in range(2)]
        cur = {}
        for k in keep + new:
            r = t.mark(k, gen)
            if r is None:
                assert t.count == 64 and k not in ref and k not in cur
            else:
                assert r == (k in ref or k in cur)
                cur[k] = 1
        removed = t.sweep(gen)
        assert removed == len([k for k in ref if k not in cur])
        ref = cur
        assert t.count == len(ref)
        for k in ref:
            assert t.mark(k, gen) is True


def test_closing_socket_losing_its_inode_is_the_same_connection():
    # regression: a client that closes first sits in FIN_WAIT2 with inode 0;
    # keyed by inode it was reported as a second new connection
    import os
    import random
    d = "/tmp/ma_procnet_%d" % random.getrandbits(24)
    os.mkdir(d)
    est = "   0: 0100007F:C350 4200007F:1B58 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1"
    fin = "   0: 0100007F:C350 4200007F:1B58 05 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1"
    _write(d + "/tcp", [est])
    a = _Agent()
    pn = procnet.ProcNet(a, d)
    pn.poll()
    _write(d + "/tcp", [fin])
    pn.poll()
    assert a.events == [("open", bytes([127, 0, 0, 66]), 7000, False)]
    _write(d + "/tcp", [])
    pn.poll()
    assert a.events[1:] == [("close",)]
    os.remove(d + "/tcp")
    os.rmdir(d)


def test_signed_or_odd_hex_refused():
    for bad in (TCP4.replace("0100007F:1F90", "+2+2+2+2:1F90"), TCP4.replace(":1F90", ":+F90"),
                TCP4.replace(" 12345 ", " +12345 "), TCP4.replace(" 01 ", " +1 "),
                TCP4.replace("4200007F", "4200_07F")):
        raises(ValueError, procnet.parse_line, bad)
