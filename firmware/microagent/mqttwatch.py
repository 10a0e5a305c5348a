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


class Watch:
    """An MQTT client watched for an agent; see watch()."""

    def __init__(self, agent, client, queue=16, config_path=None, max_config=4096, filters=8,
                 security_messages=True):
        self.agent = agent
        self.client = client
        self.config_path = config_path
        self.max_config = max_config
        self.up = False          # the session is connected (as far as the watcher saw)
        self.counts = [0] * len(config.WINDOW_RULES)  # events seen, by config counter index
        self._depth = 0          # nesting of the app's calls into the client
        self._busy = False       # inside our own publish
        self._rl = -1            # remaining length of the PUBLISH being read
        self._handled = None     # the exception already reported on its way out
        self._filters = []       # (kind, bytes, bytes) per subscribed filter
        self._max_filters = filters
        self._too_many = False
        self._reported = None    # pending twin reported patch (bytes)
        self._rid = 0
        self.reported_sent = 0
        self._device = None
        self._set_device()
        self.sec = None
        if security_messages:
            self.sec = secmsg.SecurityMessages(agent, queue)
            agent.sinks.append(self.sec)
        # the client's own bound methods; ours replace them on the instance
        self._connect = client.connect
        self._subscribe = client.subscribe
        self._publish = client.publish
        self._wait = client.wait_msg
        self._check = client.check_msg
        self._ping = client.ping
        self._disconnect = client.disconnect
        self._set_cb = client.set_callback
        self._recv = getattr(client, "_recv_len", None)
        self.app_cb = getattr(client, "cb", None)
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
        self._c2d = b"devices/" + dev.encode() + b"/messages/devicebound"
        self._d2c_s = "devices/" + dev + "/messages/events"
        self._d2c_b = self._d2c_s.encode()

    # ---- the app's calls --------------------------------------------------
    def set_callback(self, f):
        """The app's set_callback(f): f gets every message, after the watcher."""
        self.app_cb = f
        self._set_cb(self._cb)

    def connect(self, *args, **kw):
        c = self.client
        self.up = False
        self._filters = []   # a new session: the app subscribes again
        self._too_many = False
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
        self._depth -= 1
        self.up = True
        self._rl = -1
        self._after()
        return r

    def subscribe(self, topic, qos=0):
        f = _b(topic)
        entry = None
        try:
            if not valid_filter(f):
                self._finding("mqtt_malformed", "subscribe", f, "invalid topic filter")
            elif len(self._filters) < self._max_filters:
                if f.endswith(b"/#") and f.find(b"+") < 0 and f.find(b"#") == len(f) - 1:
                    entry = (1, f[:-2], f[:-1])      # prefix match
                elif f.find(b"+") < 0 and f.find(b"#") < 0:
                    entry = (0, f, f)                # exact
                else:
                    entry = (2, f, f)                # general
                self._filters.append(entry)
            else:
                self._too_many = True
        except Exception as e:
            self.agent._fault("watch", e)
        self._depth += 1
        try:
            r = self._subscribe(topic, qos)
        except Exception as e:
            if entry is not None and entry in self._filters:
                self._filters.remove(entry)
            self._fail(e, "subscribe")
            raise
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
        self._depth -= 1
        if k == _D2C_KIND:
            self.counts[_D2C] += 1
            self.agent.count(_D2C)
        if self._depth == 0 and self.up:
            self._after()
        return r

    def wait_msg(self):
        self._depth += 1
        try:
            r = self._wait()
        except Exception as e:
            self._fail(e, "receive")
            raise
        self._depth -= 1
        if self._depth == 0 and self.up:
            self._after()
        return r

    def check_msg(self, *args):
        self._depth += 1
        try:
            r = self._check(*args)
        except Exception as e:
            self._fail(e, "receive")
            raise
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
        self._depth -= 1
        self._after()
        return r

    def disconnect(self):
        self.up = False
        self._filters = []
        self._too_many = False
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
        # an exception on its way to the app: count or report it once (the
        # same exception passes every nested wrapper)
        self._depth -= 1
        if e is not self._handled:
            self._handled = e
            self._failed(e, op)
        if self._depth <= 0:
            self._depth = 0
            self._handled = None

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
            self._too_many = False
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
            if not t or t.find(b"+") >= 0 or t.find(b"#") >= 0:
                self._finding("mqtt_malformed", "receive", t, "invalid topic name")
            else:
                self._observe(t, msg)
        except Exception as e:
            self.agent._fault("watch", e)
        self._rl = -1
        cb = self.app_cb
        if cb is not None:
            cb(topic, msg)

    def _observe(self, t, msg):
        rl = self._rl
        if rl >= 0:
            got = 2 + len(t) + len(msg)
            if got != rl and got + 2 != rl:
                # the stream ended inside this PUBLISH: umqtt hands over
                # what it read (QoS 0 cut by exactly 2 bytes is not seen)
                self._finding("mqtt_malformed", "receive", t, "connection closed mid-message",
                              (("expected", rl), ("actual", got)))
        if self._filters and not self._too_many and not self._subscribed(t):
            self._finding("mqtt_unexpected", "receive", t, "no subscription matches")
        c = self._c2d
        n = len(c)
        if t.startswith(c) and (len(t) == n or t[n] == _SL):
            self.counts[_C2D] += 1
            self.agent.count(_C2D)
            if len(msg) > MAX_C2D:
                self._too_big(t, msg, MAX_C2D)
            return
        k = incoming(t, self._device, c)
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
    def _json(self, t, msg, what):
        try:
            text = bytes(msg).decode()
        except Exception:
            self._finding("mqtt_malformed", "receive", t, what + " is not UTF-8")
            return None
        try:
            doc = json.loads(text)
        except Exception:
            self._finding("mqtt_malformed", "receive", t, what + " is not JSON")
            return None
        if not isinstance(doc, dict):
            self._finding("mqtt_malformed", "receive", t, what + " is not a JSON object")
            return None
        return doc

    def _desired_patch(self, t, msg):
        if len(msg) > self.max_config:
            if msg.find(b'"microagent"') >= 0:
                v = t[len(_DESIRED) + 10:]
                self._refuse(int(v) if v else None,
                             "twin patch of %d bytes is larger than this device parses (%d)" % (len(msg), self.max_config))
            return
        doc = self._json(t, msg, "twin patch")
        if doc is not None and "microagent" in doc:
            self.apply(doc["microagent"], doc.get("$version"))

    def _twin_response(self, t, msg):
        # the answer to the app's twin GET: {"desired": {...}, "reported": {...}}
        if not t.startswith(b"$iothub/twin/res/200/") or msg.find(b'"microagent"') < 0:
            return
        if len(msg) > self.max_config:
            self._refuse(None, "twin of %d bytes is larger than this device parses (%d)" % (len(msg), self.max_config))
            return
        doc = self._json(t, msg, "twin")
        if doc is None:
            return
        desired = doc.get("desired")
        if isinstance(desired, dict) and "microagent" in desired:
            v = desired.get("$version")
            cfg = self.agent.cfg
            if cfg is not None and v is not None and cfg.version == v:
                return  # in force already
            self.apply(desired["microagent"], v)

    def apply(self, doc, version=None):
        """Apply a configuration document from the twin (config.md): it
        replaces the rules only when it validates; deviceId defaults to
        this device's and must be this device's; `version` (the desired
        $version) becomes the config's $version. On success the document
        is written to config_path (when set) and the reported property
        `microagent` says so; a refusal changes nothing, is one
        config_refused finding and is reported with its reason.
        Returns True when applied. Never raises."""
        try:
            reason = None
            if doc is None:
                reason = "microagent: removed from the desired properties; the configuration in force stays"
            elif not isinstance(doc, dict):
                reason = "microagent: must be an object"
            else:
                d = {}
                for k in doc:
                    d[k] = doc[k]
                if "deviceId" not in d:
                    d["deviceId"] = self._device
                if d["deviceId"] != self._device:
                    reason = "deviceId: %r is not this device (%s)" % (d["deviceId"], self._device)
                else:
                    if version is not None:
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
    keep results, exceptions and blocking unchanged. Keywords: queue
    (security findings held while the session is down, default 16),
    config_path (where a configuration accepted from the twin is written),
    max_config (bytes of twin JSON parsed at most, default 4096), filters
    (subscriptions remembered for the unexpected-topic check, default 8),
    security_messages (False: no findings to the hub). Returns the Watch.
    """
    return Watch(agent, client, **kw)
