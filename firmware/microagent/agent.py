# The agent: collectors call it with events; it keeps fixed-size counters per
# time window, evaluates the baseline and hands findings to its sinks.
# Every public method swallows its own faults (one agent_error finding):
# the application the agent watches must never see an exception from it.
import json

from . import alerts, config, iothub, ipaddr, platform

# built once: a tuple written in a call allocates on every call
_BYTES = (bytes, bytearray)


def _console(line):
    print(line)


class Agent:
    """The security micro-agent.

    Agent(clock=None, out=print): clock has ticks_ms() and time() (UTC s since
    1970), default platform.Clock(); out(line) receives each console line.
    Call configure() or load() before feeding events; until then the agent
    keeps no rules and reports nothing.
    """

    def __init__(self, clock=None, out=_console):
        self.clock = clock or platform.Clock()
        self.out = out
        self.sinks = []  # extra sinks: fn(ftype, utc, count, details)
        self.cfg = None
        self.device = "unknown"
        self._last = self.clock.ticks_ms()
        self._ms = 0
        self.sec = 0  # whole seconds since start, from ticks (wrap-safe)
        self._open = 0
        self._win = []
        self._by_ctr = [None] * len(config.WINDOW_RULES)
        self._due = -1
        self.log = alerts.FoldLog(self._emit)
        self.stats = {"events": 0, "findings": 0, "faults": 0}
        self.checks = []  # fn(agent) run at start, at each window end and when the clock gets set
        self.watchers = []  # fn(agent) run at each poll(): cheap change detection (certificate files)
        self.certs = None  # certcheck.CertCheck once a configuration lists certificates
        self._clock_unset = False
        self._clock_losses = 0  # fold key of clock_not_set: each loss is a new finding

    # ---- configuration -------------------------------------------------
    def configure(self, doc):
        """Validate and apply a configuration document (config.md).

        doc: dict. Returns the list of warnings (str). Raises
        config.ConfigError naming the key; the previous configuration, if
        any, stays in force.
        """
        try:
            cfg = config.parse(doc)
        except (MemoryError, RuntimeError) as e:
            raise config.ConfigError("config: " + config.too_big(e))
        self.cfg = cfg
        self.device = cfg.device_id
        self.log.fold_s = cfg.fold_s
        self._win = []
        self._by_ctr = [None] * len(config.WINDOW_RULES)
        self._tick()
        for idx, lo, hi, size in cfg.windows:
            # [counter, min, max, size_s, end_s, value]
            r = [idx, lo, hi, size, self.sec + size, self._open if idx == config.ACTIVE else 0]
            self._win.append(r)
            self._by_ctr[idx] = r
        self._plan()
        for w in cfg.warnings:
            self.out("microagent: warning: " + w)
        if cfg.certificates and self.certs is None:
            try:
                from . import certcheck  # only boards with certificates to check load it
                self.certs = certcheck.CertCheck(self)
            except ImportError:
                self.out("microagent: warning: certificates: microagent.certcheck is not installed; not checked")
        self._run_checks()
        return cfg.warnings

    def load(self, path):
        """Read a JSON configuration file and configure() from it.

        Raises config.ConfigError naming the file or key for bad JSON, text
        that is not UTF-8, a document too large or too deeply nested for
        the heap, or bad content; OSError for an unreadable file. The
        running configuration stays in force.
        """
        with open(path) as f:
            try:
                doc = json.load(f)  # streamed: the text is never held whole
            except ValueError as e:
                why = str(e)  # MicroPython's json gives no reason for bad UTF-8
                raise config.ConfigError("%s: not valid JSON (%s)" % (path, why or "or not UTF-8 text"))
            except (MemoryError, RuntimeError) as e:
                raise config.ConfigError("%s: %s" % (path, config.too_big(e)))
        return self.configure(doc)

    # ---- time ------------------------------------------------------------
    def _tick(self):
        now = self.clock.ticks_ms()
        d = platform.ticks_diff(now, self._last)
        self._last = now
        if d > 0:
            self._ms += d
            if self._ms >= 1000:
                s = self._ms // 1000
                self.sec += s
                self._ms -= s * 1000
        if 0 <= self._due <= self.sec:
            self._close()

    def _plan(self):
        due = self.log.next_due
        for r in self._win:
            if due < 0 or r[4] < due:
                due = r[4]
        self._due = due

    def next_due(self):
        """Agent seconds at which the next window or fold window ends, or
        -1 when none is pending (a replay clock steps to it)."""
        return self._due

    def _close(self):
        now = self.sec
        utc = None
        for r in self._win:
            if r[4] > now:
                continue
            if utc is None:
                utc = self.clock.time()
            idx, lo, hi, size = r[0], r[1], r[2], r[3]
            val = r[5]
            if not lo <= val <= hi:
                # one finding per window already: never folded
                self.log.emit(config.WINDOW_RULES[idx], utc, 1, (("value", val), ("min", lo), ("max", hi), ("window_s", size)))
            r[4] += size
            # windows the agent slept through have one value each: 0 for
            # counters, the open connections for the active-connection rule
            idle = self._open if idx == config.ACTIVE else 0
            if r[4] <= now:
                skipped = (now - r[4]) // size + 1
                r[4] += skipped * size
                if not lo <= idle <= hi:
                    self.log.emit(config.WINDOW_RULES[idx], utc, skipped,
                                  (("value", idle), ("min", lo), ("max", hi), ("window_s", size)))
            r[5] = idle
        if 0 <= self.log.next_due <= now:
            self.log.flush(now, utc if utc is not None else self.clock.time())
        if utc is not None:
            self._run_checks()
        self._plan()

    def poll(self):
        """Advance the clock: close ended windows and fold windows. Call it
        at least every few seconds (and at least once a day: a ticks counter
        wraps after 2**29 ms on a board). Runs the checks again as soon as
        a clock that was not set has been set."""
        try:
            self._tick()
            if self._clock_unset and self.clock.time() >= platform.CLOCK_FLOOR:
                self._run_checks()
            for fn in self.watchers:
                fn(self)
        except Exception as e:
            self._fault("poll", e)

    def utc_if_set(self):
        """UTC seconds now, or None while the device clock reads earlier
        than platform.CLOCK_FLOOR (never set: no expiry verdict can be
        made). The first call that finds it unset reports one
        clock_not_set finding; after the clock is set, a later loss of it
        is reported again."""
        t = self.clock.time()
        if t < platform.CLOCK_FLOOR:
            if not self._clock_unset:
                self._clock_unset = True
                self._clock_losses += 1  # a new loss is printed at once, not folded into the last
                self._find(t, "clock_not_set", (("value", platform.iso8601(t)),
                                                 ("min", platform.iso8601(platform.CLOCK_FLOOR))), self._clock_losses)
            return None
        self._clock_unset = False
        return t

    def flush(self):
        """Emit every folded repeat now (at shutdown)."""
        try:
            self.log.flush(self.sec, self.clock.time(), True)
            self._plan()
        except Exception as e:
            self._fault("flush", e)

    # ---- findings ----------------------------------------------------------
    def _emit(self, ftype, utc, count, details):
        self.stats["findings"] += 1
        if self.cfg is None or self.cfg.console:
            self.out(alerts.format_line(ftype, self.device, utc, count, details))
        for s in self.sinks:
            try:
                s(ftype, utc, count, details)
            except Exception as e:  # a broken sink must not stop the others
                self.stats["faults"] += 1
                self.out("microagent: sink error: %r" % (e,))

    def _find(self, utc, ftype, details, key=None):
        self.log.report(self.sec, utc, ftype, key if key is not None else details, details)
        if 0 <= self.log.next_due and (self._due < 0 or self.log.next_due < self._due):
            self._due = self.log.next_due

    def report(self, ftype, details, key=None):
        """Report a finding from a collector or check.

        ftype: a type in alerts.CATALOGUE; details: tuple of (key, value)
        pairs (alerts.md detail keys); key: what identifies repeats for
        folding (default: the details themselves). Never raises.
        """
        try:
            self._tick()
            self._find(self.clock.time(), ftype, details, key)
        except Exception as e:
            self._fault("report", e)

    def _fault(self, where, exc):
        self.stats["faults"] += 1
        try:
            msg = "%s: %s" % (type(exc).__name__, exc)
            self._find(self.clock.time(), "agent_error", (("operation", where), ("error", msg[:120])), where)
        except Exception:
            pass

    def _run_checks(self):
        for fn in self.checks:
            try:
                fn(self)
            except Exception as e:
                self._fault("check", e)

    # ---- events ------------------------------------------------------------
    def count(self, ctr):
        """Count one event of a counter (config.C2D, D2C, METHOD, REJECTED,
        TWIN, UNAUTHORIZED) in the current time window. Allocates nothing."""
        try:
            self.stats["events"] += 1
            self._tick()
            r = self._by_ctr[ctr]
            if r is not None:
                r[5] += 1
        except Exception as e:
            self._fault("count", e)

    def connection_opened(self, remote, port, inbound=False):
        """A connection opened.

        remote: address bytes (4 or 16), IP text, or an lwIP-style
        (host, port) tuple (its port then wins); a raw struct sockaddr is
        ambiguous with IPv6 bytes, so decode it first with
        ipaddr.from_sockaddr(). port: int, the remote's port for an
        outbound connection, the device's own (service) port for an inbound
        one, so repeats from one source fold whatever its ephemeral port.
        inbound: True for an accepted connection.
        Checks the threat-intel list (both directions) and the allow list
        (outbound only), and counts it as active until connection_closed().
        """
        try:
            self.stats["events"] += 1
            self._tick()
            if isinstance(remote, str):
                remote = ipaddr.parse_ip(remote)
            elif isinstance(remote, tuple):
                remote, port = ipaddr.from_sockaddr(remote)
            elif not isinstance(remote, _BYTES) or len(remote) not in (4, 16):
                raise ValueError("remote must be 4 or 16 address bytes, text or (host, port)")
            elif len(remote) == 16 and remote[:12] == ipaddr._MAPPED:
                remote = remote[12:]
            self._open += 1
            r = self._by_ctr[config.ACTIVE]
            if r is not None and self._open > r[5]:
                r[5] = self._open
            cfg = self.cfg
            if cfg is None:
                return
            direction = "in" if inbound else "out"
            if cfg.threat.match(remote):
                self._conn_finding("suspicious_ip", remote, port, direction)
            if not inbound and cfg.allow is not None and not cfg.allow.match(remote):
                self._conn_finding("ConnectionToIpNotAllowed", remote, port, direction)
        except Exception as e:
            self._fault("connection_opened", e)

    def _conn_finding(self, ftype, remote, port, direction):
        key = (bytes(remote), port, direction)
        self._find(self.clock.time(), ftype,
                   (("remote", ipaddr.format_ip(remote)), ("port", port), ("direction", direction)), key)

    def connection_closed(self):
        """A connection counted by connection_opened() closed."""
        try:
            self.stats["events"] += 1
            self._tick()
            if self._open > 0:
                self._open -= 1
        except Exception as e:
            self._fault("connection_closed", e)

    # ---- IoT Hub MQTT events (collectors: the MQTT watcher, replay) -------
    def mqtt_connect(self, client_id, username, password):
        """An MQTT CONNECT was sent; a SAS-token password goes to check_sas().
        Never raises."""
        try:
            if isinstance(password, _BYTES):
                try:
                    password = bytes(password).decode()
                except UnicodeError:  # not text, so not a SAS token
                    return
            if isinstance(password, str) and password.startswith("SharedAccessSignature "):
                self.check_sas(password)
        except Exception as e:
            self._fault("mqtt_connect", e)

    def check_cert(self, der, expected=None, label="tls", depth=0):
        """Check a peer certificate's DER (bytes, or the memoryview
        tls.SSLContext.verify_callback passes): validity, and the SHA-1/
        SHA-256 thumbprint where `expected` is given (see
        certcheck.check_peer; certcheck.PeerWatch is a ready-made
        verify_callback). Returns the x509.Certificate or None. Never
        raises."""
        try:
            from . import certcheck
            return certcheck.check_peer(self, der, expected, label, depth)
        except Exception as e:
            self._fault("check_cert", e)

    def check_sas(self, token):
        """Check a SAS token (expiry; signature where sas.deviceKey is set).
        token: str. Never raises; findings go to the console and sinks."""
        try:
            from . import sascheck
        except ImportError:  # a build without credential checks
            return
        try:
            sascheck.check(self, token)
        except Exception as e:
            self._fault("check_sas", e)

    def mqtt_connack(self, rc):
        """CONNACK return code rc (int); 4 (bad credentials) and 5 (not
        authorized) count as unauthorized operations (MQTT 3.1.1 s3.2.2.3).
        Never raises."""
        if rc == 4 or rc == 5:
            self.count(config.UNAUTHORIZED)

    def mqtt_suback(self, rcs):
        """SUBACK return code(s): int or a sequence of ints; 0x80 (refused)
        counts as an unauthorized operation (MQTT 3.1.1 s3.9.3). Never
        raises: anything else is one agent_error finding."""
        try:
            if isinstance(rcs, int):
                rcs = (rcs,)
            for rc in rcs:
                if rc == 0x80:
                    self.count(config.UNAUTHORIZED)
        except Exception as e:
            self._fault("mqtt_suback", e)

    def mqtt_message(self, topic, nbytes=0):
        """An incoming PUBLISH on `topic` (str): counts C2D, direct method
        or twin update. Returns the iothub kind (iothub.MALFORMED for a
        topic that is not text). Never raises."""
        try:
            k = iothub.incoming(topic, self.device)
            if k == iothub.C2D:
                self.count(config.C2D)
            elif k == iothub.METHOD:
                self.count(config.METHOD)
            elif k == iothub.TWIN:
                self.count(config.TWIN)
            return k
        except Exception as e:
            self._fault("mqtt_message", e)
            return iothub.MALFORMED

    def mqtt_publish(self, topic, nbytes=0):
        """An outgoing PUBLISH on `topic` (str): counts D2C telemetry.
        Returns the iothub kind. Never raises."""
        try:
            k = iothub.outgoing(topic, self.device)
            if k == iothub.D2C:
                self.count(config.D2C)
            return k
        except Exception as e:
            self._fault("mqtt_publish", e)
            return iothub.MALFORMED

    def watch(self, client, **kw):
        """Watch the app's umqtt.simple-compatible MQTT client in place
        (mqttwatch.watch: counting, security messages, config from the
        twin). Returns the mqttwatch.Watch, or None when the client cannot
        be watched (one agent_error finding)."""
        try:
            from . import mqttwatch
            return mqttwatch.watch(self, client, **kw)
        except Exception as e:
            self._fault("watch", e)
            return None

    def c2d_rejected(self):
        """The application rejected a C2D message."""
        self.count(config.REJECTED)

    @property
    def open_connections(self):
        """Connections open now (opened and not yet closed)."""
        return self._open
