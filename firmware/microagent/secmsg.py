# Security messages: the agent's findings as IoT Hub D2C messages marked
# as security messages, in the Defender for IoT security-message shape
# (learn.microsoft.com "Send security messages SDK"): AgentVersion,
# AgentId, MessageSchemaVersion, Events[]. The watcher (mqttwatch) sends
# them through the application's own MQTT session.
import binascii
import hashlib
import json

from . import VERSION, alerts, platform

# The property bag the Azure IoT SDKs and the Azure RTOS security module put
# on a security message: content type and encoding, and the security
# interface id $.ifid=urn:azureiot:Security:SecurityAgent:1, URL-encoded.
PROPERTIES = "%24.ct=application%2Fjson&%24.ce=utf-8&%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
SCHEMA = "1.0"
# RFC 4122 name-space id for URLs: the AgentId is a name-based (SHA-1,
# version 5) UUID of "urn:microagent:<device id>", the same on every boot.
_NS_URL = b"\x6b\xa7\xb8\x11\x9d\xad\x11\xd1\x80\xb4\x00\xc0\x4f\xd4\x30\xc8"


def _uuid_text(b):
    h = binascii.hexlify(b).decode()
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def agent_id(device):
    """The AgentId of a device: RFC 4122 version-5 UUID (SHA-1, URL name
    space) of "urn:microagent:" + device, as lower-case text. Equals
    CPython's str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:microagent:" + device))."""
    h = hashlib.sha1(_NS_URL)
    h.update(("urn:microagent:" + device).encode())
    b = bytearray(h.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return _uuid_text(b)


def _random16():
    try:
        from os import urandom
        return bytearray(urandom(16))
    except ImportError:  # a port without os.urandom
        import random
        return bytearray(random.getrandbits(8) for _ in range(16))


def event_id():
    """A random RFC 4122 version-4 UUID as text (each event's Id)."""
    b = _random16()
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return _uuid_text(b)


def timestamp(utc):
    """Defender's event time form 'YYYY-MM-DD HH:MM:SSZ' for UTC seconds."""
    t = platform.iso8601(utc)
    return t[:10] + " " + t[11:]


def event(ftype, utc, count, details, device):
    """One Events[] entry (JSON text) for a finding: EventType "Security",
    Category "Triggered", Name = the finding type, Payload = [the finding
    exactly as its console line's JSON object]. TimestampLocal equals
    TimestampUTC (a device keeps no time zone)."""
    line = alerts.format_line(ftype, device, utc, count, details)
    ts = timestamp(utc)
    return ('{"EventType":"Security","Category":"Triggered","Name":%s,"IsEmpty":false,'
            '"PayloadSchemaVersion":"1.0","Id":"%s","TimestampLocal":"%s","TimestampUTC":"%s","Payload":[%s]}'
            % (json.dumps(ftype), event_id(), ts, ts, line[line.find(" ") + 1:]))


def dropped_event(n, utc):
    """The Diagnostic event that tells the hub `n` findings were dropped
    while the queue was full."""
    ts = timestamp(utc)
    return ('{"EventType":"Diagnostic","Category":"Triggered","Name":"SecurityMessagesDropped","IsEmpty":false,'
            '"PayloadSchemaVersion":"1.0","Id":"%s","TimestampLocal":"%s","TimestampUTC":"%s",'
            '"Payload":[{"Message":"%d findings dropped: the security-message queue was full","Severity":"Warning","Count":%d}]}'
            % (event_id(), ts, ts, n, n))


def message(device, events):
    """The security message body (UTF-8 bytes) around a list of event
    texts (str or bytes). Joined once: on a board's fragmented heap one
    message-sized block is found far more often than the three a text
    join, a format and an encode would hold at once."""
    parts = [('{"AgentVersion":"%s","AgentId":"%s","MessageSchemaVersion":"%s","Events":['
              % (VERSION, agent_id(device), SCHEMA)).encode()]
    for i in range(len(events)):
        if i:
            parts.append(b",")
        e = events[i]
        parts.append(e.encode() if isinstance(e, str) else e)
    parts.append(b"]}")
    return b"".join(parts)


def topic(device):
    """The D2C topic a security message is published on."""
    return "devices/%s/messages/events/%s" % (device, PROPERTIES)


class SecurityMessages:
    """A sink (append it to agent.sinks) that queues findings for the hub.

    size: findings held at most; when full the oldest is dropped and
    counted (`dropped`, and a Diagnostic event in the next message).
    batch: findings per message at most; max_bytes: a message stops
    growing past this many bytes of events (one finding always fits).
    The watcher calls next_message() when the session is up and done()
    after the publish went out; nothing is lost on a failed publish.
    """

    def __init__(self, agent, size=16, batch=4, max_bytes=1536):
        self.agent = agent
        self._q = [None] * size
        self._head = 0
        self._n = 0
        self.batch = batch
        self.max_bytes = max_bytes
        self.dropped = 0      # findings dropped since start
        self.sent = 0         # findings delivered since start
        self.messages = 0     # security messages delivered since start
        self._unsent_drops = 0
        self._in_flight = (0, 0)  # (findings, drops) in the message handed out

    def __call__(self, ftype, utc, count, details):
        q = self._q
        if self._n == len(q):
            q[self._head] = None
            self._head = (self._head + 1) % len(q)
            self._n -= 1
            self.dropped += 1
            self._unsent_drops += 1
        q[(self._head + self._n) % len(q)] = (ftype, utc, count, details, self.agent.device)
        self._n += 1

    def __len__(self):
        return self._n

    def pending(self):
        """Findings waiting to be sent."""
        return self._n

    def next_message(self):
        """(topic, payload bytes) of the next security message, or None
        when nothing waits. Call done() once it was published."""
        if not self._n and not self._unsent_drops:
            return None
        q = self._q
        events = []
        size = 0
        k = 0
        device = self.agent.device
        while k < self._n and k < self.batch:
            item = q[(self._head + k) % len(q)]
            if k and item[4] != device:
                break  # one device id per message
            device = item[4]
            e = event(item[0], item[1], item[2], item[3], device).encode()
            if k and size + len(e) > self.max_bytes:
                break
            events.append(e)
            size += len(e)
            k += 1
        drops = self._unsent_drops
        if drops:
            events.append(dropped_event(drops, self.agent.clock.time()))
        self._in_flight = (k, drops)
        return topic(device), message(device, events)

    def done(self):
        """The message from next_message() went out: forget its findings."""
        k, drops = self._in_flight
        self._in_flight = (0, 0)
        q = self._q
        for i in range(k):
            q[(self._head + i) % len(q)] = None
        self._head = (self._head + k) % len(q)
        self._n -= k
        self._unsent_drops -= drops
        self.sent += k
        self.messages += 1
