"""The watcher's MQTT wildcard matching and IoT Hub topic kinds checked
against references: paho-mqtt's topic_matches_sub (MQTT 3.1.1 s4.7) and
the text classifier iothub.incoming, over generated filters and topics."""
from hypothesis import given, settings, strategies as st
from paho.mqtt.client import topic_matches_sub

from microagent import iothub, mqttwatch

LEVEL = st.sampled_from(["a", "b", "", "$x", "sport", "dev-01"])
FLEVEL = st.sampled_from(["a", "b", "", "$x", "sport", "+", "dev-01"])


@st.composite
def filters(draw):
    levels = draw(st.lists(FLEVEL, min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    f = "/".join(levels)
    return f or "a"


topics = st.lists(LEVEL, min_size=1, max_size=6).map("/".join).filter(bool)


@settings(max_examples=800, deadline=None)
@given(filters(), topics)
def test_topic_matches_agrees_with_paho(f, t):
    assert mqttwatch.valid_filter(f)
    assert mqttwatch.topic_matches(f, t) == topic_matches_sub(f, t)
    assert mqttwatch.topic_matches(f.encode(), t.encode()) == topic_matches_sub(f, t)


PARTS = st.sampled_from(["devices/", "dev-01", "dev-02", "/messages/", "devicebound", "events", "/",
                         "$iothub/", "methods/POST/", "twin/PATCH/properties/desired/", "twin/res/200/",
                         "?$rid=", "?$version=", "12", "x", "%24.mid=1", "&", "\xe9"])


@settings(max_examples=800, deadline=None)
@given(st.lists(PARTS, min_size=1, max_size=7).map("".join))
def test_bytes_classifier_agrees_with_iothub(t):
    assert mqttwatch.incoming(t.encode(), "dev-01") == iothub.incoming(t, "dev-01")
