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
    assert a.events == [("open", bytes([127, 0, 0, 66]), 50000, True),
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
