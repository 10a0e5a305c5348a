# IoT Hub MQTT topics (learn.microsoft.com "Communicate with an IoT hub
# using the MQTT protocol"): which device-side event a topic stands for.
from .platform import is_decimal

C2D = 1        # devices/{id}/messages/devicebound/{property bag}
METHOD = 2     # $iothub/methods/POST/{name}/?$rid={rid}
TWIN = 3       # $iothub/twin/PATCH/properties/desired/?$version={n}
TWIN_RES = 4   # $iothub/twin/res/{status}/?$rid={rid}
D2C = 5        # devices/{id}/messages/events/{property bag}
OTHER = 0      # a topic of no counted kind (twin reported, method response...)
FOREIGN = -1   # a device topic for another device id
MALFORMED = -2  # an IoT Hub topic that breaks its own format

_METHODS = "$iothub/methods/POST/"
_DESIRED = "$iothub/twin/PATCH/properties/desired/"
_TWINRES = "$iothub/twin/res/"


def _device_topic(topic, device, leaf):
    # devices/{id}/messages/{leaf} or devices/{id}/messages/{leaf}/...
    if not topic.startswith("devices/"):
        return OTHER
    s = topic.find("/", 8)
    if s < 0:
        return OTHER
    rest = topic[s:]
    if not (rest == "/messages/" + leaf or rest.startswith("/messages/" + leaf + "/")):
        return OTHER
    if s == 8:
        return MALFORMED
    if topic[8:s] != device:
        return FOREIGN
    return 1


def incoming(topic, device):
    """Kind of an incoming PUBLISH topic for device id `device`: C2D,
    METHOD, TWIN, TWIN_RES, OTHER, FOREIGN or MALFORMED. A method's `$rid`
    is opaque text and is not interpreted."""
    if not isinstance(topic, str):
        return MALFORMED
    if topic.startswith(_METHODS):
        q = topic.find("/?$rid=", len(_METHODS))
        if q <= len(_METHODS) or topic.find("/", len(_METHODS)) != q:
            return MALFORMED
        return METHOD
    if topic.startswith(_DESIRED):
        v = topic[len(_DESIRED):]
        if not v.startswith("?$version=") or not is_decimal(v[10:]):
            return MALFORMED
        return TWIN
    if topic.startswith(_TWINRES):
        return TWIN_RES
    k = _device_topic(topic, device, "devicebound")
    return C2D if k == 1 else k


def outgoing(topic, device):
    """Kind of an outgoing PUBLISH topic: D2C for this device's
    devices/{id}/messages/events/..., else OTHER, FOREIGN or MALFORMED."""
    if not isinstance(topic, str):
        return MALFORMED
    k = _device_topic(topic, device, "events")
    return D2C if k == 1 else k


def method_name(topic):
    """The method name of a METHOD topic (text between POST/ and /?$rid=)."""
    return topic[len(_METHODS):topic.find("/?$rid=", len(_METHODS))]


def rid(topic):
    """The request id of a `?$rid=` topic as text, or None."""
    i = topic.find("$rid=")
    if i < 0:
        return None
    j = topic.find("&", i)
    return topic[i + 5:] if j < 0 else topic[i + 5:j]
