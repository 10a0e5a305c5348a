"""A packet capture (pcap or pcapng, read with dpkt) as scenario events
(../shared/spec/scenario.md), from the point of view of one device IP.

- Time starts at the capture's first packet (t=0), whatever it is.
- TCP: a SYN without ACK opens a connection: `connect` when the device
  sent it, `accept` when it came to the device (a retransmitted SYN opens
  nothing new). The connection closes (`close`) at the device's FIN or at a
  RST from either side, so a refused connection is a connect and a close,
  as the device's socket wrapper reports it. Segments of a flow whose SYN
  was not captured (it began before the capture) are ignored.
- UDP: a flow (device port, remote address, remote port) opens with its
  first datagram (`connect`/`accept` with "proto": "udp") and closes
  after `udp_idle` seconds without a datagram (30 s, as Linux conntrack's
  UDP timeout), at that time; flows still fresh at the end stay open.
- MQTT 3.1.1/5 in the clear (remote port 1883, or mqtt_ports): each
  direction's TCP stream is put back in order and cut into MQTT packets:
  CONNECT -> mqtt_connect, CONNACK -> mqtt_connack, SUBACK ->
  mqtt_suback, PUBLISH device->broker -> mqtt_publish, broker->device ->
  mqtt_message (`bytes` = payload size). SUBSCRIBE has no scenario event.
  TLS (8883 and anything else) is connections only: nothing is decrypted.
- Packets neither from nor to the device are skipped; so are non-IP
  frames, IP fragments after the first and truncated packets.

Memory: the flows open at a moment and, per MQTT stream, the bytes of one
unfinished MQTT packet (and at most MAX_HELD out-of-order segments), never
the capture.
"""
import ipaddress
import socket

import dpkt

MAX_HELD = 64           # out-of-order segments held per MQTT stream
MAX_MQTT_PACKET = 1 << 20  # a longer MQTT packet desynchronizes the stream (skipped)
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class ImportError_(ValueError):
    """A capture that cannot be read (message says why)."""


def open_capture(f):
    """A dpkt reader for a binary file object: pcapng or pcap, told by
    the first 4 bytes. Raises ImportError_."""
    head = f.read(4)
    f.seek(0)
    try:
        if head == PCAPNG_MAGIC:
            return dpkt.pcapng.Reader(f)
        return dpkt.pcap.Reader(f)
    except (ValueError, dpkt.dpkt.Error) as e:
        raise ImportError_("not a pcap or pcapng capture (%s)" % e)


def _ip_of(linktype, buf):
    # the IP/IP6 packet of a frame, or None
    if linktype == dpkt.pcap.DLT_EN10MB:
        pkt = dpkt.ethernet.Ethernet(buf).data
    elif linktype == dpkt.pcap.DLT_LINUX_SLL:
        pkt = dpkt.sll.SLL(buf).data
    elif linktype == 276:  # LINUX_SLL2 (tcpdump -i any)
        pkt = dpkt.sll2.SLL2(buf).data
    elif linktype in (101, 12, 14):  # LINKTYPE_RAW and the DLT_RAW values
        v = buf[0] >> 4 if buf else 0
        pkt = dpkt.ip.IP(buf) if v == 4 else dpkt.ip6.IP6(buf) if v == 6 else None
    elif linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        pkt = dpkt.loopback.Loopback(buf).data
    else:
        raise ImportError_("link type %d is not supported (Ethernet, Linux cooked, raw IP, loopback are)" % linktype)
    if isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return pkt
    return None


def _addr(pkt):
    if isinstance(pkt, dpkt.ip.IP):
        return socket.inet_ntop(socket.AF_INET, pkt.src), socket.inet_ntop(socket.AF_INET, pkt.dst)
    return socket.inet_ntop(socket.AF_INET6, pkt.src), socket.inet_ntop(socket.AF_INET6, pkt.dst)


def _text(b):
    return b.decode("utf-8", "replace")


class _Stream:
    """One direction of a TCP connection carrying MQTT: in-order bytes,
    cut into MQTT packets."""

    def __init__(self):
        self.next = None  # next expected sequence number
        self.buf = b""
        self.held = {}
        self.dead = False

    def add(self, seq, data, syn=False):
        """Feed a segment; returns the bytes now in order (b"" if none)."""
        if syn:
            self.next = (seq + 1) & 0xFFFFFFFF
            return b""
        if self.dead or self.next is None or not data:
            return b""
        d = (seq - self.next) & 0xFFFFFFFF
        if d >= 0x80000000:  # before next: a retransmission, maybe partly new
            back = 0x100000000 - d
            if back >= len(data):
                return b""
            data = data[back:]
            d = 0
        if d > 0:
            if len(self.held) >= MAX_HELD:
                self.dead = True
            else:
                self.held[seq] = data
            return b""
        out = [data]
        self.next = (self.next + len(data)) & 0xFFFFFFFF
        while self.next in self.held:
            seg = self.held.pop(self.next)
            out.append(seg)
            self.next = (self.next + len(seg)) & 0xFFFFFFFF
        return b"".join(out)

    def packets(self, data):
        """Yield (type, flags, body) of each MQTT packet completed by data."""
        self.buf += data
        while not self.dead:
            b = self.buf
            if len(b) < 2:
                return
            n = 0
            mult = 1
            i = 1
            while True:
                if i >= len(b):
                    return
                c = b[i]
                n += (c & 0x7F) * mult
                i += 1
                if not c & 0x80:
                    break
                mult <<= 7
                if i > 4:
                    self.dead = True
                    return
            if n > MAX_MQTT_PACKET:
                self.dead = True
                return
            if len(b) < i + n:
                return
            self.buf = b[i + n:]
            yield b[0] >> 4, b[0] & 0x0F, b[i:i + n]


def _u16(b, i):
    return (b[i] << 8) | b[i + 1], i + 2


def _str16(b, i):
    n, i = _u16(b, i)
    if i + n > len(b):
        raise IndexError("string past the end")
    return b[i:i + n], i + n


def _varint(b, i):
    n = 0
    mult = 1
    for _ in range(4):
        c = b[i]
        i += 1
        n += (c & 0x7F) * mult
        if not c & 0x80:
            return n, i
        mult <<= 7
    raise IndexError("bad variable byte integer")


def _connect(body):
    # MQTT 3.1.1 s3.1 / 5.0 s3.1: returns (client_id, username, password, level)
    _, i = _str16(body, 0)  # protocol name
    level = body[i]
    flags = body[i + 1]
    i += 4  # level, flags, keep alive
    if level == 5:
        n, i = _varint(body, i)
        i += n
    cid, i = _str16(body, i)
    if flags & 0x04:  # will
        if level == 5:
            n, i = _varint(body, i)
            i += n
        _, i = _str16(body, i)
        _, i = _str16(body, i)
    user = pw = None
    if flags & 0x80:
        user, i = _str16(body, i)
    if flags & 0x40:
        pw, i = _str16(body, i)
    return _text(cid), None if user is None else _text(user), None if pw is None else _text(pw), level


def events(reader, device, mqtt_ports=(1883,), udp_idle=30.0, stats=None):
    """Yield scenario event dicts (with "t") from a dpkt reader, for the
    device at IP text `device`, in time order. stats (dict), when given,
    receives counters: packets, skipped, tcp, udp, mqtt, first_ts.
    Raises ImportError_ for an unsupported link type."""
    dev = ipaddress.ip_address(device)
    dev_s = str(dev)
    linktype = reader.datalink()
    st = stats if stats is not None else {}
    for k in ("packets", "skipped", "tcp", "udp", "mqtt"):
        st.setdefault(k, 0)
    t0 = None
    t = 0.0
    conns = {}   # (proto, local port, remote, remote port) -> flow dict
    next_id = 0
    udp_next = None  # no UDP flow can be due before this (a lower bound)

    def idle_closes(now):
        # UDP flows idle for udp_idle seconds close at last + udp_idle
        due = []
        for k, fl in conns.items():
            if k[0] == "udp" and fl["last"] + udp_idle <= now:
                due.append((fl["last"] + udp_idle, fl["id"], k))
        due.sort()
        for at, cid, k in due:
            del conns[k]
            yield {"t": round(at, 6), "event": "close", "id": cid}

    for ts, buf in reader:
        st["packets"] += 1
        if t0 is None:
            t0 = ts
            st["first_ts"] = ts
        t = float(ts - t0)
        try:
            pkt = _ip_of(linktype, buf)
        except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, IndexError):
            pkt = None
        if pkt is None:
            st["skipped"] += 1
            continue
        src, dst = _addr(pkt)
        if src == dev_s:
            out, remote = True, dst
        elif dst == dev_s:
            out, remote = False, src
        else:
            st["skipped"] += 1
            continue
        if udp_next is not None and udp_next <= t:
            for e in idle_closes(t):
                yield e
            dl = [fl["last"] + udp_idle for k, fl in conns.items() if k[0] == "udp"]
            udp_next = min(dl) if dl else None
        seg = pkt.data
        if isinstance(pkt, dpkt.ip.IP) and pkt.offset:
            st["skipped"] += 1  # a fragment after the first
            continue
        rt = round(t, 6)
        if isinstance(seg, dpkt.tcp.TCP):
            lport, rport = (seg.sport, seg.dport) if out else (seg.dport, seg.sport)
            key = ("tcp", lport, remote, rport)
            fl = conns.get(key)
            flags = seg.flags
            syn = flags & dpkt.tcp.TH_SYN
            ack = flags & dpkt.tcp.TH_ACK
            if syn and not ack and fl is None:
                next_id += 1
                fl = {"id": next_id}
                if rport in mqtt_ports and out:
                    fl["mqtt"] = {True: _Stream(), False: _Stream()}
                conns[key] = fl
                st["tcp"] += 1
                yield {"t": rt, "event": "connect" if out else "accept", "id": fl["id"], "remote": remote,
                       "port": rport}
            if fl is None:
                continue
            m = fl.get("mqtt")
            if m is not None:
                s = m[out]
                data = s.add(seg.seq, bytes(seg.data), bool(syn))
                if data:
                    for ptype, pflags, body in s.packets(data):
                        e = _mqtt_event(ptype, pflags, body, out, fl)
                        if e is not None:
                            st["mqtt"] += 1
                            yield dict({"t": rt}, **e)
            if flags & dpkt.tcp.TH_RST or (flags & dpkt.tcp.TH_FIN and out):
                del conns[key]
                yield {"t": rt, "event": "close", "id": fl["id"]}
        elif isinstance(seg, dpkt.udp.UDP):
            lport, rport = (seg.sport, seg.dport) if out else (seg.dport, seg.sport)
            key = ("udp", lport, remote, rport)
            fl = conns.get(key)
            if fl is None:
                next_id += 1
                fl = {"id": next_id}
                conns[key] = fl
                st["udp"] += 1
                yield {"t": rt, "event": "connect" if out else "accept", "id": fl["id"], "remote": remote,
                       "port": rport, "proto": "udp"}
            fl["last"] = t
            if udp_next is None or t + udp_idle < udp_next:
                udp_next = t + udp_idle
        else:
            st["skipped"] += 1
    # flows idle long enough by the last packet close; the rest stay open
    for e in idle_closes(t):
        yield e


def _mqtt_event(ptype, pflags, body, out, fl):
    # one MQTT packet as a scenario event (or None); malformed -> None
    try:
        if ptype == 1 and out:
            cid, user, pw, lv = _connect(body)
            fl["level"] = lv
            return {"event": "mqtt_connect", "client_id": cid, "username": user, "password": pw}
        if ptype == 2 and not out:
            return {"event": "mqtt_connack", "rc": body[1]}
        if ptype == 9 and not out:
            i = 2
            if fl.get("level") == 5:
                n, i = _varint(body, i)
                i += n
            rcs = list(body[i:])
            if not rcs:
                return None
            return {"event": "mqtt_suback", "rc": rcs if len(rcs) > 1 else rcs[0]}
        if ptype == 3:
            topic, i = _str16(body, 0)
            if (pflags >> 1) & 3:
                i += 2  # packet identifier
            if fl.get("level") == 5:
                n, i = _varint(body, i)
                i += n
            if i > len(body):
                return None
            return {"event": "mqtt_publish" if out else "mqtt_message", "topic": _text(topic), "bytes": len(body) - i}
    except IndexError:
        return None
    return None
