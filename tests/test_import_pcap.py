"""`microagent import pcap`: a real TCP + MQTT + UDP exchange on loopback
(mosquitto, paho-mqtt, plain sockets) recorded with tcpdump, and captures
written with dpkt for the exact edge cases (RST, retransmitted SYN, a flow
begun before the capture, inbound connections, UDP idle closes, IPv6,
MQTT split across and packed into segments, out of order, MQTT 5, TLS on
8883, pcapng, Linux cooked and raw-IP link types)."""
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import dpkt
import pytest

from host_tools import cli
from host_tools.cmd_import import convert
from mqttparts import Broker

DEV = "127.0.0.2"        # the device's address on loopback
SERVICE = "127.0.0.3"    # another client of the broker (not the device)
TOKEN = ("SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01"
         "&sig=OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D&se=1900000000")
USER = "contoso-hub.azure-devices.net/dev-01/?api-version=2021-04-12"


def _import(path, device, *more):
    out = io.StringIO()
    st = convert(str(path), out, device, *more)
    lines = out.getvalue().splitlines()
    return json.loads(lines[0]), [json.loads(l) for l in lines[1:]], st


def _untimed(events):
    return [{k: v for k, v in e.items() if k != "t"} for e in events]


# ---- a real exchange recorded with tcpdump -----------------------------------
@pytest.mark.skipif(shutil.which("tcpdump") is None or os.geteuid() != 0,
                    reason="tcpdump (installed by .ci/run) needs root to capture on lo")
def test_real_loopback_capture(tmp_path, mp_lib, capsys):
    import paho.mqtt.client as mqtt
    cap = tmp_path / "lo.pcap"
    with Broker(tmp_path / "broker") as broker:
        dump = subprocess.Popen(["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-n", "-w", str(cap), "host %s" % DEV],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert b"listening on lo" in dump.stderr.readline()
            got = threading.Event()
            dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-01")
            dev.username_pw_set(USER, TOKEN)
            dev.on_message = lambda c, u, m: got.set()
            dev.connect("127.0.0.1", broker.port, bind_address=DEV)
            dev.loop_start()
            r, _ = dev.subscribe("devices/dev-01/messages/devicebound/#", qos=1)
            time.sleep(0.3)
            dev.publish("devices/dev-01/messages/events/", b"hello", qos=1).wait_for_publish(5)
            svc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="service")
            svc.connect("127.0.0.1", broker.port, bind_address=SERVICE)
            svc.loop_start()
            svc.publish("devices/dev-01/messages/devicebound/%24.mid=1", b"c2d!", qos=1).wait_for_publish(5)
            assert got.wait(5)
            time.sleep(0.2)
            dev.disconnect()
            dev.loop_stop()
            svc.disconnect()
            svc.loop_stop()
            time.sleep(0.2)
            # a UDP datagram, a refused TCP connection, an inbound connection
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((DEV, 0))
            udp_port = 9  # discard: nothing listens, the ICMP answer is skipped
            u.sendto(b"ping", ("127.0.0.1", udp_port))
            u.close()
            time.sleep(0.1)
            free = socket.socket()
            free.bind(("127.0.0.1", 0))
            closed_port = free.getsockname()[1]
            free.close()
            c = socket.socket()
            c.bind((DEV, 0))
            with pytest.raises(ConnectionRefusedError):
                c.connect(("127.0.0.1", closed_port))
            c.close()
            time.sleep(0.1)
            srv = socket.socket()
            srv.bind((DEV, 0))
            srv.listen(1)
            service_port = srv.getsockname()[1]
            peer = socket.create_connection(srv.getsockname(), source_address=("127.0.0.1", 0))
            conn, _ = srv.accept()
            time.sleep(0.1)
            conn.close()   # the device closes first: its FIN is the close
            time.sleep(0.1)
            peer.close()
            srv.close()
            time.sleep(1.0)
        finally:
            dump.send_signal(signal.SIGINT)
            dump.wait(10)
    # mosquitto listens on a free port, not 1883: name it as an MQTT port
    header, events, st = _import(cap, DEV, None, (broker.port,))
    assert header["device"] == "dev-01" and header["config"] == {"deviceId": "dev-01"}
    assert _untimed(events) == [
        {"event": "connect", "id": 1, "remote": "127.0.0.1", "port": broker.port},
        {"event": "mqtt_connect", "client_id": "dev-01", "username": USER, "password": TOKEN},
        {"event": "mqtt_connack", "rc": 0},
        {"event": "mqtt_suback", "rc": 1},
        {"event": "mqtt_publish", "topic": "devices/dev-01/messages/events/", "bytes": 5},
        {"event": "mqtt_message", "topic": "devices/dev-01/messages/devicebound/%24.mid=1", "bytes": 4},
        {"event": "close", "id": 1},
        {"event": "connect", "id": 2, "remote": "127.0.0.1", "port": udp_port, "proto": "udp"},
        {"event": "connect", "id": 3, "remote": "127.0.0.1", "port": closed_port},
        {"event": "close", "id": 3},
        # inbound: the port is the device's own (its service), as the agent reports it
        {"event": "accept", "id": 4, "remote": "127.0.0.1", "port": service_port},
        {"event": "close", "id": 4}]
    ts = [e["t"] for e in events]
    assert ts[0] == 0.0 and ts == sorted(ts) and ts[-1] > 1.0
    assert (st["tcp"], st["udp"], st["mqtt"]) == (3, 1, 5)
    # the imported scenario replays through the agent
    out = tmp_path / "lo.jsonl"
    assert cli.main(["import", "pcap", str(cap), "--device", DEV, "--out", str(out),
                     "--mqtt-port", str(broker.port)]) == 0
    err = capsys.readouterr().err
    assert err == ("microagent import pcap: 12 events from %d packets (3 TCP connections, 1 UDP flows, 5 MQTT "
                   "packets; %d packets not the device's or not IP) for device dev-01 -> %s\n"
                   % (st["packets"], st["skipped"], out))
    assert cli.main(["replay", "--check", str(out)]) == 0


# ---- captures written with dpkt ------------------------------------------------
D4, R4, O4 = "10.0.0.2", "20.1.2.3", "10.0.0.9"
D6, R6 = "2001:db8::2", "2001:db8:1::1"
SYN, ACK, FIN, RST, PSH = (dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH)


def _ip(src, dst, proto, l4):
    if ":" in src:
        ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst),
                          nxt=proto, hlim=64, data=l4)
        ip.plen = len(bytes(l4))
        return ip
    return dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, data=l4)


def tcp(src, dst, sport, dport, flags, seq=0, data=b""):
    return _ip(src, dst, dpkt.ip.IP_PROTO_TCP, dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, data=data))


def udp(src, dst, sport, dport, data=b"x"):
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=data)
    u.ulen = 8 + len(data)
    return _ip(src, dst, dpkt.ip.IP_PROTO_UDP, u)


def eth(ip):
    t = dpkt.ethernet.ETH_TYPE_IP6 if isinstance(ip, dpkt.ip6.IP6) else dpkt.ethernet.ETH_TYPE_IP
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=t, data=ip))


def write(path, packets, fmt="pcap", link="eth", t0=1780315200.0):
    """packets: [(t, ip packet or raw frame bytes)]."""
    linktype = {"eth": dpkt.pcap.DLT_EN10MB, "sll": dpkt.pcap.DLT_LINUX_SLL, "raw": 101}[link]
    with open(path, "wb") as f:
        w = dpkt.pcapng.Writer(f, linktype=linktype) if fmt == "pcapng" else dpkt.pcap.Writer(f, linktype=linktype)
        for t, p in packets:
            if isinstance(p, bytes):
                frame = p
            elif link == "eth":
                frame = eth(p)
            elif link == "sll":
                frame = bytes(dpkt.sll.SLL(type=4, hrd=1, hlen=6, hdr=b"\x02" * 6 + b"\x00\x00",
                                           ethtype=dpkt.ethernet.ETH_TYPE_IP, data=p))
            else:
                frame = bytes(p)
            w.writepkt(frame, ts=t0 + t)
    return path


def mqtt_packet(ptype, flags, body):
    n = len(body)
    rl = b""
    while True:
        b = n & 0x7F
        n >>= 7
        rl += bytes([b | (0x80 if n else 0)])
        if not n:
            break
    return bytes([ptype << 4 | flags]) + rl + body


def s16(b):
    return len(b).to_bytes(2, "big") + b


def connect_body(cid, user=None, pw=None, level=4, will=False):
    flags = (0x80 if user is not None else 0) | (0x40 if pw is not None else 0) | (0x04 if will else 0) | 0x02
    body = s16(b"MQTT") + bytes([level, flags]) + b"\x00\x3c"
    if level == 5:
        body += b"\x00"  # no properties
    body += s16(cid.encode())
    if will:
        if level == 5:
            body += b"\x00"
        body += s16(b"will/topic") + s16(b"gone")
    if user is not None:
        body += s16(user.encode())
    if pw is not None:
        body += s16(pw.encode())
    return body


def publish(topic, payload, qos=0, level=4):
    body = s16(topic.encode()) + (b"\x00\x07" if qos else b"") + (b"\x00" if level == 5 else b"") + payload
    return mqtt_packet(3, qos << 1, body)


def _mqtt_session(dev, broker, sport=40000, level=4):
    # a device's MQTT session; the CONNECT split across two segments, the
    # broker's CONNACK and SUBACK packed into one, a PUBLISH out of order
    c = mqtt_packet(1, 0, connect_body("dev-01", USER, TOKEN, level, will=True))
    suback = mqtt_packet(9, 0, b"\x00\x01" + (b"\x00" if level == 5 else b"") + b"\x01\x80")
    connack = mqtt_packet(2, 0, b"\x00\x00" + (b"\x00" if level == 5 else b""))
    sub = mqtt_packet(8, 2, b"\x00\x01" + s16(b"devices/dev-01/messages/devicebound/#") + b"\x01")
    p1 = publish("devices/dev-01/messages/events/", b"12345", 1, level)
    p2 = publish("$iothub/methods/POST/reboot/?$rid=1", b"{}", 0, level)
    p3 = publish("devices/dev-01/messages/devicebound/x", b"abc", 0, level)
    ds, bs = 1001, 5001
    out = [(0.0, tcp(dev, broker, sport, 1883, SYN, 1000)),
           (0.001, tcp(broker, dev, 1883, sport, SYN | ACK, 5000)),
           (0.002, tcp(dev, broker, sport, 1883, ACK | PSH, ds, c[:10])),
           (0.003, tcp(dev, broker, sport, 1883, ACK | PSH, ds + 10, c[10:])),
           (0.003, tcp(dev, broker, sport, 1883, ACK | PSH, ds, c[:10])),   # a retransmission: no second CONNECT
           (0.010, tcp(broker, dev, 1883, sport, ACK | PSH, bs, connack))]
    ds += len(c)
    bs += len(connack)
    out += [(0.020, tcp(dev, broker, sport, 1883, ACK | PSH, ds, sub + p1)),
            (0.030, tcp(broker, dev, 1883, sport, ACK | PSH, bs, suback))]
    bs += len(suback)
    # p2 then p3 sent, p3's segment captured first
    out += [(0.040, tcp(broker, dev, 1883, sport, ACK | PSH, bs + len(p2), p3)),
            (0.041, tcp(broker, dev, 1883, sport, ACK | PSH, bs, p2))]
    return out


MQTT_EVENTS = [
    {"event": "mqtt_connect", "client_id": "dev-01", "username": USER, "password": TOKEN},
    {"event": "mqtt_connack", "rc": 0},
    {"event": "mqtt_publish", "topic": "devices/dev-01/messages/events/", "bytes": 5},
    {"event": "mqtt_suback", "rc": [1, 128]},
    {"event": "mqtt_message", "topic": "$iothub/methods/POST/reboot/?$rid=1", "bytes": 2},
    {"event": "mqtt_message", "topic": "devices/dev-01/messages/devicebound/x", "bytes": 3}]


def test_mqtt_stream_reassembly_exact(tmp_path):
    p = write(tmp_path / "m.pcap", _mqtt_session(D4, R4) + [(1.5, tcp(D4, R4, 40000, 1883, FIN | ACK, 1200))])
    header, events, st = _import(p, D4)
    assert header == {"scenario": "m", "device": "dev-01", "start": "2026-06-01T12:00:00Z",
                      "config": {"deviceId": "dev-01"}}
    assert events == [{"t": 0.0, "event": "connect", "id": 1, "remote": R4, "port": 1883}] + [
        dict({"t": t}, **e) for t, e in zip((0.003, 0.01, 0.02, 0.03, 0.041, 0.041), MQTT_EVENTS)] + [
        {"t": 1.5, "event": "close", "id": 1}]
    assert (st["packets"], st["tcp"], st["mqtt"]) == (11, 1, 6)


def test_mqtt5_and_pcapng_and_ipv6(tmp_path):
    p = write(tmp_path / "m5.pcapng", _mqtt_session(D6, R6, level=5), fmt="pcapng")
    header, events, st = _import(p, D6)
    assert _untimed(events) == [{"event": "connect", "id": 1, "remote": R6, "port": 1883}] + MQTT_EVENTS


def test_tls_is_connections_only(tmp_path):
    # MQTT bytes on 8883 are TLS records to the importer: never parsed
    c = mqtt_packet(1, 0, connect_body("dev-01", USER, TOKEN))
    p = write(tmp_path / "tls.pcap", [
        (0.0, tcp(D4, R4, 40001, 8883, SYN, 10)),
        (0.1, tcp(R4, D4, 8883, 40001, SYN | ACK, 70)),
        (0.2, tcp(D4, R4, 40001, 8883, ACK | PSH, 11, c)),
        (0.3, tcp(R4, D4, 8883, 40001, ACK | PSH, 71, mqtt_packet(2, 0, b"\x00\x00"))),
        (0.4, tcp(R4, D4, 8883, 40001, FIN | ACK, 75)),     # the broker's FIN: still open
        (0.5, tcp(D4, R4, 40001, 8883, FIN | ACK, 11 + len(c)))])
    _, events, st = _import(p, D4)
    assert events == [{"t": 0.0, "event": "connect", "id": 1, "remote": R4, "port": 8883},
                      {"t": 0.5, "event": "close", "id": 1}]
    # the same bytes on a port named with --mqtt-port are MQTT
    _, events, _ = _import(p, D4, None, (8883,))
    assert _untimed(events)[1:3] == [MQTT_EVENTS[0], MQTT_EVENTS[1]]


def test_tcp_edge_cases(tmp_path):
    p = write(tmp_path / "tcp.pcap", [
        (0.0, tcp(O4, R4, 5000, 80, SYN, 1)),                  # not the device's: skipped, but t=0
        (1.0, tcp(D4, R4, 40002, 443, SYN, 1)),
        (1.5, tcp(D4, R4, 40002, 443, SYN, 1)),                # retransmitted SYN
        (2.0, tcp(R4, D4, 443, 40002, RST | ACK, 0)),          # refused
        (3.0, tcp(D4, R4, 40003, 443, ACK | PSH, 9, b"x")),    # begun before the capture: ignored
        (3.5, tcp(D4, R4, 40003, 443, FIN | ACK, 10)),
        (4.0, tcp("198.51.100.7", D4, 51000, 22, SYN, 1)),     # inbound
        (4.1, tcp(D4, "198.51.100.7", 22, 51000, SYN | ACK, 1)),
        (5.0, tcp("198.51.100.7", D4, 51000, 22, FIN | ACK, 2)),  # the peer's FIN: still open
        (6.25, tcp("198.51.100.7", D4, 51000, 22, RST, 3)),    # a RST from either side closes
        (7.0, tcp(D4, R4, 40002, 443, SYN, 100)),              # the same 4-tuple again: a new connection
        (8.0, tcp(D4, R4, 40002, 443, RST, 101)),
        (9.0, b"\x00" * 14),                                   # not IP
    ])
    header, events, st = _import(p, D4)
    assert header["device"] == "device" and header["start"] == "2026-06-01T12:00:00Z"
    assert events == [
        {"t": 1.0, "event": "connect", "id": 1, "remote": R4, "port": 443},
        {"t": 2.0, "event": "close", "id": 1},
        {"t": 4.0, "event": "accept", "id": 2, "remote": "198.51.100.7", "port": 22},   # the device's service port
        {"t": 6.25, "event": "close", "id": 2},
        {"t": 7.0, "event": "connect", "id": 3, "remote": R4, "port": 443},
        {"t": 8.0, "event": "close", "id": 3}]
    assert (st["packets"], st["skipped"], st["tcp"]) == (13, 2, 3)


def test_udp_flows_and_idle_close(tmp_path):
    p = write(tmp_path / "udp.pcap", [
        (0.0, udp(D4, "8.8.8.8", 53000, 53)),
        (0.02, udp("8.8.8.8", D4, 53, 53000)),                  # the answer: same flow
        (10.0, udp("192.0.2.50", D4, 9999, 5683)),             # inbound flow (CoAP)
        (20.0, udp(D4, "192.0.2.50", 5683, 9999)),
        (31.0, udp(D4, "8.8.8.8", 53001, 53)),                 # after 30.02: the first flow closed
        (45.0, udp(D4, "8.8.8.8", 53001, 53)),
        (80.0, udp(D4, R4, 1, 2)),                             # 50 s idle -> closed at 50; 75 -> at 75
    ], link="sll")
    _, events, st = _import(p, D4)
    assert events == [
        {"t": 0.0, "event": "connect", "id": 1, "remote": "8.8.8.8", "port": 53, "proto": "udp"},
        {"t": 10.0, "event": "accept", "id": 2, "remote": "192.0.2.50", "port": 5683, "proto": "udp"},
        {"t": 30.02, "event": "close", "id": 1},
        {"t": 31.0, "event": "connect", "id": 3, "remote": "8.8.8.8", "port": 53, "proto": "udp"},
        {"t": 50.0, "event": "close", "id": 2},
        {"t": 75.0, "event": "close", "id": 3},
        {"t": 80.0, "event": "connect", "id": 4, "remote": R4, "port": 2, "proto": "udp"}]
    # --udp-idle 5: the inbound flow is closed at 15 before the device's
    # datagram at 20, which opens a new (outbound) flow
    _, events, _ = _import(p, D4, None, (1883,), 5.0)
    assert [(e["t"], e["event"], e["id"]) for e in events] == [
        (0.0, "connect", 1), (5.02, "close", 1), (10.0, "accept", 2), (15.0, "close", 2), (20.0, "connect", 3),
        (25.0, "close", 3), (31.0, "connect", 4), (36.0, "close", 4), (45.0, "connect", 5), (50.0, "close", 5),
        (80.0, "connect", 6)]
    assert events[4]["remote"] == "192.0.2.50" and events[4]["port"] == 9999   # outbound: the remote's port


def test_raw_ip_link_type(tmp_path):
    p = write(tmp_path / "raw.pcap", [(0.0, tcp(D4, R4, 1, 2, SYN)), (0.5, tcp(D4, R4, 1, 2, FIN | ACK, 1))],
              link="raw")
    _, events, _ = _import(p, D4)
    assert events == [{"t": 0.0, "event": "connect", "id": 1, "remote": R4, "port": 2},
                      {"t": 0.5, "event": "close", "id": 1}]


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"not a capture at all")
    assert cli.main(["import", "pcap", str(bad), "--device", D4]) == 2
    assert capsys.readouterr().err.startswith("microagent import pcap: %s: not a pcap or pcapng capture" % bad)
    assert cli.main(["import", "pcap", str(bad), "--device", "10.0.0.300"]) == 2
    assert capsys.readouterr().err == "microagent import pcap: --device 10.0.0.300 is not an IP address\n"
    assert cli.main(["import", "pcap", str(tmp_path / "none.pcap"), "--device", D4]) == 2
    assert capsys.readouterr().err == "microagent import pcap: %s: No such file or directory\n" % (tmp_path / "none.pcap")
    out = tmp_path / "o.jsonl"
    assert cli.main(["import", "pcap", str(bad), "--device", D4, "--out", str(out)]) == 2
    assert not out.exists() and not (tmp_path / "o.jsonl.tmp").exists()


# ---- broken captures, odd timestamps, arguments --------------------------------
def _three(tmp_path, fmt="pcap"):
    # connect (t=0), its refusal (t=0.5), a second connect (t=2.25)
    return write(tmp_path / ("three." + fmt), [
        (0.0, tcp(D4, R4, 40000, 443, SYN, 1)),
        (0.5, tcp(R4, D4, 443, 40000, RST | ACK, 0)),
        (2.25, tcp(D4, R4, 40001, 443, SYN, 1))], fmt=fmt)


def _cli(capsys, *argv):
    rc = cli.main(["import", "pcap"] + [str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_broken_captures_are_refused_saying_where(tmp_path, capsys):
    p = _three(tmp_path)
    data = p.read_bytes()
    rec = 16 + 54  # a pcap record of one of these packets: header + Ethernet/IPv4/TCP
    assert len(data) == 24 + 3 * rec
    cases = [
        (data[:-10], "capture broken at byte 164, after 2 whole packets: record 3 holds 44 of its 54 bytes"),
        (data[:24 + rec + 5], "capture broken at byte 94, after 1 whole packet: record 2's 16-byte header is cut "
                              "after 5 bytes"),
        (data[:24] + b"\x00" * 8 + b"\xff\xff\xff\x7f" * 2 + b"x" * 30,
         "capture broken at byte 24, after 0 whole packets: record 1 claims 2147483647 captured bytes (more than "
         "262144)"),
    ]
    for i, (blob, why) in enumerate(cases):
        q = tmp_path / ("cut%d.pcap" % i)
        q.write_bytes(blob)
        rc, out, err = _cli(capsys, q, "--device", D4)
        assert (rc, out) == (2, "")
        assert err == "microagent import pcap: %s: %s (--partial keeps the packets before it)\n" % (q, why)
    # --partial: the packets before the break, and one line saying so
    q = tmp_path / "cut0.pcap"
    rc, out, err = _cli(capsys, q, "--device", D4, "--partial")
    assert rc == 0
    assert [json.loads(l) for l in out.splitlines()[1:]] == [
        {"t": 0.0, "event": "connect", "id": 1, "remote": R4, "port": 443}, {"t": 0.5, "event": "close", "id": 1}]
    assert err.splitlines()[0] == ("microagent import pcap: %s: capture broken at byte 164, after 2 whole packets: "
                                   "record 3 holds 44 of its 54 bytes; kept what came before (--partial)" % q)
    # broken before the first packet: nothing to keep
    rc, out, err = _cli(capsys, tmp_path / "cut2.pcap", "--device", D4, "--partial")
    assert (rc, out) == (2, "")
    assert err == ("microagent import pcap: %s: no packets before the break (capture broken at byte 24, after 0 "
                   "whole packets: record 1 claims 2147483647 captured bytes (more than 262144))\n"
                   % (tmp_path / "cut2.pcap"))
    # shorter than a file header
    q = tmp_path / "short.pcap"
    q.write_bytes(data[:10])
    rc, out, err = _cli(capsys, q, "--device", D4)
    assert (rc, err) == (2, "microagent import pcap: %s: not a pcap or pcapng capture (got 10, 24 needed at least)\n"
                         % q)


def test_broken_pcapng_blocks(tmp_path, capsys):
    p = _three(tmp_path, "pcapng")
    data = p.read_bytes()
    epb = 32 + 56  # an Enhanced Packet Block of one of these packets (54 bytes padded to 56)
    first = len(data) - 3 * epb  # where the first packet block starts
    for blob, why in [
        (data[:-7], "capture broken at byte %d, after 2 whole packets: a block holds 81 of its 88 bytes"
                    % (first + 2 * epb)),
        (data + b"\x06\x00\x00", "capture broken at byte %d, after 3 whole packets: a block header is cut after 3 "
                                 "of its 8 bytes" % len(data)),
        (data + b"\x06\x00\x00\x00\x07\x00\x00\x00", "capture broken at byte %d, after 3 whole packets: a block "
                                                     "claims a length of 7 bytes" % len(data)),
    ]:
        q = tmp_path / "cut.pcapng"
        q.write_bytes(blob)
        rc, out, err = _cli(capsys, q, "--device", D4)
        assert (rc, out) == (2, "")
        assert err == "microagent import pcap: %s: %s (--partial keeps the packets before it)\n" % (q, why)


def test_timestamps_going_backwards_are_clamped(tmp_path, capsys):
    p = write(tmp_path / "ooo.pcap", [
        (100.0, tcp(D4, R4, 40000, 443, SYN, 1)),
        (99.5, tcp(D4, R4, 40001, 443, SYN, 1)),     # half a second before the first
        (100.75, tcp(D4, R4, 40000, 443, FIN | ACK, 2)),
        (100.5, tcp(D4, R4, 40001, 443, FIN | ACK, 2))])
    rc, out, err = _cli(capsys, p, "--device", D4)
    assert rc == 0
    assert [json.loads(l) for l in out.splitlines()[1:]] == [
        {"t": 0.0, "event": "connect", "id": 1, "remote": R4, "port": 443},
        {"t": 0.0, "event": "connect", "id": 2, "remote": R4, "port": 443},
        {"t": 0.75, "event": "close", "id": 1},
        {"t": 0.75, "event": "close", "id": 2}]
    assert err.splitlines()[0] == ("microagent import pcap: %s: 2 packets had a timestamp before the previous "
                                   "packet's (by up to 0.5 s): each was put at the previous packet's time" % p)
    q = tmp_path / "ooo.jsonl"
    assert cli.main(["import", "pcap", str(p), "--device", D4, "--out", str(q)]) == 0
    capsys.readouterr()
    assert cli.main(["replay", "--check", str(q)]) == 0


def test_nanosecond_pcap(tmp_path):
    # the nanosecond magic: fractions are nanoseconds, not microseconds
    p = tmp_path / "ns.pcap"
    with open(p, "wb") as f:
        w = dpkt.pcap.Writer(f, nano=True)
        w.writepkt(eth(tcp(D4, R4, 1, 2, SYN)), ts=1780315200.0)
        w.writepkt(eth(tcp(D4, R4, 1, 2, FIN | ACK, 1)), ts=1780315200.25)
    header, events, _ = _import(p, D4)
    assert header["start"] == "2026-06-01T12:00:00Z"
    assert [e["t"] for e in events] == [0.0, 0.25]


def test_empty_capture_and_unsupported_link_types(tmp_path, capsys):
    p = tmp_path / "empty.pcap"
    with open(p, "wb") as f:
        dpkt.pcap.Writer(f)
    assert _cli(capsys, p, "--device", D4) == (2, "", "microagent import pcap: %s: no packets in the capture\n" % p)
    why = ("link type 147 (DLT_USER0) is not supported (Ethernet 1, Linux cooked 113 and 276, raw IP 101/228/229, "
           "BSD loopback 0 and 108 are)")
    q = tmp_path / "user0.pcap"
    with open(q, "wb") as f:
        dpkt.pcap.Writer(f, linktype=147).writepkt(b"xx", ts=1.0)
    assert _cli(capsys, q, "--device", D4) == (2, "", "microagent import pcap: %s: %s\n" % (q, why))
    q = tmp_path / "user0.pcapng"
    with open(q, "wb") as f:
        dpkt.pcapng.Writer(f, linktype=147).writepkt(b"xx", ts=1.0)
    assert _cli(capsys, q, "--device", D4) == (2, "", "microagent import pcap: %s: interface 0: %s\n" % (q, why))


@pytest.mark.parametrize("argv,why", [
    (["--udp-idle", "-5"], "--udp-idle -5: must be seconds above 0 (at most 3155760000)"),
    (["--udp-idle", "0"], "--udp-idle 0: must be seconds above 0 (at most 3155760000)"),
    (["--udp-idle", "nan"], "--udp-idle nan: must be seconds above 0 (at most 3155760000)"),
    (["--udp-idle", "inf"], "--udp-idle inf: must be seconds above 0 (at most 3155760000)"),
    (["--mqtt-port", "0"], "--mqtt-port 0: must be a port 1..65535"),
    (["--mqtt-port", "1883", "--mqtt-port", "70000"], "--mqtt-port 70000: must be a port 1..65535"),
    (["--device-id", ""], "--device-id '': must be a non-empty string of at most 128 characters"),
    (["--device-id", "d" * 129], "--device-id '%s': must be a non-empty string of at most 128 characters" % ("d" * 129)),
])
def test_nonsensical_options(tmp_path, capsys, argv, why):
    p = _three(tmp_path)
    assert _cli(capsys, p, "--device", D4, *argv) == (2, "", "microagent import pcap: %s\n" % why)


def test_inbound_port_is_the_devices_service_port(tmp_path, mp_lib, capsys):
    # three SSH attempts from a threat-intel address: the agent's findings
    # name the device's port 22 (the service attacked), not the attacker's
    # ephemeral ports
    bad = "203.0.113.9"
    pk = []
    for i, sp in enumerate((50001, 50002, 50003)):
        pk += [(i, tcp(bad, D4, sp, 22, SYN, 1)), (i + 0.5, tcp(D4, bad, 22, sp, FIN | ACK, 1))]
    p = write(tmp_path / "inb.pcap", pk)
    q = tmp_path / "inb.jsonl"
    assert cli.main(["import", "pcap", str(p), "--device", D4, "--out", str(q)]) == 0
    lines = q.read_text().splitlines()
    assert [json.loads(l)["port"] for l in lines[1:] if '"accept"' in l] == [22, 22, 22]
    h = json.loads(lines[0])
    h["config"]["threatIntel"] = {"ips": [bad]}
    h["end"] = 61
    h["expect"] = [{"type": "suspicious_ip", "count": 1, "details": {"remote": bad, "port": 22, "direction": "in"},
                    "times": 1},
                   {"type": "suspicious_ip", "count": 2, "details": {"remote": bad, "port": 22, "direction": "in"},
                    "times": 1}]
    h["exact"] = True
    q.write_text("\n".join([json.dumps(h)] + lines[1:]) + "\n")
    capsys.readouterr()
    assert cli.main(["replay", "--check", str(q)]) == 0, capsys.readouterr().out
