"""How the watcher holds up to what apps do, with real parts: PyPI's
umqtt.simple 1.3.4 on the unix port against mosquitto on loopback (paho
playing the hub), or against mqttparts.FakeBroker where mosquitto would
refuse what IoT Hub accepts (device ids with + or #). watch() twice, a
client that cannot be watched, watch() after connect(), exceptions the
app's own callback raises, Ctrl-C inside a client call, a callback
assigned to client.cb directly, arguments to wait_msg()."""
import json
import signal
import time

from mqttparts import Broker, FakeBroker, Hub, alerts, publish_packet, security_messages, without_time
from test_mqtt_device import _finish, alert, device_code, mqtt_lib  # noqa: F401 (fixture)

C2D = "devices/dev-01/messages/devicebound/#"


def _with_hub(lib, tmp_path, code, send, ready="READY"):
    """Run device `code` against mosquitto; once it printed `ready`, call
    send(hub). Returns (lines, what the hub received)."""
    with Broker(tmp_path / "b") as b:
        hub = Hub(b.port)
        try:
            dev = device_code(lib, code, [b.port], tmp_path)
            dev.wait_line(lambda l: l == ready)
            send(hub, dev)
            lines = _finish(dev)
            time.sleep(0.3)
            seen = hub.drain()
        finally:
            hub.close()
    return lines, seen


WATCH_TWICE = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 100)]})
class OnlyConnect:      # not an MQTT client: it cannot be watched
    def connect(self):
        pass
print("BAD", a.watch(OnlyConnect()), len(a.sinks), a.stats["faults"])
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
got = []
w1 = a.watch(c)
c.set_callback(lambda t, m: got.append(m))
w2 = a.watch(c)
print("SAME", w1 is w2, len(a.sinks))
c.connect()
c.subscribe(b"devices/dev-01/messages/devicebound/#")
print("READY")
while not got:
    c.wait_msg()
print("GOT", got, w1.counts)
c.disconnect()
"""


def test_watch_twice_is_one_watch_and_a_failed_watch_leaves_no_sink(mqtt_lib, tmp_path):
    lines, _ = _with_hub(mqtt_lib, tmp_path, WATCH_TWICE, lambda hub, dev: hub.c2d(b"one"))
    assert [l for l in lines if not l.startswith("ALERT ")] == [
        "BAD None 0 1", "SAME True 1", "READY", "GOT [b'one'] [0, 1, 0, 0, 0, 0, 0]"]
    assert [without_time(x) for x in alerts(lines)] == [{
        "type": "agent_error", "name": "Security agent internal error", "kind": "alert", "source": "device",
        "severity": "low", "device": "dev-01", "count": 1,
        "details": {"operation": "watch", "error": "AttributeError: 'OnlyConnect' object has no attribute 'subscribe'"}}]


AFTER_CONNECT = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01"})
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
got = []
c.set_callback(lambda t, m: got.append(m))
c.connect()
c.subscribe(b"devices/dev-01/messages/devicebound/#")
w = a.watch(c)                      # the session is up already
print("UP", w.up)
a.report("config_refused", (("error", "before"),), 1)
w.service()
print("SENT", w.sec.messages, w.pending())
w.apply({"foldWindowSize": "PT2M"}, 2)
c.ping()                            # the reported state goes out after the call
print("REPORTED", w.reported_sent)
c.subscribe(b"$iothub/methods/POST/#")
print("READY")
while not got:
    c.wait_msg()
print("GOT", got, w.counts)
c.disconnect()
"""


def test_watch_after_connect_sends_at_once(mqtt_lib, tmp_path):
    lines, seen = _with_hub(mqtt_lib, tmp_path, AFTER_CONNECT, lambda hub, dev: hub.c2d(b"earlier filter"))
    assert [l for l in lines if not l.startswith(("ALERT ", "microagent:"))] == [
        "UP True", "SENT 1 0", "REPORTED 1", "READY", "GOT [b'earlier filter'] [0, 1, 0, 0, 0, 0, 0]"]
    # the C2D came on a subscription made before watch(): not "unexpected"
    assert [without_time(x)["details"] for x in alerts(lines)] == [{"error": "before"}]
    assert [e["Payload"][0]["details"] for m in security_messages(seen) for e in m["Events"]] == [{"error": "before"}]
    assert [json.loads(p) for t, p in seen if t.startswith("$iothub/twin/PATCH/properties/reported/")] == [
        {"microagent": {"version": 2, "status": "applied", "refusedVersion": None, "error": None}}]


APP_RAISES = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 100)]})
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
KINDS = {b"ValueError": ValueError, b"IndexError": IndexError, b"AssertionError": AssertionError,
         b"MemoryError": MemoryError, b"KeyboardInterrupt": KeyboardInterrupt}
done = []
def cb(t, m):
    if m in KINDS:
        raise KINDS[m]("app bug")
    done.append(m)
c.set_callback(cb)
w = a.watch(c)
c.connect()
c.subscribe(b"devices/dev-01/messages/devicebound/#")
print("READY")
import time
k = 0
while not done:
    k += 1
    try:
        if k % 2:
            c.wait_msg()
        else:
            c.check_msg()        # check_msg -> wait_msg: nested calls
            time.sleep_ms(10)
    except BaseException as e:
        print("APP caught", type(e).__name__, e, w.up, w._depth)
print("AFTER", w.up, w._depth, w.counts, w.pending())
a.report("config_refused", (("error", "later"),), 1)
c.ping()
c.wait_msg()    # its PINGRESP: nothing unread when the socket closes (no RST)
print("SENT", w.sec.messages, w.pending())
c.disconnect()
"""


def test_exceptions_of_the_apps_callback_are_the_apps(mqtt_lib, tmp_path):
    def send(hub, dev):
        for m in (b"ValueError", b"IndexError", b"AssertionError", b"MemoryError", b"KeyboardInterrupt", b"ok"):
            hub.c2d(m)
    lines, seen = _with_hub(mqtt_lib, tmp_path, APP_RAISES, send)
    caught = ["APP caught %s app bug True 0" % k for k in
              ("ValueError", "IndexError", "AssertionError", "MemoryError", "KeyboardInterrupt")]
    assert [l for l in lines if not l.startswith("ALERT ")] == ["READY"] + caught + [
        "AFTER True 0 [0, 6, 0, 0, 0, 0, 0] 0", "SENT 1 0"]
    # no mqtt_malformed for the app's own IndexError/AssertionError/MemoryError
    assert [without_time(x)["details"] for x in alerts(lines)] == [{"error": "later"}]
    assert len(security_messages(seen)) == 1


SIGINT = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01"})
c = MQTTClient("dev-01", "127.0.0.1", port, keepalive=30)
c.set_callback(lambda t, m: None)
w = a.watch(c)
c.connect()
c.subscribe(b"devices/dev-01/messages/devicebound/#")
try:
    print("WAITING")
    c.wait_msg()          # blocks: Ctrl-C (SIGINT) lands inside the client
except KeyboardInterrupt:
    print("KI", w._depth, w.up)
a.report("config_refused", (("error", "after Ctrl-C"),), 1)
c.ping()
c.wait_msg()    # its PINGRESP: nothing unread when the socket closes (no RST)
print("SENT", w.sec.messages, w.pending())
c.disconnect()
"""


def test_ctrl_c_inside_a_client_call_leaves_no_nesting(mqtt_lib, tmp_path):
    def send(hub, dev):
        time.sleep(0.3)
        dev.proc.send_signal(signal.SIGINT)
    lines, seen = _with_hub(mqtt_lib, tmp_path, SIGINT, send, ready="WAITING")
    assert [l for l in lines if not l.startswith("ALERT ")] == ["WAITING", "KI 0 True", "SENT 1 0"]
    assert [e["Payload"][0]["details"] for m in security_messages(seen) for e in m["Events"]] == [
        {"error": "after Ctrl-C"}]


CALLBACKS = r"""
port = int(sys.argv[1])
a.configure({"deviceId": "dev-01", "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 100)]})
class Client(MQTTClient):
    # stand-in for a compatible client whose wait_msg takes an argument
    # (umqtt.simple's takes none): the watcher must pass it on
    def wait_msg(self, timeout=None):
        print("wait_msg", timeout)
        return MQTTClient.wait_msg(self)
c = Client("dev-01", "127.0.0.1", port, keepalive=30)
c.set_callback(lambda t, m: print("OLD CALLBACK"))
w = a.watch(c)
got = []
c.cb = lambda t, m: got.append(m)       # past set_callback: the watcher takes it back
c.connect()
c.subscribe(b"devices/dev-01/messages/devicebound/#")
print("READY")
while not got:
    c.wait_msg(5)
print("GOT", got, w.counts[1], c.cb is w._cb)
c.disconnect()
"""


def test_callback_assigned_directly_and_wait_msg_arguments(mqtt_lib, tmp_path):
    lines, _ = _with_hub(mqtt_lib, tmp_path, CALLBACKS, lambda hub, dev: hub.c2d(b"x"))
    assert lines == ["wait_msg None", "READY", "wait_msg 5", "GOT [b'x'] 1 True"]


PLUS_HASH = r"""
port = int(sys.argv[1])
from microagent.agent import Agent
for dev in ("dev+1", "dev#1"):
    a = Agent(clk, print)
    a.configure({"deviceId": dev, "timeWindowRules": [rule("MqttC2DMessagesNotInAllowedRange", 100),
                                                       rule("MqttD2CMessagesNotInAllowedRange", 100)]})
    c = MQTTClient(dev, "127.0.0.1", port, keepalive=30)
    got = []
    c.set_callback(lambda t, m: got.append(t))
    w = a.watch(c)
    c.connect()
    c.subscribe("devices/%s/messages/devicebound/#" % dev)   # as boards' hubapp does
    while not got:
        c.wait_msg()
    c.publish("devices/%s/messages/events/" % dev, b"{}")
    print(dev, w.counts, w.classify(got[0]))
    c.disconnect()
"""


def test_device_ids_with_plus_and_hash_are_literal(mqtt_lib, tmp_path):
    # IoT Hub allows + and # in device ids and treats its topics literally;
    # mosquitto refuses such a filter, so a tiny server plays the hub's broker
    fake = FakeBroker([(publish_packet("devices/dev+1/messages/devicebound/%24.mid=1", b"x"), True),
                       (publish_packet("devices/dev#1/messages/devicebound", b"y"), True)], subscribes=1)
    try:
        lines = _finish(device_code(mqtt_lib, PLUS_HASH, [fake.port], tmp_path))
        deadline = time.time() + 5
        while len(fake.published) < 2 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        fake.close()
    assert lines == ["dev+1 [0, 1, 1, 0, 0, 0, 0] 1", "dev#1 [0, 1, 1, 0, 0, 0, 0] 1"]
    assert fake.published == ["devices/dev+1/messages/events/", "devices/dev#1/messages/events/"]
