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
MAX_T = 3155760000  # t and end: at most 100 years (of 365.25 days) in seconds
MAX_BYTES = 268435455  # an MQTT packet's largest remaining length (MQTT 3.1.1 s2.2.3)
MAX_LINE = 64 << 20  # bytes of one line (a file event's text or der_hex included)
MAX_DEPTH = 32  # nesting of an expect entry's values
MAX_PATH = 1024  # characters of a device path; each part at most 255 (NAME_MAX)
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


def show(v, limit=60):
    """A JSON value as short text for an error message (long values cut
    with "...", never an exception)."""
    try:
        t = json.dumps(v)
    except (ValueError, RecursionError, TypeError):  # a 4300+ digit int, deep nesting
        t = "a %s" % type(v).__name__
    return t if len(t) <= limit else t[:limit] + "..."


def _int(v, key, lo=0, hi=None):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        if hi is None:
            raise _Bad("%s must be a whole number >= %d (got %s)" % (key, lo, show(v)))
        raise _Bad("%s must be a whole number %d..%d (got %s)" % (key, lo, hi, show(v)))
    return v


def _num(v, key):
    # seconds since the start: 0..MAX_T; an int is compared as an int (a
    # 400-digit one has no float)
    ok = False
    if isinstance(v, int) and not isinstance(v, bool):
        ok = 0 <= v <= MAX_T
    elif isinstance(v, float):
        ok = math.isfinite(v) and 0 <= v <= MAX_T
    if not ok:
        raise _Bad("%s must be a number of seconds from 0 to %d (100 years) (got %s)" % (key, MAX_T, show(v)))
    return v


def _str(v, key, empty=True):
    if not isinstance(v, str) or (not empty and not v):
        raise _Bad("%s must be %stext (got %s)" % (key, "" if empty else "non-empty ", show(v)))
    return v


def _bool(v, key):
    if v is not True and v is not False:
        raise _Bad("%s must be true or false (got %s)" % (key, show(v)))
    return v


def _lone_surrogate(obj):
    """The place ("topic", "config.deviceId", 'files["a.pem"]') of the
    first text in a decoded JSON value that holds a lone UTF-16 surrogate
    (JSON's \\ud800 escape: not a Unicode character, it cannot be written
    as UTF-8), or None. Iterative: any nesting depth."""
    todo = [("", obj)]
    while todo:
        where, v = todo.pop()
        if isinstance(v, str):
            if not _utf8(v):
                return where or "the value"
        elif isinstance(v, dict):
            for k, x in v.items():
                if not _utf8(k):
                    return "a key" + (" of " + where if where else "")
                if _NAME.match(k):
                    name = where + "." + k if where else k
                else:
                    name = where + "[%s]" % json.dumps(k)
                todo.append((name, x))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                todo.append(("%s[%d]" % (where, i), x))
    return None


def _utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _depth(v, limit):
    # True when the JSON value `v` nests deeper than `limit` (iterative)
    todo = [(v, 0)]
    while todo:
        x, d = todo.pop()
        if isinstance(x, dict):
            x = list(x.values())
        if isinstance(x, list):
            if d >= limit:
                return True
            todo.extend((y, d + 1) for y in x)
    return False


def _time(v, key):
    _, platform, _, _ = fw()
    try:
        return platform.parse_iso8601(v)
    except ValueError as e:
        raise _Bad("%s: %s (got %s)" % (key, e, show(v)))


def _ip(v, key):
    _, _, ipaddr, _ = fw()
    _str(v, key)
    try:
        ipaddr.parse_ip(v)
    except ValueError as e:
        raise _Bad("%s: %s (got %s)" % (key, e, show(v)))
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
                       "(no '..', no leading '/')" % (key, show(v)))
        if len(p) > 255:
            raise _Bad("%s: %s has a part longer than 255 characters" % (key, show(v)))
    if len(v) > MAX_PATH:
        raise _Bad("%s: %s is longer than %d characters" % (key, show(v), MAX_PATH))
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
        raise _Bad("%s must be a number or text (got %s)" % (key, show(v)))
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
    "mqtt_publish": ({"topic": _str}, {"bytes": lambda v, k: _int(v, k, 0, MAX_BYTES)}),
    "mqtt_message": ({"topic": _str}, {"bytes": lambda v, k: _int(v, k, 0, MAX_BYTES)}),
    "c2d_reject": ({}, {}),
    # a `file` event may rewrite microagent.json: the agent loads it at the next reboot
    "file": ({"path": lambda v, k: _path(v, k, True)}, {"text": _str, "der_hex": _hex}),
    "clock": ({"set": _time}, {}),
    "reboot": ({}, {}),
}


def _choice(v, key, values):
    if v not in values:
        raise _Bad("%s must be one of %s (got %s)" % (key, ", ".join(values), show(v)))
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
        raise _Bad("header must be an object (got %s)" % show(obj))
    for k in obj:
        if k not in _HEADER_KEYS:
            raise _Bad("header: unknown key %s (known: %s)" % (show(k), ", ".join(_HEADER_KEYS)))
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
    h.cfg = _config(doc, "config")
    h.config = doc
    h.longest_s = _longest(h.cfg)
    h.files = []
    h.tree = Tree()
    files = obj.get("files", {})
    if not isinstance(files, dict):
        raise _Bad('files must be an object {"path": text or {"der_hex": ...}}')
    for p, v in files.items():
        key = "files[%s]" % show(p)
        _path(p, key)
        h.tree.add(p, key)
        if isinstance(v, str):
            h.files.append((p, v, None))
        elif isinstance(v, dict):
            for k in v:
                if k != "der_hex":
                    raise _Bad("%s: unknown key %s (text, or {\"der_hex\": ...})" % (key, show(k)))
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
        if not isinstance(t, str) or t not in alerts.CATALOGUE:
            raise _Bad("%s.type: %s is not a finding type the agent reports" % (key, show(t)))
        if "times" in e:
            _int(e["times"], key + ".times")
        if "details" in e and not isinstance(e["details"], dict):
            raise _Bad("%s.details must be an object" % key)
        if _depth(e, MAX_DEPTH):
            raise _Bad("%s nests deeper than %d levels" % (key, MAX_DEPTH))
    h.expect = expect
    h.exact = _bool(obj.get("exact", False), "exact")
    h.end_ms = None
    if "end" in obj:
        h.end_ms = int(round(_num(obj["end"], "end") * 1000))
    return h


def _config(doc, key):
    # the firmware's config.parse on CPython: a Config, or _Bad naming the key
    config = fw()[0]
    try:
        return config.parse(doc)
    except config.ConfigError as e:
        raise _Bad("%s: %s" % (key, e))
    except (RecursionError, MemoryError) as e:
        raise _Bad("%s: %s" % (key, config.too_big(e)))


def _longest(cfg):
    # the longest enabled time-window rule of a Config, seconds (0: none)
    return max([w[3] for w in cfg.windows] or [0])


class Tree:
    """The device paths a scenario writes (microagent.json, the header's
    files, file events): a path cannot be a file and a folder at once."""

    def __init__(self):
        self.files = {CONFIG_FILE}
        self.dirs = set()

    def add(self, path, key):
        """Record a file written at `path` (checked by _path). Raises
        _Bad when it, or a folder on its way, is already the other kind."""
        if path in self.dirs:
            raise _Bad("%s: %s is already a folder (of %s)" % (key, show(path), self._inside(path)))
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d in self.files:
                raise _Bad("%s: %s cannot be written: %s is a file, not a folder" % (key, show(path), show(d)))
        for i in range(1, len(parts)):
            self.dirs.add("/".join(parts[:i]))
        self.files.add(path)

    def _inside(self, d):
        for f in sorted(self.files):
            if f.startswith(d + "/"):
                return show(f)
        return "another file"


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
        self._longest = 0     # the longest window rule of the running agent's config, s
        self._written = None  # ditto of a microagent.json written since the last start
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
        # the next non-blank line decoded (a (value,) tuple), or None at
        # the end; every way a line can be unreadable is a ScenarioError
        while True:
            try:
                raw = self._f.readline(MAX_LINE + 1)
            except OSError as e:
                self.line += 1
                raise self._err("cannot read (%s)" % (e.strerror or e))
            if not raw:
                return None
            self.line += 1
            self.bytes += len(raw)
            if len(raw) > MAX_LINE:
                raise self._err("line longer than %d bytes" % MAX_LINE)
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.rstrip(b"\r\n").decode("utf-8"))
            except UnicodeDecodeError:
                raise self._err("not UTF-8 text")
            except json.JSONDecodeError as e:
                raise self._err("bad JSON: %s (column %d)" % (e.msg, e.colno))
            except RecursionError:
                raise self._err("bad JSON: nested too deeply")
            except ValueError as e:  # a number past the int digit limit
                raise self._err("bad JSON: %s" % (str(e).split(";")[0],))
            except MemoryError:
                raise self._err("line too large to read")
            if b"\\u" in raw:  # only an escape can make a lone surrogate
                where = _lone_surrogate(obj)
                if where is not None:
                    raise self._err("%s: text with a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode, "
                                    "cannot be UTF-8" % where)
            return (obj,)

    def _read_header(self):
        got = self._next_obj()
        if got is None:
            raise self._err("empty file: the first line must be the header")
        try:
            self.header = parse_header(got[0])
        except _Bad as e:
            raise self._err(str(e))
        self._longest = self.header.longest_s

    def events(self):
        """Yield each Event, validated. Raises ScenarioError on the first
        bad line (bad JSON, unknown event, missing or wrong field, time
        going backwards, a close of a connection that is not open, an
        event after the header's `end`)."""
        h = self.header
        while True:
            got = self._next_obj()
            if got is None:
                return
            try:
                ev = self._event(got[0], h)
            except _Bad as e:
                raise self._err(str(e))
            yield ev

    def _event(self, obj, h):
        if not isinstance(obj, dict):
            raise _Bad("an event must be an object")
        name = obj.get("event")
        spec = EVENTS.get(name) if isinstance(name, str) else None
        if spec is None:
            if "event" not in obj:
                raise _Bad('missing field "event"')
            raise _Bad("unknown event %s (known: %s)" % (show(name), ", ".join(EVENTS)))
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
                raise _Bad("%s: unknown field %s" % (name, show(k)))
        for k, check in req.items():
            if k not in obj:
                raise _Bad("%s: missing field %s" % (name, show(k)))
            v = check(obj[k], k)
            if k in ("rc", "set"):
                obj[k] = v
        for k, check in opt.items():
            if k in obj:
                check(obj[k], k)
        if name in ("connect", "accept"):
            cid = obj["id"]
            if cid in self._open:
                raise _Bad("%s: connection id %s is already open" % (name, show(cid)))
            self._open.add(cid)
        elif name == "close":
            cid = obj["id"]
            if cid not in self._open:
                raise _Bad("close: connection id %s is not open" % show(cid))
            self._open.discard(cid)
        elif name == "reboot":
            self._open.clear()  # a restart closes every socket
            if self._written is not None:  # the start loads the rewritten config
                self._longest = self._written
                self._written = None
        elif name == "file":
            text, hexd = _file_content(obj, "file")
            h.tree.add(obj["path"], "path")
            if obj["path"] == CONFIG_FILE:
                self._written = _written_longest(text, hexd)
        self._last_t = t
        self._last_ms = ms
        self.events_seen += 1
        return Event(self.line, t, ms, name, obj)

    def end_ms(self):
        """The replay's end in ms: the header's `end`, else the last event
        time plus the longest enabled time-window rule of the configuration
        the agent runs at the end (the header's, or a microagent.json a
        file event wrote before the last reboot), so the window holding
        the last event closes."""
        h = self.header
        if h.end_ms is not None:
            return h.end_ms
        return self._last_ms + self._longest * 1000


def _written_longest(text, der_hex):
    # the longest window rule of a microagent.json a file event writes, as
    # the agent will load it at the next start (0: it will not load)
    try:
        if text is None:
            text = binascii.unhexlify(der_hex).decode("utf-8")
        return _longest(_config(json.loads(text), "config"))
    except (ValueError, _Bad, RecursionError, MemoryError):
        return 0
