"""The watcher's MQTT wildcard matching, IoT Hub topic kinds, JSON member
lookup and merge patch checked against references: paho-mqtt's
topic_matches_sub (MQTT 3.1.1 s4.7), the text classifier iothub.incoming,
CPython's json and the json-merge-patch package (RFC 7386), over
generated input."""
import copy
import json

import json_merge_patch
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


KEYS = st.sampled_from(["a", "b", "microagent", "desired", "$version", 'x"y', "\u00e9", "{", "]"])
SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(alphabet='ab"\\{}[],: \u00e9\n', max_size=6)
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(KEYS, kids, max_size=3),
                      max_leaves=12)
SEPARATORS = st.sampled_from([(",", ":"), (", ", ": "), (" ,\t", " :\n")])


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=5), KEYS, SEPARATORS, st.booleans())
def test_json_member_agrees_with_json(doc, key, seps, ascii_only):
    # the name is matched as it is written in the text (IoT Hub's property
    # names need no escapes)
    text = json.dumps(doc, separators=seps, ensure_ascii=ascii_only).encode()
    span = mqttwatch.json_member(text, json.dumps(key, ensure_ascii=ascii_only)[1:-1].encode())
    if key not in doc:
        assert span is None
    else:
        assert json.loads(text[span[0]:span[1]]) == doc[key]


@settings(max_examples=600, deadline=None)
@given(VALUES, VALUES)
def test_merge_patch_agrees_with_json_merge_patch(target, patch):
    want = json_merge_patch.merge(copy.deepcopy(target), copy.deepcopy(patch))
    assert mqttwatch.merge_patch(target, patch) == want
