"""`microagent import pcap FILE --device IP [--out FILE]`: a packet capture
as a scenario file (host_tools/pcapimport.py says what becomes which
event). The events are streamed to a temporary file and the header (whose
device id is known only once the MQTT CONNECT was seen) is written in
front of them at the end: memory stays constant in the capture's size.
Exit status 0, or 2 for a capture or an argument that cannot be used.
"""
import datetime
import ipaddress
import json
import os
import shutil
import sys
import tempfile

from . import pcapimport


def convert(src, dst, device, device_id=None, mqtt_ports=(1883,), udp_idle=30.0, name=None):
    """Write the scenario of capture file `src` to the text stream `dst`.
    Returns the stats dict (packets, skipped, tcp, udp, mqtt, events,
    device_id). Raises pcapimport.ImportError_ or OSError."""
    stats = {}
    with open(src, "rb") as f, tempfile.TemporaryFile("w+", encoding="utf-8") as tmp:
        reader = pcapimport.open_capture(f)
        n = 0
        cid = None
        try:
            for e in pcapimport.events(reader, device, tuple(mqtt_ports), udp_idle, stats):
                if cid is None and e["event"] == "mqtt_connect":
                    cid = e["client_id"]
                tmp.write(json.dumps(e) + "\n")
                n += 1
        except (ValueError, EOFError) as e:  # dpkt's truncated-file errors included
            raise pcapimport.ImportError_("capture ends in a broken packet (%s)" % e)
        dev_id = device_id or cid or "device"
        first = stats.get("first_ts")
        start = datetime.datetime.fromtimestamp(int(first) if first is not None else 0, datetime.timezone.utc)
        header = {"scenario": name or os.path.splitext(os.path.basename(src))[0], "device": dev_id,
                  "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "config": {"deviceId": dev_id}}
        dst.write(json.dumps(header) + "\n")
        tmp.seek(0)
        shutil.copyfileobj(tmp, dst)
    stats["events"] = n
    stats["device_id"] = dev_id
    return stats


def cmd_pcap(args):
    try:
        ipaddress.ip_address(args.device)
    except ValueError:
        print("microagent import pcap: --device %s is not an IP address" % args.device, file=sys.stderr)
        return 2
    out = None
    try:
        if args.out:
            out = open(args.out + ".tmp", "w", encoding="utf-8")
        st = convert(args.file, out or sys.stdout, args.device, args.device_id, args.mqtt_port or (1883,),
                     args.udp_idle)
    except (pcapimport.ImportError_, OSError) as e:
        if out:
            out.close()
            os.unlink(args.out + ".tmp")
        print("microagent import pcap: %s: %s" % (args.file, getattr(e, "strerror", None) or e), file=sys.stderr)
        return 2
    if out:
        out.close()
        os.replace(args.out + ".tmp", args.out)
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
    p.set_defaults(func=cmd_pcap)
