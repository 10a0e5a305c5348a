# An IoT Hub device app for an ESP32 (MicroPython >= 1.23), with the
# security micro-agent watching its MQTT session. Copy to the board's flash:
#     main.py, device.json (docs/mqtt.md), microagent.json, certs/*.der,
#     lib/umqtt/simple.py (mip install umqtt.simple), lib/microagent/*.mpy
# (mpy-cross -march=xtensawin, see boards/esp32/board.json) and reset.
# The board facts (heap, Wi-Fi, clock) live in this part; the app below the
# marker is the same as boards/unix/main.py.
import time

SETTINGS = "device.json"
_wlan = None


def network_ok():
    """Is the Wi-Fi station connected?"""
    return _wlan is not None and _wlan.isconnected()


def network_up(s):
    """Wi-Fi station up (settings "wifi": {"ssid": ..., "password": ...}),
    then the clock from NTP (settings "ntp": host, default pool.ntp.org).
    An ESP32's RTC starts near 2000-01-01: until NTP sets it the agent
    reports clock_not_set and gives no expiry verdicts. Raises OSError when
    the station does not connect within 20 s (the app backs off and
    retries)."""
    global _wlan
    import network
    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
    _wlan.active(True)
    if not _wlan.isconnected():
        w = s["wifi"]
        _wlan.connect(w["ssid"], w["password"])
        t0 = time.ticks_ms()
        while not _wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > 20000:
                raise OSError("Wi-Fi: no connection to %s" % w["ssid"])
            time.sleep_ms(200)
    print("app: Wi-Fi up, address %s" % _wlan.ifconfig()[0])
    try:
        import ntptime
        if "ntp" in s:
            ntptime.host = s["ntp"]
        ntptime.settime()   # UTC into the RTC
        print("app: clock set from NTP")
    except Exception as e:
        print("app: NTP failed (%s); the agent reports clock_not_set until the clock is set" % (e,))


# ---- app (the same in every board's main.py) --------------------------------
import binascii
import json

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


class App:
    """The device: one IoT Hub MQTT session over umqtt.simple, watched by
    the agent; C2D, direct methods and twin patches serviced; a ping within
    the keepalive; reconnects with exponential backoff."""

    def __init__(self, s):
        self.s = s
        self.device = s["deviceId"]
        self.host = s["host"]
        self.keepalive = s.get("keepalive", 60)
        self.agent = microagent.start(s.get("config", "microagent.json"))
        self.client = self.make_client()
        self.client.set_callback(self.on_message)
        self.watch = self.agent.watch(self.client, config_path=s.get("config", "microagent.json"))
        self.up = False
        self.backoff = s.get("backoff", [1, 60])
        self.delay = self.backoff[0]
        self.last_out = time.ticks_ms()
        self.last_telemetry = time.ticks_ms()
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
        if not s.get("tls", True):
            return MQTTClient(self.device, server, s.get("port", 1883), user, self.password(), self.keepalive)
        import tls
        cert = read(s["cert"]) if "cert" in s else None        # X.509 client certificate, DER
        key = read(s["key"]) if "key" in s else None
        ca = read(s["ca"])                                     # the hub's root CA, DER
        port = s.get("port", 8883)
        try:
            # umqtt.simple <= 1.3.x: ssl=True + ssl_params (ussl.wrap_socket)
            return MQTTClient(self.device, server, port, user, self.password(), self.keepalive, ssl=True,
                              ssl_params={"cert": cert, "key": key, "cadata": ca, "cert_reqs": tls.CERT_REQUIRED,
                                          "server_hostname": self.host})
        except TypeError:
            # current micropython-lib umqtt.simple: ssl=SSLContext
            ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = tls.CERT_REQUIRED
            ctx.load_verify_locations(ca)
            if cert is not None:
                ctx.load_cert_chain(cert, key)
            return MQTTClient(self.device, server, port, user, self.password(), self.keepalive, ssl=ctx)

    # ---- session ------------------------------------------------------------
    def connect(self):
        if not network_ok():
            network_up(self.s)
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
        self.delay = self.backoff[0]
        self.last_out = time.ticks_ms()
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
        if self.keepalive and time.ticks_diff(now, self.last_out) >= self.keepalive * 500:
            self.client.ping()
            self.last_out = now
        every = self.s.get("telemetryInterval", 60)
        if every and time.ticks_diff(now, self.last_telemetry) >= every * 1000:
            self.last_telemetry = now
            self.telemetry()
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


def main(path=SETTINGS):
    with open(path) as f:
        s = json.load(f)
    network_up(s)
    App(s).run()


if __name__ == "__main__":
    main()
