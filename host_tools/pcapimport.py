"""A packet capture (pcap or pcapng, read with dpkt) as scenario events
(../shared/spec/scenario.md), from the point of view of one device IP.

- Time starts at the capture's first packet (t=0), whatever it is. A
  timestamp going backwards (clock step, per-CPU capture queues) is put
  at the previous packet's time: the events stay in time order and in the
  order the capture saw the packets, and memory stays constant (sorting
  would hold the capture). stats["backwards"] counts them.
- TCP: a SYN without ACK opens a connection: `connect` when the device
  sent it, `accept` when it came to the device (a retransmitted SYN opens
  nothing new). `port` is the remote's port for `connect` and the
  device's own (service) port for `accept`, as the agent reports them.
  The connection closes (`close`) at the device's FIN or at a RST from
  either side, so a refused connection is a connect and a close, as the
  device's socket wrapper reports it. Segments of a flow whose SYN was
  not captured (it began before the capture) are ignored.
- UDP: a flow (device port, remote address, remote port) opens with its
  first datagram (`connect`/`accept` with "proto": "udp", `port` as for
  TCP) and closes after `udp_idle` seconds without a datagram (30 s, as
  Linux conntrack's UDP timeout), at that time; flows still fresh at the
  end stay open.
- MQTT 3.1.1/5 in the clear (remote port 1883, or mqtt_ports): each
  direction's TCP stream is put back in order and cut into MQTT packets:
  CONNECT -> mqtt_connect, CONNACK -> mqtt_connack, SUBACK ->
  mqtt_suback, PUBLISH device->broker -> mqtt_publish, broker->device ->
  mqtt_message (`bytes` = payload size). SUBSCRIBE has no scenario event.
  TLS (8883 and anything else) is connections only: nothing is decrypted.
- Packets neither from nor to the device are skipped; so are non-IP
  frames, IP fragments after the first and truncated packets.

The file is read record by record (pcap) or block by block (pcapng) with
dpkt's header and block classes; a capture that ends inside a record or
block, or whose record claims an impossible length, raises Broken saying
at which byte and record (events() can stop there and keep what came
before: `partial`).

Memory: the flows open at a moment and, per MQTT stream, the bytes of one
unfinished MQTT packet (and at most MAX_HELD out-of-order segments), never
the capture.
"""
import ipaddress
import socket
import struct

import dpkt

MAX_HELD = 64           # out-of-order segments held per MQTT stream
MAX_MQTT_PACKET = 1 << 20  # a longer MQTT packet desynchronizes the stream (skipped)
MAX_CAPLEN = 262144     # libpcap's MAXIMUM_SNAPLEN: no record of these link types is longer
MAX_BLOCK = MAX_CAPLEN + 65536  # a pcapng block: a packet plus generous options
MAX_T_NS = 3155760000 * 10 ** 9  # a scenario's t is at most 100 years
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
NS = 10 ** 9

# link types read: Ethernet, Linux cooked v1/v2, raw IP (LINKTYPE_RAW, the
# DLT_RAW values 12 and 14, LINKTYPE_IPV4/IPV6), BSD loopback (NULL, LOOP)
ETHERNET = (dpkt.pcap.DLT_EN10MB,)
SLL = (dpkt.pcap.DLT_LINUX_SLL,)
SLL2 = (276,)
RAW = (101, 12, 14, 228, 229)
LOOPBACK = (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP)
SUPPORTED = ETHERNET + SLL + SLL2 + RAW + LOOPBACK
_DLT_NAMES = {v: k for k, v in sorted(vars(dpkt.pcap).items()) if k.startswith("DLT_") and isinstance(v, int)}


class ImportError_(ValueError):
    """A capture that cannot be read (message says why)."""


class Broken(ImportError_):
    """The capture ends inside a record or block, or a record claims an
    impossible length: nothing after `offset` can be read. str() says
    where; `packets` is how many whole packets came before it."""

    def __init__(self, offset, packets, what):
        ImportError_.__init__(self, "capture broken at byte %d, after %d whole packet%s: %s" % (
            offset, packets, "" if packets == 1 else "s", what))
        self.offset = offset
        self.packets = packets


def link_name(linktype):
    """'147 (DLT_USER0)' for a link type number."""
    n = _DLT_NAMES.get(linktype)
    return "%d (%s)" % (linktype, n) if n else str(linktype)


def _check_link(linktype, where=""):
    if linktype not in SUPPORTED:
        raise ImportError_("%slink type %s is not supported (Ethernet 1, Linux cooked 113 and 276, raw IP "
                           "101/228/229, BSD loopback 0 and 108 are)" % (where, link_name(linktype)))


class Capture:
    """A capture file opened by open_capture(): kind ("pcap"/"pcapng"),
    linktype (the first interface's), and records(): yields (ns,
    linktype, frame) per packet, ns = integer nanoseconds since 1970;
    raises Broken where the file stops making sense."""

    def __init__(self, kind, linktype, gen):
        self.kind = kind
        self.linktype = linktype
        self._gen = gen

    def records(self):
        return self._gen


def open_capture(f):
    """A Capture for a binary file object: pcapng or pcap, told by the
    first 4 bytes. Raises ImportError_ for a file that is neither, or
    whose (first) link type is not supported."""
    head = f.read(12)
    f.seek(0)
    if head[:4] == PCAPNG_MAGIC:
        return _pcapng(f, head)
    return _pcap(f, head)


class _Guard:
    """The file as dpkt's readers see it while they read the file header:
    a read longer than MAX_BLOCK (a length field that is garbage) is
    refused before anything is allocated for it."""

    def __init__(self, f):
        self._f = f
        self.name = getattr(f, "name", "<capture>")

    def read(self, n=-1):
        if n is None or n < 0 or n > MAX_BLOCK:
            raise ValueError("a header claims %s bytes" % n)
        return self._f.read(n)


def _not_capture(e):
    return ImportError_("not a pcap or pcapng capture (%s)" % (e or type(e).__name__))


def _pcap(f, head):
    if len(head) < 4:
        raise ImportError_("not a pcap or pcapng capture (%d bytes)" % len(head))
    magic = int.from_bytes(head[:4], "big")
    try:
        r = dpkt.pcap.Reader(_Guard(f))  # the 24-byte file header, checked by dpkt
    except (ValueError, dpkt.dpkt.Error, struct.error) as e:
        raise _not_capture(e)
    ph = dpkt.pcap.MAGIC_TO_PKT_HDR[magic]
    _check_link(r.datalink())
    per = 1 if magic in (dpkt.pcap.TCPDUMP_MAGIC_NANO, dpkt.pcap.PMUDPCT_MAGIC_NANO) else 1000
    return Capture("pcap", r.datalink(), _pcap_records(f, ph, r.datalink(), per))


def _pcap_records(f, ph, linktype, per):
    n = ph.__hdr_len__
    off = f.tell()
    count = 0
    while True:
        h = f.read(n)
        if not h:
            return
        if len(h) < n:
            raise Broken(off, count, "record %d's %d-byte header is cut after %d bytes" % (count + 1, n, len(h)))
        hdr = ph(h)
        if hdr.caplen > MAX_CAPLEN:
            raise Broken(off, count, "record %d claims %d captured bytes (more than %d)" % (
                count + 1, hdr.caplen, MAX_CAPLEN))
        buf = f.read(hdr.caplen)
        if len(buf) < hdr.caplen:
            raise Broken(off, count, "record %d holds %d of its %d bytes" % (count + 1, len(buf), hdr.caplen))
        count += 1
        off += n + hdr.caplen
        yield hdr.tv_sec * NS + hdr.tv_usec * per, linktype, buf


def _iface(idb, le):
    # (linktype, units per second, offset s) of a pcapng interface (IDB)
    div = 10 ** 6
    offset = 0
    for opt in idb.opts:
        if opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            v = opt.data[0]
            div = 2 ** (v & 0x7F) if v & 0x80 else 10 ** (v & 0x7F)
        elif opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) >= 8:
            offset = struct.unpack("<q" if le else ">q", opt.data[:8])[0]
    return idb.linktype, div, offset


def _pcapng(f, head):
    le = head[8:12] == b"\x4d\x3c\x2b\x1a"
    try:
        r = dpkt.pcapng.Reader(_Guard(f))  # the section header and first interface, read by dpkt
    except (ValueError, dpkt.dpkt.Error, struct.error, IndexError) as e:
        raise _not_capture(e)
    first = _iface(r.idb, le)
    _check_link(first[0], "interface 0: ")
    return Capture("pcapng", first[0], _pcapng_records(f, le, [first]))


def _pcapng_records(f, le, ifaces):
    fmt = "<II" if le else ">II"
    epb = dpkt.pcapng.EnhancedPacketBlockLE if le else dpkt.pcapng.EnhancedPacketBlock
    idb = dpkt.pcapng.InterfaceDescriptionBlockLE if le else dpkt.pcapng.InterfaceDescriptionBlock
    off = f.tell()
    count = 0
    while True:
        h = f.read(8)
        if not h:
            return
        if len(h) < 8:
            raise Broken(off, count, "a block header is cut after %d of its 8 bytes" % len(h))
        btype, blen = struct.unpack(fmt, h)
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            raise Broken(off, count, "a block claims a length of %d bytes" % blen)
        body = f.read(blen - 8)
        if len(body) < blen - 8:
            raise Broken(off, count, "a block holds %d of its %d bytes" % (len(body) + 8, blen))
        buf = h + body
        if btype == dpkt.pcapng.PCAPNG_BT_EPB:
            try:
                b = epb(buf)
                lt, div, ts_off = ifaces[b.iface_id]
            except (dpkt.dpkt.Error, struct.error, IndexError, ValueError) as e:
                raise Broken(off, count, "packet block %d cannot be read (%s)" % (
                    count + 1, e or type(e).__name__))
            count += 1
            yield ts_off * NS + ((b.ts_high << 32) | b.ts_low) * NS // div, lt, b.pkt_data
        elif btype == dpkt.pcapng.PCAPNG_BT_IDB:
            try:
                i = _iface(idb(buf), le)
            except (dpkt.dpkt.Error, struct.error, ValueError) as e:
                raise Broken(off, count, "interface block cannot be read (%s)" % (e or type(e).__name__))
            _check_link(i[0], "interface %d: " % len(ifaces))
            ifaces.append(i)
        elif btype == dpkt.pcapng.PCAPNG_BT_SHB:
            raise ImportError_("a second pcapng section at byte %d (captures joined with cat?): use mergecap" % off)
        off += blen


def _ip_of(linktype, buf):
    # the IP/IP6 packet of a frame, or None
    if linktype == dpkt.pcap.DLT_EN10MB:
        pkt = dpkt.ethernet.Ethernet(buf).data
    elif linktype == dpkt.pcap.DLT_LINUX_SLL:
        pkt = dpkt.sll.SLL(buf).data
    elif linktype == 276:  # LINUX_SLL2 (tcpdump -i any)
        pkt = dpkt.sll2.SLL2(buf).data
    elif linktype in RAW:
        v = buf[0] >> 4 if buf else 0
        pkt = dpkt.ip.IP(buf) if v == 4 else dpkt.ip6.IP6(buf) if v == 6 else None
    elif linktype in LOOPBACK:
        pkt = dpkt.loopback.Loopback(buf).data
    else:
        _check_link(linktype)
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


def events(capture, device, mqtt_ports=(1883,), udp_idle=30.0, stats=None, partial=False):
    """Yield scenario event dicts (with "t") from a Capture
    (open_capture()), for the device at IP text `device`, in time order.

    stats (dict), when given, receives counters: packets, skipped, tcp,
    udp, mqtt, backwards (timestamps that went back, each put at the
    previous packet's time), back_max (the largest step back, seconds),
    first_ns (the first packet's time), and `broken` (the Broken message)
    when partial reading stopped early. Raises Broken where the capture
    stops making sense (unless partial: then the events end there as if
    the capture did), ImportError_ for an unsupported link type or a
    packet more than 100 years after the first."""
    dev = ipaddress.ip_address(device)
    dev_s = str(dev)
    st = stats if stats is not None else {}
    for k in ("packets", "skipped", "tcp", "udp", "mqtt", "backwards"):
        st.setdefault(k, 0)
    st.setdefault("back_max", 0.0)
    t0 = None
    last_ns = None
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

    records = capture.records()
    while True:
        try:
            ns, linktype, buf = next(records)
        except StopIteration:
            break
        except Broken as e:
            if not partial:
                raise
            st["broken"] = str(e)
            break
        st["packets"] += 1
        if t0 is None:
            t0 = last_ns = ns
            st["first_ns"] = ns
        if ns < last_ns:  # back in time: keep the order the capture saw
            st["backwards"] += 1
            st["back_max"] = max(st["back_max"], (last_ns - ns) / NS)
            ns = last_ns
        last_ns = ns
        if ns - t0 > MAX_T_NS:
            raise ImportError_("packet %d is more than 100 years after the first" % st["packets"])
        t = (ns - t0) / NS
        try:
            pkt = _ip_of(linktype, buf)
        except (dpkt.dpkt.Error, IndexError, struct.error, ValueError):  # a cut or garbled frame
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
                # the agent's port: the remote's for an outbound connection,
                # the device's own (the service) for an inbound one
                yield {"t": rt, "event": "connect" if out else "accept", "id": fl["id"], "remote": remote,
                       "port": rport if out else lport}
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
                       "port": rport if out else lport, "proto": "udp"}
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
