# The application's IoT Hub MQTT client, watched in place (umqtt.simple
# and compatible clients, both constructor generations): counts C2D, D2C,
# direct methods, twin updates and unauthorized operations for the agent's
# windows, reports malformed and unexpected messages, sends the agent's
# findings as security messages through the same session, and takes the
# agent's configuration from the twin's desired property `microagent`.
# The app's calls keep their code path, results, exceptions and blocking.
import json

from . import config, iothub, secmsg

_SL = 47   # "/"
_PLUS = 43
_HASH = 35
_DOLLAR = 36

# IoT Hub's own limits (learn.microsoft.com "IoT Hub quotas and
# throttling"): larger did not come from IoT Hub.
MAX_C2D = 65536
MAX_METHOD = 131072
MAX_TWIN = 32768

_C2D = config.C2D
_D2C = config.D2C
_D2C_KIND = iothub.D2C
_OTHER = iothub.OTHER
_FOREIGN = iothub.FOREIGN
_MALFORMED = iothub.MALFORMED
_METHODS = b"$iothub/methods/POST/"
_DESIRED = b"$iothub/twin/PATCH/properties/desired/"
_TWINRES = b"$iothub/twin/res/"


def _b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def valid_filter(f):
    """True for a valid MQTT 3.1.1 topic filter (s4.7.1): not empty, `+`
    alone in its level, `#` alone in the last level. f: str or bytes."""
    f = _b(f)
    n = len(f)
    if not n:
        return False
    for i in range(n):
        c = f[i]
        if c == _PLUS or c == _HASH:
            if i and f[i - 1] != _SL:
                return False
            if c == _HASH and i != n - 1:
                return False
            if i + 1 < n and f[i + 1] != _SL:
                return False
        elif c == 0:
            return False
    return True


def valid_topic(t):
    """True for a valid MQTT 3.1.1 topic name (s4.7.3): not empty, no
    wildcard, no NUL. t: bytes (UTF-8 is checked separately). The watcher's
    per-message check is the cheaper part of it: not empty, no wildcard."""
    return len(t) > 0 and t.find(b"+") < 0 and t.find(b"#") < 0 and t.find(b"\0") < 0


def topic_matches(f, t):
    """Does topic filter f match topic name t (MQTT 3.1.1 s4.7)? `+`
    matches one level, `#` any number of levels including the parent's
    ("a/#" matches "a"); a filter starting with a wildcard never matches a
    topic starting with `$` (s4.7.2). f, t: str or bytes; f is assumed
    valid (valid_filter). Allocates nothing for bytes."""
    f = f if isinstance(f, bytes) else _b(f)
    t = t if isinstance(t, bytes) else _b(t)
    nf = len(f)
    nt = len(t)
    if nt and t[0] == _DOLLAR and nf and (f[0] == _PLUS or f[0] == _HASH):
        return False
    i = 0
    j = 0
    while i < nf:
        c = f[i]
        if c == _HASH:
            return True
        if c == _PLUS:
            while j < nt and t[j] != _SL:
                j += 1
            i += 1
            continue
        if j >= nt:
            # the topic ended: only a trailing "/#" still matches
            return c == _SL and i + 2 == nf and f[i + 1] == _HASH
        if c != t[j]:
            return False
        i += 1
        j += 1
    return j == nt


def incoming(t, device, c2d=None):
    """Kind of an incoming topic t (bytes) for device id `device` (str):
    iothub.C2D, METHOD, TWIN, TWIN_RES, OTHER, FOREIGN or MALFORMED — the
    same answer as iothub.incoming() on its text, without allocating for
    this device's C2D topics (c2d: the precomputed
    b"devices/<id>/messages/devicebound"). Invalid UTF-8 outside a C2D
    topic is MALFORMED."""
    if c2d is None:
        c2d = b"devices/" + device.encode() + b"/messages/devicebound"
    if t.startswith(c2d):
        n = len(c2d)
        if len(t) == n or t[n] == _SL:
            return iothub.C2D
    if t.startswith(_METHODS):
        q = t.find(b"/?$rid=", 21)
        if q <= 21 or t.find(b"/", 21) != q:
            return iothub.MALFORMED
    elif t.startswith(_DESIRED):
        v = len(_DESIRED)
        if not t.startswith(b"?$version=", v) or len(t) == v + 10:
            return iothub.MALFORMED
        for i in range(v + 10, len(t)):
            if not 48 <= t[i] <= 57:
                return iothub.MALFORMED
        return iothub.TWIN
    elif not t.startswith(_TWINRES) and not t.startswith(b"devices/"):
        return iothub.OTHER
    try:
        s = bytes(t).decode()
    except Exception:
        return iothub.MALFORMED
    return iothub.incoming(s, device)


def _text(t, n=96):
    # a topic for a finding: text, invalid UTF-8 shown as \xNN, cut to n
    t = bytes(t[:n])
    try:
        return t.decode()
    except Exception:
        out = []
        for c in t:
            out.append(chr(c) if 32 <= c < 127 else "\\x%02x" % c)
        return "".join(out)


def _error_name(e):
    return type(e).__name__


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: the result of applying `patch` to
    `target` (both from json.loads). An object patch merges member by
    member, recursively; a null member removes that member; anything else
    (arrays included) replaces the target whole. Neither argument is
    changed: merged objects are new dicts, untouched members are shared."""
    if not isinstance(patch, dict):
        return patch
    out = {}
    if isinstance(target, dict):
        for k in target:
            out[k] = target[k]
    for k in patch:
        v = patch[k]
        if v is None:
            if k in out:
                del out[k]
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _ws(b, i, n):
    while i < n and (b[i] == 32 or b[i] == 10 or b[i] == 13 or b[i] == 9):
        i += 1
    return i


def _str_end(b, i, n):
    # b[i] is the opening quote: index after the closing one
    i += 1
    while i < n:
        c = b[i]
        if c == 34:
            return i + 1
        i += 2 if c == 92 else 1
    raise ValueError("unterminated string")


def _value_end(b, i, n):
    # index after the JSON value starting at b[i]; nested values are
    # skipped by counting brackets outside strings (not validated)
    if i >= n:
        raise ValueError("value missing")
    c = b[i]
    if c == 34:
        return _str_end(b, i, n)
    if c == 123 or c == 91:
        depth = 0
        while i < n:
            c = b[i]
            if c == 34:
                i = _str_end(b, i, n)
                continue
            if c == 123 or c == 91:
                depth += 1
            elif c == 125 or c == 93:
                depth -= 1
                if not depth:
                    return i + 1
            i += 1
        raise ValueError("unterminated object or array")
    j = i
    while j < n and b[j] not in b",}] \t\r\n":
        j += 1
    if j == i:
        raise ValueError("value missing")
    return j


def json_member(b, name, start=0, end=-1):
    """Where the value of member `name` of a JSON object lies, without
    parsing the document: b (bytes) holds the object in b[start:end] (end
    -1: to the end); name: the member's name as bytes (no escapes).
    Returns (i, j) with b[i:j] the value's JSON text (the last one if the
    name repeats, as json.loads keeps), or None when there is no such
    member. The object's own members, commas and colons are checked;
    values are skipped by brackets and strings, not validated. Raises
    ValueError for text that is not a JSON object (RFC 8259 s4).
    Allocates nothing."""
    n = len(b) if end < 0 else end
    i = _ws(b, start, n)
    if i >= n or b[i] != 123:
        raise ValueError("not a JSON object")
    found = None
    i = _ws(b, i + 1, n)
    if i < n and b[i] == 125:
        i += 1
    else:
        while True:
            if i >= n or b[i] != 34:
                raise ValueError("member name expected")
            k = _str_end(b, i, n)
            ki = i + 1
            i = _ws(b, k, n)
            if i >= n or b[i] != 58:
                raise ValueError("':' expected")
            vi = _ws(b, i + 1, n)
            i = _value_end(b, vi, n)
            if k - 1 - ki == len(name) and b.startswith(name, ki):
                found = (vi, i)
            i = _ws(b, i, n)
            if i < n and b[i] == 44:
                i = _ws(b, i + 1, n)
                continue
            if i < n and b[i] == 125:
                i += 1
                break
            raise ValueError("',' or '}' expected")
    if _ws(b, i, n) != n:
        raise ValueError("text after the object")
    return found


class Watch:
    """An MQTT client watched for an agent; see watch()."""

    def __init__(self, agent, client, queue=16, config_path=None, max_config=4096, filters=8,
                 security_messages=True, config_doc=None):
        # the client's own bound methods first: a client that lacks one is
        # refused before anything (a sink on the agent) is changed
        self._connect = client.connect
        self._subscribe = client.subscribe
        self._publish = client.publish
        self._wait = client.wait_msg
        self._check = client.check_msg
        self._ping = client.ping
        self._disconnect = client.disconnect
        self._set_cb = client.set_callback
        self._recv = getattr(client, "_recv_len", None)
        self.agent = agent
        self.client = client
        self.config_path = config_path
        self.max_config = max_config
        # the configuration document in force, when there is no file to
        # read it from (config_path None): the base of the twin's patches
        self._doc = config_doc if isinstance(config_doc, dict) else {}
        # the session is up (as far as the watcher saw): a client watched
        # after connect() has its socket already
        self.up = getattr(client, "sock", None) is not None
        self.counts = [0] * len(config.WINDOW_RULES)  # events seen, by config counter index
        self._depth = 0          # nesting of the app's calls into the client
        self._busy = False       # inside our own publish
        self._rl = -1            # remaining length of the PUBLISH being read
        self._handled = None     # the client's exception already reported on its way out
        self._app_exc = None     # the exception the app's callback raised, on its way out
        self._filters = []       # (kind, bytes, bytes) per subscribed filter
        self._max_filters = filters
        # the unexpected-topic check is off: too many filters, or
        # subscriptions made before watch() (unknown until the next connect)
        self._off = self.up
        self._reported = None    # pending twin reported patch (bytes)
        self._rid = 0
        self.reported_sent = 0
        self._device = None
        self._set_device()
        self.sec = None
        if security_messages:
            self.sec = secmsg.SecurityMessages(agent, queue)
            agent.sinks.append(self.sec)
        self.app_cb = getattr(client, "cb", None)
        self._has_cb = hasattr(client, "cb")   # umqtt.simple's callback attribute
        self._cb = self._on_message
        client.connect = self.connect
        client.subscribe = self.subscribe
        client.publish = self.publish
        client.wait_msg = self.wait_msg
        client.check_msg = self.check_msg
        client.ping = self.ping
        client.disconnect = self.disconnect
        client.set_callback = self.set_callback
        if self._recv is not None:
            client._recv_len = self._recv_len
        if self.app_cb is not None:
            self._set_cb(self._cb)
        client._microagent_watch = self

    def _set_device(self):
        a = self.agent
        dev = a.device
        if a.cfg is None:
            cid = getattr(self.client, "client_id", None)
            if cid:
                dev = cid.decode() if isinstance(cid, (bytes, bytearray)) else str(cid)
        if dev == self._device:
            return
        self._device = dev
        d = dev.encode()
        self._dev = b"devices/" + d + b"/"
        # IoT Hub allows + and # in device ids: this device's own topics
        # are literal text, never MQTT wildcards
        self._wild = d.find(b"+") >= 0 or d.find(b"#") >= 0
        self._c2d = self._dev + b"messages/devicebound"
        self._d2c_s = "devices/" + dev + "/messages/events"
        self._d2c_b = self._d2c_s.encode()

    # ---- the app's calls --------------------------------------------------
    def set_callback(self, f):
        """The app's set_callback(f): f gets every message, after the watcher."""
        self.app_cb = f
        self._set_cb(self._cb)

    def _rewrap(self):
        # the app assigned client.cb itself (bypassing set_callback): take
        # its function as the app's callback and put the watcher back
        cb = getattr(self.client, "cb", None)
        if cb is not self._cb and cb is not None:
            self.app_cb = cb
            self._set_cb(self._cb)

    def connect(self, *args, **kw):
        c = self.client
        self.up = False
        self._filters = []   # a new session: the app subscribes again
        self._off = False
        try:
            self.agent.mqtt_connect(getattr(c, "client_id", None), getattr(c, "user", None),
                                    getattr(c, "pswd", None))
        except Exception as e:
            self.agent._fault("watch", e)
        self._depth += 1
        try:
            r = self._connect(*args, **kw)
        except Exception as e:
            self._fail(e, "connect")
            raise
        finally:
            self._depth -= 1
        self.up = True
        self._rl = -1
        self._after()
        return r

    def subscribe(self, topic, qos=0):
        f = _b(topic)
        entry = None
        try:
            d = self._dev
            lit = f.startswith(d)
            if lit:      # this device's topics: its id is literal text
                w = f[len(d):]
                ok = not w or valid_filter(w)
            else:
                w = f
                ok = valid_filter(f)
            if not ok:
                self._finding("mqtt_malformed", "subscribe", f, "invalid topic filter")
            elif len(self._filters) < self._max_filters:
                h = w.find(b"#")
                if w.find(b"+") < 0:
                    if h < 0:
                        entry = (0, f, f)                # exact
                    elif f.endswith(b"/#"):
                        entry = (1, f[:-2], f[:-1])      # prefix match
                if entry is None and not (lit and self._wild):
                    entry = (2, f, f)                    # general
                if entry is None:
                    self._off = True     # wildcards after a literal + or # id
                else:
                    self._filters.append(entry)
            else:
                self._off = True
        except Exception as e:
            self.agent._fault("watch", e)
        self._depth += 1
        try:
            r = self._subscribe(topic, qos)
        except Exception as e:
            if e is not self._app_exc and entry is not None and entry in self._filters:
                self._filters.remove(entry)
            self._fail(e, "subscribe")
            raise
        finally:
            self._depth -= 1
        self._after()
        return r

    def publish(self, topic, msg, retain=False, qos=0):
        k = _OTHER
        try:
            k = self._out_kind(topic)
            if k == _FOREIGN:
                self._count(config.UNAUTHORIZED)
                self._finding("mqtt_unexpected", "publish", topic, "publish to another device's topic")
            elif k == _MALFORMED:
                self._finding("mqtt_malformed", "publish", topic, "device topic without a device id")
        except Exception as e:
            self.agent._fault("watch", e)
        self._depth += 1
        try:
            r = self._publish(topic, msg, retain, qos)
        except Exception as e:
            self._fail(e, "publish")
            raise
        finally:
            self._depth -= 1
        if k == _D2C_KIND:
            self.counts[_D2C] += 1
            self.agent.count(_D2C)
        if self._depth == 0 and self.up:
            self._after()
        return r

    def wait_msg(self, *args):
        if self._has_cb and self.client.cb is not self._cb:
            self._rewrap()
        self._depth += 1
        try:
            r = self._wait(*args) if args else self._wait()
        except Exception as e:
            self._fail(e, "receive")
            raise
        finally:
            self._depth -= 1
        if self._depth == 0 and self.up:
            self._after()
        return r

    def check_msg(self, *args):
        if self._has_cb and self.client.cb is not self._cb:
            self._rewrap()
        self._depth += 1
        try:
            r = self._check(*args) if args else self._check()
        except Exception as e:
            self._fail(e, "receive")
            raise
        finally:
            self._depth -= 1
        self._after()
        return r

    def ping(self):
        self._depth += 1
        try:
            r = self._ping()
        except Exception as e:
            self._fail(e, "ping")
            raise
        finally:
            self._depth -= 1
        self._after()
        return r

    def disconnect(self):
        self.up = False
        self._filters = []
        self._off = False
        return self._disconnect()

    def _recv_len(self):
        n = self._recv()
        self._rl = n
        return n

    def _after(self):
        # dropped findings always travel with a queued one: _n says it all
        if self._depth == 0 and self.up and not self._busy:
            if self._reported is not None or (self.sec is not None and self.sec._n):
                self._pump()

    def _fail(self, e, op):
        # an exception on its way to the app: the client's own failure is
        # counted or reported once (the same exception passes every nested
        # wrapper); one the app's callback raised is the app's business.
        # The outermost call forgets both. (The nesting depth itself is
        # kept by each wrapper's finally: right after Ctrl-C too.)
        if e is not self._handled and e is not self._app_exc:
            self._handled = e
            self._failed(e, op)
        if self._depth <= 1:
            self._handled = None
            self._app_exc = None

    def _failed(self, e, op):
        try:
            name = _error_name(e)
            if name == "MQTTException":
                rc = e.args[0] if e.args else -1
                if op == "connect":
                    self.up = False
                    self.agent.mqtt_connack(rc)
                    if rc == 4 or rc == 5:
                        self.counts[config.UNAUTHORIZED] += 1
                elif op == "subscribe":
                    self.agent.mqtt_suback(rc)
                    if rc == 0x80:
                        self.counts[config.UNAUTHORIZED] += 1
                return
            self.up = False
            self._filters = []
            self._off = False
            if op == "receive":
                if isinstance(e, IndexError):
                    self._finding("mqtt_malformed", "receive", b"", "connection closed mid-packet")
                elif isinstance(e, AssertionError):
                    self._finding("mqtt_malformed", "receive", b"", "packet breaks MQTT 3.1.1")
                elif isinstance(e, MemoryError):
                    self._finding("mqtt_malformed", "receive", b"", "message too large for the device's memory")
        except Exception as e2:
            self.agent._fault("watch", e2)

    # ---- counting and findings ---------------------------------------------
    def _count(self, ctr):
        self.counts[ctr] += 1
        self.agent.count(ctr)

    def _finding(self, ftype, op, topic, error, extra=()):
        d = (("operation", op), ("resource", _text(_b(topic))), ("error", error)) + tuple(extra)
        self.agent.report(ftype, d, (op, error))

    def _out_kind(self, t):
        if isinstance(t, str):
            p = self._d2c_s
            if t.startswith(p):
                n = len(p)
                return iothub.D2C if len(t) == n or t[n] == "/" else iothub.OTHER
            return iothub.outgoing(t, self._device) if t.startswith("devices/") else iothub.OTHER
        p = self._d2c_b
        if t.startswith(p):
            n = len(p)
            return _D2C_KIND if len(t) == n or t[n] == _SL else _OTHER
        if t.startswith(b"devices/"):
            try:
                return iothub.outgoing(bytes(t).decode(), self._device)
            except Exception:
                return iothub.MALFORMED
        return iothub.OTHER

    def classify(self, t):
        """Kind of an incoming topic (bytes) for this device; see incoming()."""
        return incoming(t, self._device, self._c2d)

    def _subscribed(self, t):
        for kind, f, g in self._filters:
            if kind == 1:
                if t.startswith(g) or t == f:
                    return True
            elif kind == 0:
                if t == f:
                    return True
            elif topic_matches(f, t):
                return True
        return False

    # ---- incoming ------------------------------------------------------------
    def _on_message(self, topic, msg):
        # per message: no allocation for this device's C2D (the hot path)
        try:
            t = topic if isinstance(topic, bytes) else _b(topic)
            c = self._c2d
            n = len(c)
            # this device's C2D prefix is literal (its id may hold + or #):
            # the wildcard check starts after it
            p = n if t.startswith(c) and (len(t) == n or t[n] == _SL) else 0
            if not t or t.find(b"+", p) >= 0 or t.find(b"#", p) >= 0:
                self._finding("mqtt_malformed", "receive", t, "invalid topic name")
            else:
                self._observe(t, msg, p)
        except Exception as e:
            self.agent._fault("watch", e)
        self._rl = -1
        cb = self.app_cb
        if cb is not None:
            try:
                cb(topic, msg)
            except BaseException as e:
                # the app's own exception: it goes to the app unchanged and
                # says nothing about the session
                self._app_exc = e
                raise

    def _observe(self, t, msg, c2d):
        rl = self._rl
        if rl >= 0:
            got = 2 + len(t) + len(msg)
            if got != rl and got + 2 != rl:
                # the stream ended inside this PUBLISH: umqtt hands over
                # what it read (QoS 0 cut by exactly 2 bytes is not seen)
                self._finding("mqtt_malformed", "receive", t, "connection closed mid-message",
                              (("expected", rl), ("actual", got)))
        if self._filters and not self._off and not self._subscribed(t):
            self._finding("mqtt_unexpected", "receive", t, "no subscription matches")
        if c2d:
            self.counts[_C2D] += 1
            self.agent.count(_C2D)
            if len(msg) > MAX_C2D:
                self._too_big(t, msg, MAX_C2D)
            return
        k = incoming(t, self._device, self._c2d)
        if k == iothub.METHOD:
            self._count(config.METHOD)
            if len(msg) > MAX_METHOD:
                self._too_big(t, msg, MAX_METHOD)
        elif k == iothub.TWIN:
            self._count(config.TWIN)
            if len(msg) > MAX_TWIN:
                self._too_big(t, msg, MAX_TWIN)
            else:
                self._desired_patch(t, msg)
        elif k == iothub.TWIN_RES:
            self._twin_response(t, msg)
        elif k == iothub.FOREIGN:
            self._finding("mqtt_unexpected", "receive", t, "message for another device")
        elif k == iothub.MALFORMED:
            self._finding("mqtt_malformed", "receive", t, "topic breaks IoT Hub's format")

    def _too_big(self, t, msg, limit):
        self._finding("mqtt_malformed", "receive", t, "payload larger than IoT Hub allows",
                      (("value", len(msg)), ("max", limit)))

    # ---- configuration from the twin ---------------------------------------
    def _member(self, t, msg, name, what, start=0, end=-1):
        # (i, j) of a member's value, None when absent, False (after a
        # finding) when the text is not a JSON object
        try:
            return json_member(msg, name, start, end)
        except ValueError as e:
            self._finding("mqtt_malformed", "receive", t, what + (
                " is not a JSON object" if str(e) == "not a JSON object" else " is not JSON"))
            return False

    def _config_value(self, t, msg, span, what, version):
        # the microagent member's value, parsed; None after a finding or
        # a refusal (larger than max_config: not parsed at all)
        i, j = span
        if j - i > self.max_config:
            self._refuse(version, "microagent property of %d bytes is larger than this device parses (%d)"
                         % (j - i, self.max_config))
            return None
        try:
            text = bytes(msg[i:j]).decode()
        except Exception:
            self._finding("mqtt_malformed", "receive", t, what + " is not UTF-8")
            return None
        try:
            return json.loads(text)
        except Exception:
            self._finding("mqtt_malformed", "receive", t, what + " is not JSON")
            return None

    def _stale(self, version):
        # a desired document older than (or as old as) the one in force
        cfg = self.agent.cfg
        cur = cfg.version if cfg is not None else None
        if isinstance(cur, int) and isinstance(version, int) and version <= cur:
            if version < cur:
                self.agent.out("microagent: twin $version %d is older than the configuration in force (%d); ignored"
                               % (version, cur))
            return True
        return False

    def _desired_patch(self, t, msg):
        # a desired-properties patch: only its microagent member is read
        # (the rest is the app's); the topic's ?$version= is its version
        span = self._member(t, msg, b"microagent", "twin patch")
        if not span:
            return
        version = int(t[len(_DESIRED) + 10:])
        if self._stale(version):
            return
        if msg[span[0]] == 110:       # null: the property was removed
            self.apply(None, version)
            return
        doc = self._config_value(t, msg, span, "twin patch", version)
        if doc is not None:
            self.apply(doc, version)

    def _twin_response(self, t, msg):
        # the answer to the app's twin GET: {"desired": {...}, "reported":
        # {...}}; only desired.microagent is read (the reported part is
        # what the device wrote itself and may be large)
        if not t.startswith(b"$iothub/twin/res/200/"):
            return
        span = self._member(t, msg, b"desired", "twin")
        if not span or msg[span[0]] != 123:
            return
        i, j = span
        cfg = self._member(t, msg, b"microagent", "twin", i, j)
        if not cfg:
            return
        version = None
        v = self._member(t, msg, b"$version", "twin", i, j)
        if v:
            try:
                version = int(bytes(msg[v[0]:v[1]]))
            except ValueError:
                pass
        if self._stale(version):
            return
        if msg[cfg[0]] == 110:
            self.apply(None, version)
            return
        doc = self._config_value(t, msg, cfg, "twin", version)
        if doc is not None:
            self.apply(doc, version)

    def _base(self):
        # the configuration document in force: the device's file when
        # config_path is set (a missing file: none), else the kept copy
        if not self.config_path:
            return self._doc
        try:
            with open(self.config_path) as f:
                doc = json.load(f)
        except OSError as e:
            if e.args and e.args[0] == 2:     # ENOENT
                return {}
            raise ValueError("%s: cannot be read (%s); the twin's patch is not merged onto it" % (self.config_path, e))
        except Exception:
            raise ValueError("%s: not valid JSON; the twin's patch is not merged onto it" % (self.config_path,))
        if not isinstance(doc, dict):
            raise ValueError("%s: not a JSON object; the twin's patch is not merged onto it" % (self.config_path,))
        return doc

    def apply(self, patch, version=None):
        """Apply the twin's `microagent` desired property (config.md) as an
        RFC 7386 JSON merge patch onto the configuration document in force
        (read from config_path when set, else the copy the watcher keeps):
        members it names change, a null member is removed, arrays are
        replaced whole, everything else stays (the device key in
        sas.deviceKey need never be in the twin). The merged document is
        validated as a whole and only then applied; deviceId defaults to
        this device's and must be this device's; `version` (the desired
        $version) becomes its $version. On success it is written to
        config_path (or kept) and the reported property `microagent` says
        so; a refusal changes nothing, is one config_refused finding and is
        reported with its reason. Returns True when applied. Never raises."""
        try:
            reason = None
            d = None
            if patch is None:
                reason = "microagent: removed from the desired properties; the configuration in force stays"
            elif not isinstance(patch, dict):
                reason = "microagent: must be an object"
            else:
                try:
                    d = merge_patch(self._base(), patch)
                except ValueError as e:
                    reason = str(e)
                if d is not None:
                    if "deviceId" not in d:
                        d["deviceId"] = self._device
                    if d["deviceId"] != self._device:
                        reason = "deviceId: %r is not this device (%s)" % (d["deviceId"], self._device)
                    else:
                        if version is None:
                            d.pop("$version", None)
                        else:
                            d["$version"] = version
                        try:
                            self.agent.configure(d)
                        except Exception as e:
                            reason = str(e) or _error_name(e)
            if reason is not None:
                self._refuse(version, reason)
                return False
            self._set_device()
            self.agent.out("microagent: configuration $version %s applied from the twin" % (version,))
            if self.config_path:
                self._write_config(d)
            else:
                self._doc = d
            self._report({"version": version, "status": "applied", "refusedVersion": None, "error": None})
            return True
        except Exception as e:
            self.agent._fault("twin", e)
            return False

    def _refuse(self, version, reason):
        reason = reason[:200]
        self.agent.out("microagent: twin configuration refused: " + reason)
        self.agent.report("config_refused", (("resource", "twin"), ("value", version), ("error", reason)), reason)
        cfg = self.agent.cfg
        self._report({"version": cfg.version if cfg is not None else None, "status": "refused",
                      "refusedVersion": version, "error": reason})

    def _report(self, state):
        self._reported = json.dumps({"microagent": state}).encode()

    def _write_config(self, doc):
        import os
        tmp = self.config_path + ".new"
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f)
            try:
                os.rename(tmp, self.config_path)
            except OSError:  # a filesystem whose rename does not replace
                os.remove(self.config_path)
                os.rename(tmp, self.config_path)
        except Exception as e:
            self.agent._fault("config_write", e)

    # ---- what the watcher sends ----------------------------------------------
    def _pump(self):
        # one publish at most, through the client's own publish (never the
        # watched one: not counted as D2C, no recursion)
        self._busy = True
        try:
            m = None
            if self._reported is not None:
                self._rid += 1
                topic = "$iothub/twin/PATCH/properties/reported/?$rid=ma%d" % self._rid
                payload = self._reported
            elif self.sec is not None:
                m = self._next()
                if m is None:
                    return
                topic, payload = m
            else:
                return
            try:
                self._publish(topic, payload)
            except Exception:
                self.up = False  # the app's next call meets the broken session
                return
            if m is None:
                self._reported = None
                self.reported_sent += 1
            else:
                self.sec.done()
        except Exception as e:
            self.agent._fault("secmsg", e)
        finally:
            self._busy = False

    def _next(self):
        # a security message, built after a collection (a board's heap is
        # small and fragmented); on MemoryError, one finding per message
        import gc
        gc.collect()
        try:
            return self.sec.next_message()
        except MemoryError:
            gc.collect()
            b = self.sec.batch
            self.sec.batch = 1
            try:
                return self.sec.next_message()
            finally:
                self.sec.batch = b

    def service(self):
        """Send one pending message (twin reported state first, then
        security messages) when the session is up and the app is not inside
        a client call. The watcher does this itself after each client call
        returns; call it from the main loop so findings made there leave
        too. Never raises."""
        try:
            self._after()
        except Exception as e:
            self.agent._fault("watch", e)

    def pending(self):
        """Messages waiting to be sent (security findings + reported)."""
        return (self.sec.pending() if self.sec is not None else 0) + (1 if self._reported is not None else 0)

    def c2d_rejected(self):
        """The app rejected a C2D message it received (counts toward
        MqttC2DRejectedMessagesNotInAllowedRange). Never raises."""
        self._count(config.REJECTED)


def watch(agent, client, **kw):
    """Instrument an umqtt.simple-compatible MQTTClient in place for agent.

    client: an MQTTClient of either generation (`ssl=True, ssl_params=`
    or `ssl=SSLContext`); its connect, subscribe, publish, wait_msg,
    check_msg, ping, disconnect, set_callback (and _recv_len, to see a
    PUBLISH cut short) are replaced on the instance by pass-throughs that
    keep arguments, results, exceptions and blocking unchanged. A client
    whose socket is already open (watched after connect()) counts as
    connected. Keywords: queue (security findings held while the session
    is down, default 16), config_path (the device's configuration file:
    the base the twin's patches merge onto, and where the result is
    written), config_doc (without config_path: the document the agent was
    configured with, kept as that base), max_config (bytes of the twin's
    microagent property parsed at most, default 4096), filters
    (subscriptions remembered for the unexpected-topic check, default 8),
    security_messages (False: no findings to the hub). Returns the Watch;
    a client watched already returns its Watch (the keywords of the first
    call stay). Raises AttributeError for a client without those methods,
    before anything changed.
    """
    w = getattr(client, "_microagent_watch", None)
    if w is not None:
        return w
    return Watch(agent, client, **kw)
