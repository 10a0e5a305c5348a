"""`microagent import pcap FILE --device IP [--out FILE]`: a packet capture
as a scenario file (host_tools/pcapimport.py says what becomes which
event). The events are streamed to a temporary file and the header (whose
device id is known only once the MQTT CONNECT was seen) is written in
front of them at the end: memory stays constant in the capture's size.
Exit status 0, or 2 with one line for a capture or an argument that
cannot be used: not a capture, no packets, a capture broken half-way
(with --partial: the packets before the break are kept, status 0), an
unsupported link type, a --device that is not an IP address, a
--udp-idle that is not a positive number of seconds, an --mqtt-port
outside 1..65535, a --device-id the agent would refuse.
"""
import datetime
import ipaddress
import json
import math
import os
import shutil
import sys
import tempfile

from . import pcapimport
from .scenario import MAX_T, fw


def device_id_ok(text):
    """True when `text` is a deviceId the firmware's config.parse takes."""
    config = fw()[0]
    try:
        config.parse({"deviceId": text})
    except config.ConfigError:
        return False
    return True


def convert(src, dst, device, device_id=None, mqtt_ports=(1883,), udp_idle=30.0, name=None, partial=False):
    """Write the scenario of capture file `src` to the text stream `dst`.
    Returns the stats dict (packets, skipped, tcp, udp, mqtt, backwards,
    back_max, events, device_id, and broken when partial reading stopped
    early). Raises pcapimport.ImportError_ (pcapimport.Broken for a
    capture broken half-way, unless partial) or OSError."""
    stats = {}
    with open(src, "rb") as f, tempfile.TemporaryFile("w+", encoding="utf-8") as tmp:
        cap = pcapimport.open_capture(f)
        n = 0
        cid = None
        for e in pcapimport.events(cap, device, tuple(mqtt_ports), udp_idle, stats, partial):
            if cid is None and e["event"] == "mqtt_connect" and device_id_ok(e["client_id"]):
                cid = e["client_id"]
            tmp.write(json.dumps(e) + "\n")
            n += 1
        if not stats["packets"]:
            raise pcapimport.ImportError_("no packets" + (" before the break (%s)" % stats["broken"]
                                                          if "broken" in stats else " in the capture"))
        dev_id = device_id or cid or "device"
        first = stats["first_ns"] // pcapimport.NS
        start = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=first)
        header = {"scenario": name or os.path.splitext(os.path.basename(src))[0], "device": dev_id,
                  "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "config": {"deviceId": dev_id}}
        dst.write(json.dumps(header) + "\n")
        tmp.seek(0)
        shutil.copyfileobj(tmp, dst)
    stats["events"] = n
    stats["device_id"] = dev_id
    return stats


def _check_args(args):
    # the reason an argument cannot be used, or None
    try:
        ipaddress.ip_address(args.device)
    except ValueError:
        return "--device %s is not an IP address" % args.device
    if not (math.isfinite(args.udp_idle) and 0 < args.udp_idle <= MAX_T):
        return "--udp-idle %g: must be seconds above 0 (at most %d)" % (args.udp_idle, MAX_T)
    for p in args.mqtt_port or ():
        if not 1 <= p <= 65535:
            return "--mqtt-port %d: must be a port 1..65535" % p
    if args.device_id is not None and not device_id_ok(args.device_id):
        return "--device-id %r: must be a non-empty string of at most 128 characters" % args.device_id
    return None


def cmd_pcap(args):
    why = _check_args(args)
    if why:
        print("microagent import pcap: %s" % why, file=sys.stderr)
        return 2
    out = None
    try:
        if args.out:
            out = open(args.out + ".tmp", "w", encoding="utf-8")
        st = convert(args.file, out or sys.stdout, args.device, args.device_id, args.mqtt_port or (1883,),
                     args.udp_idle, partial=args.partial)
    except (pcapimport.ImportError_, OSError) as e:
        if out:
            out.close()
            os.unlink(args.out + ".tmp")
        msg = getattr(e, "strerror", None) or str(e)
        if isinstance(e, pcapimport.Broken):
            msg += " (--partial keeps the packets before it)"
        print("microagent import pcap: %s: %s" % (args.file, msg), file=sys.stderr)
        return 2
    if out:
        out.close()
        os.replace(args.out + ".tmp", args.out)
    if "broken" in st:
        print("microagent import pcap: %s: %s; kept what came before (--partial)" % (args.file, st["broken"]),
              file=sys.stderr)
    if st["backwards"]:
        print("microagent import pcap: %s: %d packet%s had a timestamp before the previous packet's (by up to "
              "%g s): each was put at the previous packet's time" % (
                  args.file, st["backwards"], "" if st["backwards"] == 1 else "s", st["back_max"]), file=sys.stderr)
    print("microagent import pcap: %d events from %d packets (%d TCP connections, %d UDP flows, %d MQTT packets; "
          "%d packets not the device's or not IP) for device %s%s" % (
              st["events"], st["packets"], st["tcp"], st["udp"], st["mqtt"], st["skipped"], st["device_id"],
              (" -> " + args.out) if args.out else ""), file=sys.stderr)
    return 0


def add_parser(sub):
    r = sub.add_parser("import", help="make scenario files from other records (pcap)")
    s = r.add_subparsers(dest="source", required=True, metavar="SOURCE")
    p = s.add_parser("pcap", help="a packet capture (pcap or pcapng) as a scenario",
                     description="Turn a packet capture (pcap or pcapng) into a scenario file: TCP connections "
                                 "and UDP flows of the device, plain MQTT (1883) packets as mqtt_* events.")
    p.add_argument("file", metavar="FILE", help="capture file (pcap or pcapng)")
    p.add_argument("--device", required=True, metavar="IP", help="the device's IP address in the capture")
    p.add_argument("--out", metavar="FILE", help="scenario file to write (default: stdout)")
    p.add_argument("--device-id", help="device id for the header (default: the MQTT CONNECT's client id)")
    p.add_argument("--mqtt-port", type=int, action="append", metavar="PORT",
                   help="remote port of MQTT in the clear (default 1883; repeat for more)")
    p.add_argument("--udp-idle", type=float, default=30.0, metavar="S",
                   help="seconds without a datagram that close a UDP flow (default 30)")
    p.add_argument("--partial", action="store_true",
                   help="a capture broken half-way (a capture tool killed mid-write): keep the packets before "
                        "the break instead of refusing it")
    p.set_defaults(func=cmd_pcap)
