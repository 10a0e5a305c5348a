# The IoT Hub device app every board runs, with the security micro-agent
# watching its MQTT session (docs/mqtt.md). A board's main.py brings its
# network and clock up and calls run(); copy both files to the board (or
# the unix port's folder) with device.json and microagent.json.
import binascii
import json
import time

import microagent
from microagent import config, iothub, platform
from microagent.hmacsha import hmac_sha256
from umqtt.simple import MQTTClient

_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def log(msg):
    print("app: " + msg)


def quote(text):
    """Percent-encode everything but RFC 3986 unreserved characters."""
    out = []
    for c in text:
        out.append(c if c in _SAFE else "".join("%%%02X" % b for b in c.encode()))
    return "".join(out)


def sas_token(host, device, key_b64, ttl, now):
    """A SAS token for devices/<device> on hub <host>, valid `ttl` seconds
    from `now` (UTC s since 1970): sig = base64(HMAC-SHA256(key,
    sr + "\\n" + se)) (learn.microsoft.com, "Control access to IoT Hub
    with shared access signatures")."""
    sr = quote(host + "/devices/" + device)
    se = str(now + ttl)
    sig = binascii.b2a_base64(hmac_sha256(binascii.a2b_base64(key_b64), (sr + "\n" + se).encode()))
    return "SharedAccessSignature sr=%s&sig=%s&se=%s" % (sr, quote(sig.decode().strip()), se)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def clock_ok():
    """Is the device clock set (not before platform.CLOCK_FLOOR)?"""
    return platform.Clock().time() >= platform.CLOCK_FLOOR


class App:
    """The device: one IoT Hub MQTT session over umqtt.simple, watched by
    the agent; C2D, direct methods and twin patches serviced; a ping within
    the keepalive; reconnects with exponential backoff.

    s: the settings (device.json, docs/mqtt.md). network_up(s): the
    board's network bring-up, called before every connect; raises OSError
    when the network is not there (the app backs off and tries again).
    set_clock(s): the board's clock setting (NTP), tried before a connect
    and every `ntpRetry` s while the clock reads earlier than
    platform.CLOCK_FLOOR; may raise. Both None on a host (unix port)."""

    def __init__(self, s, network_up=None, set_clock=None):
        self.s = s
        self.device = s["deviceId"]
        self.host = s["host"]
        self.keepalive = s.get("keepalive", 60)
        self.network_up = network_up
        self.set_clock = set_clock
        self.agent = microagent.start(s.get("config", "microagent.json"))
        self.client = self.make_client()
        self.client.set_callback(self.on_message)
        self.watch = self.agent.watch(self.client, config_path=s.get("config", "microagent.json"))
        self.up = False
        self.backoff = s.get("backoff", [1, 60])
        self.delay = self.backoff[0]
        # the backoff starts over only after a session lasted this long (a
        # broker that accepts and drops at once is still backed off)
        self.stable_ms = (self.keepalive or 60) * 1000
        self.since = time.ticks_ms()
        self.last_out = time.ticks_ms()
        self.last_telemetry = time.ticks_ms()
        self.last_ntp = time.ticks_ms()
        self.rid = 0
        self.sent = 0

    def password(self):
        if "deviceKey" in self.s:
            return sas_token(self.host, self.device, self.s["deviceKey"], self.s.get("sasTtl", 3600),
                             platform.Clock().time())
        # X.509 devices send no SAS token; umqtt.simple needs a str when a
        # user name is set (IoT Hub requires the user name)
        return self.s.get("sasToken", "")

    def make_client(self):
        s = self.s
        server = s.get("connect", self.host)
        user = "%s/%s/?api-version=%s" % (self.host, self.device, s.get("apiVersion", "2021-04-12"))
        # a SAS token is made at each connect, from a clock known to be set
        pswd = "" if "deviceKey" in s else self.password()
        if not s.get("tls", True):
            return MQTTClient(self.device, server, s.get("port", 1883), user, pswd, self.keepalive)
        import tls
        cert = read(s["cert"]) if "cert" in s else None        # X.509 client certificate, DER
        key = read(s["key"]) if "key" in s else None
        ca = read(s["ca"])                                     # the hub's root CA, DER
        port = s.get("port", 8883)
        try:
            # umqtt.simple <= 1.3.x: ssl=True + ssl_params (ussl.wrap_socket)
            return MQTTClient(self.device, server, port, user, pswd, self.keepalive, ssl=True,
                              ssl_params={"cert": cert, "key": key, "cadata": ca, "cert_reqs": tls.CERT_REQUIRED,
                                          "server_hostname": self.host})
        except TypeError:
            # current micropython-lib umqtt.simple: ssl=SSLContext
            ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = tls.CERT_REQUIRED
            ctx.load_verify_locations(ca)
            if cert is not None:
                ctx.load_cert_chain(cert, key)
            return MQTTClient(self.device, server, port, user, pswd, self.keepalive, ssl=ctx)

    # ---- clock and session ---------------------------------------------------
    def clock(self):
        """Try the board's clock setting once (NTP); True when the clock is
        set afterwards."""
        self.last_ntp = time.ticks_ms()
        if self.set_clock is None or clock_ok():
            return clock_ok()
        try:
            self.set_clock(self.s)
        except Exception as e:
            log("NTP failed (%s: %s); the agent reports clock_not_set until the clock is set" % (
                type(e).__name__, e))
            return False
        if clock_ok():
            log("clock set from NTP")
            return True
        log("NTP did not set the clock")
        return False

    def connect(self):
        if self.network_up is not None:
            self.network_up(self.s)
        if not self.clock() and "deviceKey" in self.s:
            # a token from an unset clock (2000 on an ESP32) is expired
            # before it is sent: wait for the clock, backing off
            raise OSError("clock not set; no SAS token until it is")
        c = self.client
        if "deviceKey" in self.s:
            c.pswd = self.password()   # a fresh token for every connect
        c.connect()
        d = self.device
        for f in ("devices/%s/messages/devicebound/#" % d, "$iothub/methods/POST/#",
                  "$iothub/twin/PATCH/properties/desired/#", "$iothub/twin/res/#"):
            c.subscribe(f)
        self.rid += 1
        c.publish("$iothub/twin/GET/?$rid=get%d" % self.rid, b"")
        self.up = True
        self.since = self.last_out = time.ticks_ms()
        log("connected to %s as %s" % (self.host, d))

    def lost(self, e):
        log("session lost (%s: %s); reconnecting in %ss" % (type(e).__name__, e, self.delay))
        self.up = False
        try:
            self.client.sock.close()
        except Exception:
            pass
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, self.backoff[1])

    def publish(self, topic, payload):
        self.client.publish(topic, payload)
        self.last_out = time.ticks_ms()

    def telemetry(self):
        self.sent += 1
        self.publish("devices/%s/messages/events/" % self.device,
                     json.dumps({"seq": self.sent, "uptime_ms": time.ticks_ms()}))

    # ---- messages from the hub --------------------------------------------
    def on_message(self, topic, msg):
        k = self.watch.classify(topic) if self.watch else iothub.OTHER
        if k == iothub.C2D:
            try:
                text = msg.decode()
            except Exception:
                self.watch.c2d_rejected()
                log("c2d rejected: not UTF-8 (%d bytes)" % len(msg))
                return
            log("c2d: %s" % text[:80])
        elif k == iothub.METHOD:
            t = topic.decode()
            name = iothub.method_name(t)
            rid = iothub.rid(t)   # opaque text: echoed back as is
            status, body = 404, b'{"error":"no such method"}'
            if name == "echo":
                status, body = 200, msg
            elif name == "telemetry":
                self.telemetry()
                status, body = 200, json.dumps({"sent": self.sent})
            log("method %s rid=%s -> %d" % (name, rid, status))
            self.publish("$iothub/methods/res/%d/?$rid=%s" % (status, rid), body)
        elif k == iothub.TWIN:
            log("twin desired patch (%d bytes)" % len(msg))
        elif k == iothub.TWIN_RES:
            log("twin response %s" % topic.decode()[17:20])

    # ---- main loop ----------------------------------------------------------
    def step(self):
        if not self.up:
            self.connect()
        self.client.check_msg()
        now = time.ticks_ms()
        if self.delay != self.backoff[0] and time.ticks_diff(now, self.since) >= self.stable_ms:
            self.delay = self.backoff[0]
        if self.keepalive and time.ticks_diff(now, self.last_out) >= self.keepalive * 500:
            self.client.ping()
            self.last_out = now
        every = self.s.get("telemetryInterval", 60)
        if every and time.ticks_diff(now, self.last_telemetry) >= every * 1000:
            self.last_telemetry = now
            self.telemetry()
        if self.set_clock is not None and time.ticks_diff(now, self.last_ntp) >= self.s.get("ntpRetry", 60) * 1000 \
                and not clock_ok():
            self.clock()
        self.agent.poll()
        self.watch.service()

    def run(self):
        try:
            while True:
                try:
                    self.step()
                except Exception as e:   # OSError, MQTTException, a cut stream (IndexError)...
                    self.lost(e)
                    continue
                time.sleep_ms(self.s.get("loopMs", 50))
        except KeyboardInterrupt:
            pass
        self.stop()

    def stop(self):
        self.agent.flush()
        for _ in range(8):   # let the last findings out, one publish each
            if not self.up or not self.watch.pending():
                break
            self.watch.service()
        w = self.watch
        n = w.counts
        log("stopped: c2d=%d d2c=%d methods=%d twin=%d rejected=%d unauthorized=%d "
            "security_messages=%d findings_sent=%d dropped=%d" % (
                n[config.C2D], n[config.D2C], n[config.METHOD], n[config.TWIN], n[config.REJECTED],
                n[config.UNAUTHORIZED], w.sec.messages, w.sec.sent, w.sec.dropped))
        try:
            if self.up:
                self.client.disconnect()
        except Exception:
            pass


def run(path="device.json", network_up=None, set_clock=None):
    """Read the settings file `path` (JSON, docs/mqtt.md) and run the app
    until Ctrl-C (KeyboardInterrupt). network_up, set_clock: the board's
    (see App); None on a host whose network and clock are up."""
    with open(path) as f:
        s = json.load(f)
    App(s, network_up, set_clock).run()
