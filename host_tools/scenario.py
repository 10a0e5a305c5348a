"""Scenario files (../shared/spec/scenario.md): a streaming reader that
validates as it goes and names the file and line of the first problem.

    with Scenario.open("x.jsonl") as sc:
        h = sc.header            # Header, validated (line 1)
        for ev in sc.events():   # Event per line, validated, in time order
            ...
        end_ms = sc.end_ms()     # after the last event

Memory stays constant in the file's length: one line at a time, plus the
ids of the connections open at that moment (to check `close`).

The configuration is validated with the firmware's own config.parse (the
very file the board runs), times with its platform.parse_iso8601, and
addresses with its ipaddr.parse_ip, so "the replay reads it" and "the
device reads it" cannot drift apart.
"""
import binascii
import json
import math
import re
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def fw():
    """The firmware modules (config, platform, ipaddr, alerts), imported
    from the source tree on CPython."""
    if str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
    from microagent import alerts, config, ipaddr, platform
    return config, platform, ipaddr, alerts


CONFIG_FILE = "microagent.json"  # where the replay writes the header's config
UNSET_UTC = 946684800  # 2000-01-01T00:00:00Z: an unset clock at t=0 (replay.UNSET_UTC)
_PATH_PART = re.compile(r"^[A-Za-z0-9_.+-]+$")
_HEADER_KEYS = ("scenario", "device", "start", "clock_set", "config", "files", "expect", "exact", "end")


class ScenarioError(ValueError):
    """A scenario file that cannot be read: str() is 'FILE:LINE: reason'."""

    def __init__(self, path, line, reason):
        ValueError.__init__(self, reason)
        self.path = str(path)
        self.line = line
        self.reason = reason

    def __str__(self):
        if self.line:
            return "%s:%d: %s" % (self.path, self.line, self.reason)
        return "%s: %s" % (self.path, self.reason)


class _Bad(ValueError):
    """A field that is wrong; the reader adds file and line."""


def _int(v, key, lo=0, hi=None):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        if hi is None:
            raise _Bad("%s must be a whole number >= %d (got %s)" % (key, lo, json.dumps(v)))
        raise _Bad("%s must be a whole number %d..%d (got %s)" % (key, lo, hi, json.dumps(v)))
    return v


def _num(v, key):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
        raise _Bad("%s must be a number of seconds >= 0 (got %s)" % (key, json.dumps(v)))
    return v


def _str(v, key, empty=True):
    if not isinstance(v, str) or (not empty and not v):
        raise _Bad("%s must be %stext (got %s)" % (key, "" if empty else "non-empty ", json.dumps(v)))
    return v


def _bool(v, key):
    if v is not True and v is not False:
        raise _Bad("%s must be true or false (got %s)" % (key, json.dumps(v)))
    return v


def _time(v, key):
    _, platform, _, _ = fw()
    try:
        return platform.parse_iso8601(v)
    except ValueError as e:
        raise _Bad("%s: %s (got %s)" % (key, e, json.dumps(v)))


def _ip(v, key):
    _, _, ipaddr, _ = fw()
    _str(v, key)
    try:
        ipaddr.parse_ip(v)
    except ValueError as e:
        raise _Bad("%s: %s (got %s)" % (key, e, json.dumps(v)))
    return v


def _hex(v, key):
    _str(v, key)
    try:
        binascii.unhexlify(v)
    except (binascii.Error, ValueError):
        raise _Bad("%s must be hex digits, two per byte" % key)
    return v


def _path(v, key, config_ok=False):
    _str(v, key, empty=False)
    parts = v.split("/")
    for p in parts:
        if p in ("", ".", "..") or not _PATH_PART.match(p):
            raise _Bad("%s: %s is not a relative device path of letters, digits and ._+- "
                       "(no '..', no leading '/')" % (key, json.dumps(v)))
    if v == CONFIG_FILE and not config_ok:
        raise _Bad("%s: %s is where the replay writes the header's config" % (key, v))
    return v


def _file_content(d, key):
    # a header `files` value or a `file` event: text, or der_hex
    has_t = "text" in d
    has_h = "der_hex" in d
    if has_t == has_h:
        raise _Bad("%s needs exactly one of text and der_hex" % key)
    if has_t:
        return _str(d["text"], key + ".text"), None
    return None, _hex(d["der_hex"], key + ".der_hex")


def _rc(v, key):
    return _int(v, key, 0, 255)


def _rcs(v, key):
    if isinstance(v, list):
        if not v:
            raise _Bad("%s must be a return code or a non-empty list of them" % key)
        return [_rc(x, "%s[%d]" % (key, i)) for i, x in enumerate(v)]
    return [_rc(v, key)]


def _conn_id(v, key):
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Bad("%s must be a number or text (got %s)" % (key, json.dumps(v)))
    return v


def _opt_text(v, key):
    if v is not None:
        _str(v, key)
    return v


# event: ({required field: checker}, {optional field: checker})
EVENTS = {
    "connect": ({"id": _conn_id, "remote": _ip, "port": lambda v, k: _int(v, k, 0, 65535)},
                {"proto": lambda v, k: _choice(v, k, ("tcp", "udp"))}),
    "accept": ({"id": _conn_id, "remote": _ip, "port": lambda v, k: _int(v, k, 0, 65535)},
               {"proto": lambda v, k: _choice(v, k, ("tcp", "udp"))}),
    "close": ({"id": _conn_id}, {}),
    "mqtt_connect": ({"client_id": _str}, {"username": _opt_text, "password": _opt_text}),
    "mqtt_connack": ({"rc": _rc}, {}),
    "mqtt_suback": ({"rc": _rcs}, {}),
    "mqtt_publish": ({"topic": _str}, {"bytes": _int}),
    "mqtt_message": ({"topic": _str}, {"bytes": _int}),
    "c2d_reject": ({}, {}),
    # a `file` event may rewrite microagent.json: the agent loads it at the next reboot
    "file": ({"path": lambda v, k: _path(v, k, True)}, {"text": _str, "der_hex": _hex}),
    "clock": ({"set": _time}, {}),
    "reboot": ({}, {}),
}


def _choice(v, key, values):
    if v not in values:
        raise _Bad("%s must be one of %s (got %s)" % (key, ", ".join(values), json.dumps(v)))
    return v


class Header:
    """The validated first line.

    name, device: str; start: UTC seconds at t=0 or None (clock unset);
    config: the configuration document (dict, deviceId filled in from
    `device` where missing); cfg: its firmware Config; files: list of
    (path, text or None, der_hex or None); expect: list of dicts; exact:
    bool; end_ms: int or None; longest_s: the longest enabled time-window
    rule in seconds (0 when there is none).
    """


class Event:
    """One validated event: line (number), t (seconds as written), ms
    (integer milliseconds), name, fields (the dict as read, with
    `ms` where converted values are needed: rcs for mqtt_suback, utc for
    clock)."""

    __slots__ = ("line", "t", "ms", "name", "fields")

    def __init__(self, line, t, ms, name, fields):
        self.line = line
        self.t = t
        self.ms = ms
        self.name = name
        self.fields = fields


def parse_header(obj):
    """Validate a decoded header object; returns a Header. Raises _Bad."""
    config, platform, _, alerts = fw()
    if not isinstance(obj, dict):
        raise _Bad("the first line must be the header object")
    for k in obj:
        if k not in _HEADER_KEYS:
            raise _Bad("header: unknown key %s (known: %s)" % (json.dumps(k), ", ".join(_HEADER_KEYS)))
    h = Header()
    h.name = _str(obj.get("scenario", ""), "scenario")
    h.device = _str(obj.get("device", ""), "device")
    h.clock_set = _bool(obj.get("clock_set", True), "clock_set")
    if "start" in obj:
        h.start = _time(obj["start"], "start")
    elif h.clock_set:
        raise _Bad('header: "start" is missing (the UTC time at t=0; or "clock_set": false)')
    else:
        h.start = None
    if not h.clock_set:
        h.start = None
    doc = obj.get("config", {})
    if not isinstance(doc, dict):
        raise _Bad("config must be an object (config.md)")
    if "deviceId" not in doc:
        doc = dict(doc)
        doc["deviceId"] = h.device or "device"
    try:
        h.cfg = config.parse(doc)
    except config.ConfigError as e:
        raise _Bad("config: %s" % e)
    h.config = doc
    h.longest_s = max([w[3] for w in h.cfg.windows] or [0])
    h.files = []
    files = obj.get("files", {})
    if not isinstance(files, dict):
        raise _Bad('files must be an object {"path": text or {"der_hex": ...}}')
    for p, v in files.items():
        key = "files[%s]" % json.dumps(p)
        _path(p, key)
        if isinstance(v, str):
            h.files.append((p, v, None))
        elif isinstance(v, dict):
            for k in v:
                if k != "der_hex":
                    raise _Bad("%s: unknown key %s (text, or {\"der_hex\": ...})" % (key, json.dumps(k)))
            h.files.append((p, None, _hex(v.get("der_hex"), key + ".der_hex")))
        else:
            raise _Bad('%s must be text or {"der_hex": ...}' % key)
    expect = obj.get("expect", [])
    if not isinstance(expect, list):
        raise _Bad("expect must be a list")
    for i, e in enumerate(expect):
        key = "expect[%d]" % i
        if not isinstance(e, dict):
            raise _Bad("%s must be an object" % key)
        t = e.get("type")
        if t not in alerts.CATALOGUE:
            raise _Bad("%s.type: %s is not a finding type the agent reports" % (key, json.dumps(t)))
        if "times" in e:
            _int(e["times"], key + ".times")
        if "details" in e and not isinstance(e["details"], dict):
            raise _Bad("%s.details must be an object" % key)
    h.expect = expect
    h.exact = _bool(obj.get("exact", False), "exact")
    h.end_ms = None
    if "end" in obj:
        h.end_ms = int(round(_num(obj["end"], "end") * 1000))
    return h


class Scenario:
    """A scenario file read line by line (open() or Scenario(path, stream))."""

    def __init__(self, path, stream):
        self.path = str(path)
        self._f = stream
        self.line = 0
        self.bytes = 0
        self.header = None
        self._last_t = 0
        self._last_ms = 0
        self._open = set()
        self.events_seen = 0
        self._read_header()

    @classmethod
    def open(cls, path):
        """Open and read the header. Raises ScenarioError (unreadable file,
        bad header)."""
        try:
            f = open(path, "rb")
        except OSError as e:
            raise ScenarioError(path, 0, "cannot read (%s)" % (e.strerror or e))
        try:
            return cls(path, f)
        except BaseException:
            f.close()
            raise

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _err(self, reason):
        return ScenarioError(self.path, self.line, reason)

    def _next_obj(self):
        # the next non-blank line decoded, or None at the end
        for raw in self._f:
            self.line += 1
            self.bytes += len(raw)
            if not raw.strip():
                continue
            try:
                return json.loads(raw.rstrip(b"\r\n").decode("utf-8"))
            except UnicodeDecodeError:
                raise self._err("not UTF-8 text")
            except json.JSONDecodeError as e:
                raise self._err("bad JSON: %s (column %d)" % (e.msg, e.colno))
        return None

    def _read_header(self):
        try:
            obj = self._next_obj()
        except OSError as e:
            raise self._err("cannot read (%s)" % e)
        if obj is None:
            raise self._err("empty file: the first line must be the header")
        try:
            self.header = parse_header(obj)
        except _Bad as e:
            raise self._err(str(e))

    def events(self):
        """Yield each Event, validated. Raises ScenarioError on the first
        bad line (bad JSON, unknown event, missing or wrong field, time
        going backwards, a close of a connection that is not open, an
        event after the header's `end`)."""
        h = self.header
        while True:
            obj = self._next_obj()
            if obj is None:
                return
            try:
                yield self._event(obj, h)
            except _Bad as e:
                raise self._err(str(e))

    def _event(self, obj, h):
        if not isinstance(obj, dict):
            raise _Bad("an event must be an object")
        name = obj.get("event")
        spec = EVENTS.get(name)
        if spec is None:
            if "event" not in obj:
                raise _Bad('missing field "event"')
            raise _Bad("unknown event %s (known: %s)" % (json.dumps(name), ", ".join(EVENTS)))
        if "t" not in obj:
            raise _Bad('%s: missing field "t"' % name)
        t = _num(obj["t"], "t")
        if t < self._last_t:
            raise _Bad("time goes backwards: t=%s after t=%s" % (obj["t"], self._last_t))
        ms = int(round(t * 1000))
        if h.end_ms is not None and ms > h.end_ms:
            raise _Bad("t=%s is after the header's end (%s)" % (obj["t"], h.end_ms / 1000))
        req, opt = spec
        for k in obj:
            if k not in req and k not in opt and k not in ("t", "event"):
                raise _Bad("%s: unknown field %s" % (name, json.dumps(k)))
        for k, check in req.items():
            if k not in obj:
                raise _Bad("%s: missing field %s" % (name, json.dumps(k)))
            v = check(obj[k], k)
            if k in ("rc", "set"):
                obj[k] = v
        for k, check in opt.items():
            if k in obj:
                check(obj[k], k)
        if name in ("connect", "accept"):
            cid = obj["id"]
            if cid in self._open:
                raise _Bad("%s: connection id %s is already open" % (name, json.dumps(cid)))
            self._open.add(cid)
        elif name == "close":
            cid = obj["id"]
            if cid not in self._open:
                raise _Bad("close: connection id %s is not open" % json.dumps(cid))
            self._open.discard(cid)
        elif name == "reboot":
            self._open.clear()  # a restart closes every socket
        elif name == "file":
            _file_content(obj, "file")
        self._last_t = t
        self._last_ms = ms
        self.events_seen += 1
        return Event(self.line, t, ms, name, obj)

    def end_ms(self):
        """The replay's end in ms: the header's `end`, else the last event
        time plus the longest enabled time-window rule (so the window
        holding the last event closes)."""
        h = self.header
        if h.end_ms is not None:
            return h.end_ms
        return self._last_ms + h.longest_s * 1000
