"""`microagent baseline suggest FILE... [--margin PCT]`: propose a baseline
(config.md: timeWindowRules thresholds and a ConnectionToIpNotAllowed
allow list) from what a device was seen doing.

Input, each file told by its first line:
- scenario files (scenario.md): the events are counted per tumbling time
  window exactly as the agent windows them (windows start at t=0 and again
  at each reboot; a window cut short by a reboot is never evaluated, as on
  the device; a window still open at the end of the observation - the
  header's `end`, else the last event - is only partly seen and is not
  counted), giving one value per window and rule: the number
  of C2D / D2C / direct method / twin / rejected / unauthorized events, and
  for ActiveConnectionsNotInAllowedRange the peak of open connections.
  Outbound destinations make the allow list.
- saved console logs (the agent's ALERT lines): the `details.value` of the
  time-window alerts are the values seen (the windows inside the logged
  rule's range are not in a log, so that rule's max counts as seen too),
  and the remotes of ConnectionToIpNotAllowed alerts join the allow list.

Thresholds: maxThreshold = the 99th percentile of the values (nearest
rank) plus the margin, rounded up; minThreshold = the 1st percentile minus
the margin, rounded down. Windows: the size the scenario's config gives
the rule, else --window (PT15M). Allow list: each destination widened to
its /--prefix4 (24) or /--prefix6 (64) network, then collapsed with
ipaddress.collapse_addresses. The config is printed on stdout (validated
with the firmware's config.parse), one line per number on stderr saying
where it comes from. Exit 0, or 2 with one line naming the file (and
line) for a file that cannot be read: a bad scenario, a console log line
the agent would never print (log_alerts() says which field), text that is
neither, an empty file - and when nothing was seen to suggest from (no
whole window, no outbound connection): never an empty config.
"""
import collections
import ipaddress
import json
import math
import sys

from .scenario import Scenario, ScenarioError, fw, show

PCT_HIGH = 99
PCT_LOW = 1


def _iothub():
    fw()
    from microagent import config, iothub
    from microagent.duration import parse_duration
    return config, iothub, parse_duration


class Observed:
    """Per-window values (histograms) of each window rule, and the
    outbound destinations, gathered from scenarios and logs."""

    def __init__(self, sizes):
        config, _, _ = _iothub()
        self.rules = config.WINDOW_RULES
        self.sizes = sizes                      # ruleType -> (seconds, duration text)
        self.hist = {rt: collections.Counter() for rt in self.rules}
        self.windows = collections.Counter()    # ruleType -> windows counted
        self.floor = {}                         # ruleType -> a logged rule's max (log input)
        self.dests = collections.Counter()      # address text -> outbound connections
        self.threats = []                       # ip_network of threat-intel lists, and suspicious remotes
        self.devices = []
        self.sources = []                       # "scenario"/"log" per file

    # ---- scenarios --------------------------------------------------------
    def add_scenario(self, sc):
        config, iothub, _ = _iothub()
        h = sc.header
        for v in (h.config.get("threatIntel") or {}).get("ips") or []:
            try:
                self.threats.append(ipaddress.ip_network(v, strict=False))
            except ValueError:
                pass
        dev = h.cfg.device_id
        if dev not in self.devices:
            self.devices.append(dev)
        n = len(self.rules)
        size = [self.sizes[rt][0] * 1000 for rt in self.rules]
        ctr = [0] * n
        start = 0          # ms where the running agent's windows began
        nxt = list(size)   # ms where each rule's current window ends
        open_ids = set()
        last = 0

        def close_until(T):
            # close every window that ended by T (ms), in order
            for i in range(n):
                while nxt[i] <= T:
                    self.hist[self.rules[i]][ctr[i]] += 1
                    self.windows[self.rules[i]] += 1
                    ctr[i] = len(open_ids) if i == config.ACTIVE else 0
                    nxt[i] += size[i]

        kinds = {iothub.C2D: config.C2D, iothub.METHOD: config.METHOD, iothub.TWIN: config.TWIN}
        for ev in sc.events():
            T = ev.ms
            close_until(T)
            e = ev.name
            f = ev.fields
            last = T
            if e in ("connect", "accept"):
                open_ids.add(f["id"])
                if len(open_ids) > ctr[config.ACTIVE]:
                    ctr[config.ACTIVE] = len(open_ids)
                if e == "connect":
                    self.dests[_canon(f["remote"])] += 1
            elif e == "close":
                open_ids.discard(f["id"])
            elif e == "mqtt_message":
                k = kinds.get(iothub.incoming(f["topic"], dev))
                if k is not None:
                    ctr[k] += 1
            elif e == "mqtt_publish":
                if iothub.outgoing(f["topic"], dev) == iothub.D2C:
                    ctr[config.D2C] += 1
            elif e == "c2d_reject":
                ctr[config.REJECTED] += 1
            elif e == "mqtt_connack":
                if f["rc"] in (4, 5):
                    ctr[config.UNAUTHORIZED] += 1
            elif e == "mqtt_suback":
                ctr[config.UNAUTHORIZED] += sum(1 for r in f["rc"] if r == 0x80)
            elif e == "reboot":
                # the cut-short windows are never evaluated; new ones start now
                open_ids.clear()
                start = T
                for i in range(n):
                    ctr[i] = 0
                    nxt[i] = start + size[i]
        # the observation ends at the header's end, else at the last event:
        # a window still open then is only partly seen and is not counted
        stop = sc.header.end_ms if sc.header.end_ms is not None else last
        for i in range(n):
            while nxt[i] <= stop:
                self.hist[self.rules[i]][ctr[i]] += 1
                self.windows[self.rules[i]] += 1
                ctr[i] = len(open_ids) if i == config.ACTIVE else 0
                nxt[i] += size[i]
        self.sources.append("scenario")

    # ---- console logs ---------------------------------------------------------
    def add_log(self, path):
        for no, a in log_alerts(path):
            t = a["type"]
            d = a.get("details")
            n = a.get("count", 1)
            dev = a.get("device")
            if dev is not None and dev not in self.devices:
                self.devices.append(dev)
            if t in self.hist:
                self.hist[t][d["value"]] += n
                self.windows[t] += n
                if "max" in d:
                    self.floor[t] = max(self.floor.get(t, 0), d["max"])
            elif t == "ConnectionToIpNotAllowed":
                self.dests[_canon(d["remote"])] += n
            elif t == "suspicious_ip":
                self.threats.append(ipaddress.ip_network(_canon(d["remote"])))
        self.sources.append("log")


MAX_VALUE = (1 << 31) - 1  # a per-window value or threshold a board holds in a small int
MAX_WINDOW_S = 2592000     # P30D, the longest window config.md allows


def log_alerts(path):
    """Yield (line number, finding dict) of each ALERT/RECOMMENDATION line
    of an agent console log, checked as the agent writes them (other lines
    are skipped). Raises ScenarioError naming the file and line for text
    that is not UTF-8, a line that is not JSON, and fields this command
    uses that the agent would never print: a device that is not a device
    id, a count that is not a whole number >= 1, details that are not an
    object, a time-window value or max that is not a whole number
    0..2**31-1, a window_s outside 1..2592000 (P30D), a remote that is not
    an IP address as the agent prints it; and for a file with no agent
    line at all (empty, or some other text)."""
    config, _, _ = _iothub()
    agent_lines = 0
    no = 0
    with open(path, "rb") as f:
        for raw in f:
            no += 1
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ScenarioError(path, no, "not UTF-8 text (not an agent console log)")
            if line.startswith("microagent:"):
                agent_lines += 1
            if line.startswith("ALERT "):
                body = line[6:]
            elif line.startswith("RECOMMENDATION "):
                body = line[15:]
            else:
                continue
            agent_lines += 1
            try:
                a = json.loads(body)
            except (ValueError, RecursionError):
                raise ScenarioError(path, no, "not an agent console line (bad JSON after %s)" % line.split(" ")[0])
            try:
                _check_alert(a, config)
            except ValueError as e:
                raise ScenarioError(path, no, "not an agent console line (%s)" % e)
            yield no, a
    if not agent_lines:
        raise ScenarioError(path, 0, ("empty file" if not no else "no agent console line (ALERT, RECOMMENDATION, "
                                      "microagent:) and not a scenario") + ": nothing to suggest from")


def _whole(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_alert(a, config):
    # the fields of a decoded ALERT line that suggest() uses; ValueError says which is wrong
    if not isinstance(a, dict) or not isinstance(a.get("type"), str):
        raise ValueError("not an object with a type")
    dev = a.get("device")
    if dev is not None and not (isinstance(dev, str) and 0 < len(dev) <= 128):
        raise ValueError("device %s is not a device id" % show(dev))
    if "count" in a and not _whole(a["count"], 1, MAX_VALUE):
        raise ValueError("count %s is not a whole number >= 1" % show(a["count"]))
    t = a["type"]
    if t not in config.WINDOW_RULES and t != "ConnectionToIpNotAllowed":
        return
    d = a.get("details")
    if not isinstance(d, dict):
        raise ValueError("details %s is not an object" % show(d))
    if t == "ConnectionToIpNotAllowed":
        _, _, ipaddr, _ = fw()
        r = d.get("remote")
        try:
            if not isinstance(r, str):
                raise ValueError
            ipaddr.parse_ip(r)
            ipaddress.ip_address(r)
        except ValueError:
            raise ValueError("details.remote %s is not an IP address" % show(r))
        return
    for k in ("value", "max"):
        if k in d or k == "value":
            if not _whole(d.get(k), 0, MAX_VALUE):
                raise ValueError("details.%s %s is not a whole number 0..%d" % (k, show(d.get(k)), MAX_VALUE))
    if "window_s" in d and not _whole(d["window_s"], 1, MAX_WINDOW_S):
        raise ValueError("details.window_s %s is not a whole number of seconds 1..%d (P30D)" % (
            show(d["window_s"]), MAX_WINDOW_S))


def _canon(text):
    # an address as the agent shows it: an IPv4-mapped IPv6 address as IPv4
    ip = ipaddress.ip_address(text)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def iso_duration(seconds):
    """ISO 8601 duration text for whole seconds (PT1H, PT15M, PT90S)."""
    if seconds % 3600 == 0:
        return "PT%dH" % (seconds // 3600)
    if seconds % 60 == 0:
        return "PT%dM" % (seconds // 60)
    return "PT%dS" % seconds


def percentile(hist, p):
    """Nearest-rank p-th percentile of a histogram {value: count}."""
    total = sum(hist.values())
    rank = max(1, math.ceil(p / 100.0 * total))
    seen = 0
    for v in sorted(hist):
        seen += hist[v]
        if seen >= rank:
            return v
    raise ValueError("empty histogram")


def _fmt_pct(x):
    return ("%g" % x)


def suggest(obs, margin, prefix4, prefix6):
    """(config dict, explanation lines) from an Observed."""
    doc = {"deviceId": obs.devices[0] if obs.devices else "device", "timeWindowRules": []}
    why = []
    m = margin / 100.0
    for rt in obs.rules:
        h = obs.hist[rt]
        if not h:
            continue
        nwin = obs.windows[rt]
        hi_p = percentile(h, PCT_HIGH)
        lo_p = percentile(h, PCT_LOW)
        top = max(h)
        base_hi = hi_p
        src = "the %dth percentile of %d %s windows" % (PCT_HIGH, nwin, obs.sizes[rt][1])
        if rt in obs.floor and obs.floor[rt] > base_hi:
            base_hi = obs.floor[rt]
            src = "the logged rule's maxThreshold (above the %dth percentile %d of %d alerting windows)" % (
                PCT_HIGH, hi_p, nwin)
        hi = int(math.ceil(base_hi * (1 + m) - 1e-9))
        lo = int(math.floor(lo_p * (1 - m) + 1e-9))
        if rt in obs.floor:
            lo = 0
        doc["timeWindowRules"].append({"ruleType": rt, "isEnabled": True, "minThreshold": lo, "maxThreshold": hi,
                                       "timeWindowSize": obs.sizes[rt][1]})
        why.append("%s.maxThreshold %d: %s is %d (highest %d), plus %s%%, rounded up" % (
            rt, hi, src, base_hi, top, _fmt_pct(margin)))
        if rt in obs.floor:
            why.append("%s.minThreshold 0: a log holds only the windows outside the old range" % rt)
        else:
            why.append("%s.minThreshold %d: the %dst percentile is %d (lowest %d), minus %s%%, rounded down" % (
                rt, lo, PCT_LOW, lo_p, min(h), _fmt_pct(margin)))
        why.append("%s.timeWindowSize %s: %s" % (
            rt, obs.sizes[rt][1], obs.sizes[rt][2]))
    # never propose allowing what the threat-intel list names or the agent
    # reported as suspicious: those destinations are left out, one line each
    bad = sorted((a for a in obs.dests if any(_in(a, t) for t in obs.threats)),
                 key=lambda a: ipaddress.ip_address(a).packed)
    for a in bad:
        why.append("allowlistValues: %s left out: it is on the threat-intel list or was reported as a suspicious IP" % a)
        del obs.dests[a]
    if obs.dests:
        nets = []
        for a in obs.dests:
            ip = ipaddress.ip_address(a)
            plen = prefix4 if ip.version == 4 else prefix6
            nets.append(ipaddress.ip_network("%s/%d" % (ip, plen), strict=False))
        # a widened prefix must not swallow a threat either: keep such a
        # destination as a single address
        nets = [n if not any(n.overlaps(t) for t in obs.threats) else ipaddress.ip_network(a)
                for a, n in zip(list(obs.dests), nets)]
        v4 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 4))
        v6 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 6))
        values = []
        for n in v4 + v6:
            text = str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
            values.append(text)
            inside = sorted((a for a in obs.dests if _in(a, n)), key=lambda a: ipaddress.ip_address(a).packed)
            conns = sum(obs.dests[a] for a in inside)
            shown = ", ".join(inside[:4]) + (" and %d more" % (len(inside) - 4) if len(inside) > 4 else "")
            why.append("allowlistValues %s: %d connection%s to %s" % (
                text, conns, "" if conns == 1 else "s", shown))
        doc["allowlistRules"] = [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                  "allowlistValues": values}]
        why.append("allowlistValues: each destination widened to /%d (IPv4) or /%d (IPv6), then collapsed" % (
            prefix4, prefix6))
        if "log" in obs.sources:
            why.append("allowlistValues: a log names only the destinations that were not allowed; "
                       "add the values of the list the device had")
    if not doc["timeWindowRules"]:
        del doc["timeWindowRules"]
    if len(obs.devices) > 1:
        why.append("deviceId %s: the first of %d devices seen (%s); a config is per device" % (
            doc["deviceId"], len(obs.devices), ", ".join(obs.devices)))
    return doc, why


def _in(a, net):
    ip = ipaddress.ip_address(a)
    return ip.version == net.version and ip in net


def _log_sizes(path):
    # {ruleType: window_s} of the first time-window alert of each rule in a log
    config, _, _ = _iothub()
    out = {}
    for _, a in log_alerts(path):
        rt = a["type"]
        w = a["details"].get("window_s") if isinstance(a.get("details"), dict) else None
        if rt in config.WINDOW_RULES and rt not in out and w is not None:
            out[rt] = w
    return out


def _is_scenario(path):
    # a scenario's first non-blank line is JSON (the header; the scenario
    # reader says what is wrong with it); a console log's is not
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                try:
                    json.loads(raw)
                except (ValueError, RecursionError):
                    return False
                return True
    return False


def cmd_suggest(args):
    config, _, parse_duration = _iothub()
    try:
        default_s = parse_duration(args.window)
        if not 0 < default_s <= MAX_WINDOW_S:
            raise ValueError("must be longer than zero and at most P30D")
    except ValueError as e:
        print("microagent baseline: --window %s: %s" % (args.window, e), file=sys.stderr)
        return 2
    if not 0 <= args.margin <= 1000:
        print("microagent baseline: --margin must be 0..1000 (percent)", file=sys.stderr)
        return 2
    kinds = []
    sizes = {}
    try:
        for path in args.files:
            try:
                is_sc = _is_scenario(path)
            except OSError as e:
                raise ScenarioError(path, 0, "cannot read (%s)" % (e.strerror or e))
            kinds.append(is_sc)
            if is_sc:
                with Scenario.open(path) as sc:
                    for r in sc.header.config.get("timeWindowRules", []):
                        rt = r.get("ruleType")
                        if rt in config.WINDOW_RULES and rt not in sizes:
                            sizes[rt] = (parse_duration(r["timeWindowSize"]), r["timeWindowSize"],
                                         "from %s's config" % path)
            else:
                for rt, secs in _log_sizes(path).items():
                    if rt not in sizes:
                        sizes[rt] = (secs, iso_duration(secs), "window_s of %s's alerts" % path)
        for rt in config.WINDOW_RULES:
            sizes.setdefault(rt, (default_s, args.window, "--window (default PT15M)"))
        obs = Observed(sizes)
        for path, is_sc in zip(args.files, kinds):
            if is_sc:
                with Scenario.open(path) as sc:
                    obs.add_scenario(sc)
            else:
                obs.add_log(path)
    except ScenarioError as e:
        print("microagent baseline: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("microagent baseline: %s: cannot read (%s)" % (e.filename or "", e.strerror or e), file=sys.stderr)
        return 2
    doc, why = suggest(obs, args.margin, args.prefix4, args.prefix6)
    if "timeWindowRules" not in doc and "allowlistRules" not in doc:
        print("microagent baseline: nothing to suggest: no whole time window and no outbound connection in %s" % (
            ", ".join(args.files)), file=sys.stderr)
        return 2
    try:
        config.parse(doc)  # what we print must load on the device
    except config.ConfigError as e:
        print("microagent baseline: the suggestion is not a valid config (%s)" % e, file=sys.stderr)
        return 2
    for line in why:
        print("# " + line, file=sys.stderr)
    print(json.dumps(doc, indent=2))
    return 0


def add_parser(sub):
    r = sub.add_parser("baseline", help="propose baselines from observed scenarios or console logs")
    s = r.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = s.add_parser("suggest", help="propose timeWindowRules thresholds and an allow list",
                     description="Propose a baseline configuration (config.md) from scenario files or saved "
                                 "console logs: thresholds from the per-window values observed (99th/1st "
                                 "percentile with a margin), an allow list from the destinations seen.")
    p.add_argument("files", nargs="+", metavar="FILE", help="scenario files (.jsonl) or console logs")
    p.add_argument("--margin", type=float, default=20.0, metavar="PCT",
                   help="added to the high percentile and taken off the low one (default 20)")
    p.add_argument("--window", default="PT15M", metavar="DURATION",
                   help="window size for rules the scenarios' configs do not size (default PT15M)")
    p.add_argument("--prefix4", type=int, default=24, choices=range(0, 33), metavar="N",
                   help="widen each IPv4 destination to its /N network (default 24; 32 = exact)")
    p.add_argument("--prefix6", type=int, default=64, choices=range(0, 129), metavar="N",
                   help="widen each IPv6 destination to its /N network (default 64; 128 = exact)")
    p.set_defaults(func=cmd_suggest)
