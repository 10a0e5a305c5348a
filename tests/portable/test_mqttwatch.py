from microagent import iothub, mqttwatch
from mphelp import raises
from microagent.mqttwatch import incoming, topic_matches, valid_filter, valid_topic

# MQTT 3.1.1 s4.7.1.2, s4.7.1.3 and s4.7.2 examples, plus edges
MATCHES = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+", "finance", True),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player2", False),
    ("a/b", "a/b", True),
    ("a/b", "a/b/", False),
    ("a/b", "a", False),
    ("a/b/#", "a/bc", False),
    ("a/+/c", "a/b", False),
    ("#", "$SYS/broker/uptime", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("#", "$iothub/methods/POST/reboot/?$rid=1", False),
    ("+/methods/POST/#", "$iothub/methods/POST/reboot/?$rid=1", False),
    ("$iothub/methods/POST/#", "$iothub/methods/POST/reboot/?$rid=1", True),
    ("devices/dev-01/messages/devicebound/#", "devices/dev-01/messages/devicebound/", True),
    ("devices/dev-01/messages/devicebound/#", "devices/dev-01/messages/devicebound", True),
    ("devices/dev-01/messages/devicebound/#", "devices/dev-011/messages/devicebound/", False),
    ("devices/+/messages/devicebound/#", "devices/dev-02/messages/devicebound/%24.mid=2", True),
]


def test_topic_matches_mqtt_examples():
    for f, t, want in MATCHES:
        assert topic_matches(f, t) is want, (f, t)
        assert topic_matches(f.encode(), t.encode()) is want, (f, t)


def test_valid_filter_and_topic():
    for f in ("#", "+", "a/#", "a/+/b", "+/+", "/", "$iothub/methods/POST/#", "a//b"):
        assert valid_filter(f), f
    for f in ("", "a#", "a/#/b", "a+", "a/+b", "#/a", "a/b#", "a\0b"):
        assert not valid_filter(f), f
    for t in (b"a", b"/", b"$iothub/twin/res/200/?$rid=1"):
        assert valid_topic(t), t
    for t in (b"", b"a/+", b"a/#", b"a\0"):
        assert not valid_topic(t), t


DEV = "dev-01"
TOPICS = [
    ("devices/dev-01/messages/devicebound/%24.mid=1&%24.to=%2Fdevices%2Fdev-01", iothub.C2D),
    ("devices/dev-01/messages/devicebound/", iothub.C2D),
    ("devices/dev-01/messages/devicebound/?%24.mid=7", iothub.C2D),
    ("devices/dev-01/messages/devicebound", iothub.C2D),
    ("devices/dev-02/messages/devicebound/", iothub.FOREIGN),
    ("devices/dev-011/messages/devicebound/", iothub.FOREIGN),
    ("devices/dev-0/messages/devicebound/", iothub.FOREIGN),
    ("devices//messages/devicebound/", iothub.MALFORMED),
    ("devices/dev-01/messages/deviceboundX", iothub.OTHER),
    ("devices/dev-01/messages/events/", iothub.OTHER),
    ("devices/dev-01", iothub.OTHER),
    ("$iothub/methods/POST/reboot/?$rid=1", iothub.METHOD),
    ("$iothub/methods/POST/reboot/?$rid=0x1f&a=b", iothub.METHOD),
    ("$iothub/methods/POST/reboot/?$rid=", iothub.METHOD),
    ("$iothub/methods/POST/reboot", iothub.MALFORMED),
    ("$iothub/methods/POST//?$rid=1", iothub.MALFORMED),
    ("$iothub/methods/POST/a/b/?$rid=1", iothub.MALFORMED),
    ("$iothub/methods/POST/reboot?$rid=1", iothub.MALFORMED),
    ("$iothub/twin/PATCH/properties/desired/?$version=12", iothub.TWIN),
    ("$iothub/twin/PATCH/properties/desired/?$version=", iothub.MALFORMED),
    ("$iothub/twin/PATCH/properties/desired/?$version=1a", iothub.MALFORMED),
    ("$iothub/twin/PATCH/properties/desired/", iothub.MALFORMED),
    ("$iothub/twin/res/200/?$rid=ma1", iothub.TWIN_RES),
    ("$iothub/twin/res/204/?$rid=ma1&$version=4", iothub.TWIN_RES),
    ("$iothub/other", iothub.OTHER),
    ("sport/tennis", iothub.OTHER),
]


def test_incoming_bytes_agrees_with_iothub_text():
    c2d = b"devices/dev-01/messages/devicebound"
    for t, want in TOPICS:
        assert iothub.incoming(t, DEV) == want, t
        assert incoming(t.encode(), DEV) == want, t
        assert incoming(t.encode(), DEV, c2d) == want, t


def test_incoming_invalid_utf8():
    assert incoming(b"$iothub/methods/POST/re\xffboot/?$rid=1", DEV) == iothub.MALFORMED
    assert incoming(b"devices/d\xff/messages/devicebound/", DEV) == iothub.MALFORMED
    assert incoming(b"$iothub/twin/res/200/?$rid=\xfe", DEV) == iothub.MALFORMED
    # this device's C2D: counted without looking into the property bag
    assert incoming(b"devices/dev-01/messages/devicebound/%24.mid=\xff", DEV) == iothub.C2D


def test_text_for_findings():
    assert mqttwatch._text(b"a/b") == "a/b"
    assert mqttwatch._text(b"a\xff/b") == "a\\xff/b"
    assert len(mqttwatch._text(b"x" * 300)) == 96


# RFC 7386 Appendix A: every example, (target, patch, result) as JSON text
MERGE = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', '{}'),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', 'null', 'null'),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ('[1,2]', '{"a":"b","c":null}', '{"a":"b"}'),
    ('{}', '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


def test_merge_patch_rfc7386_examples():
    import json
    for target, patch, result in MERGE:
        assert mqttwatch.merge_patch(json.loads(target), json.loads(patch)) == json.loads(result), (target, patch)


def test_merge_patch_changes_neither_argument():
    target = {"a": {"b": 1, "c": [1]}, "d": 2}
    patch = {"a": {"b": None, "e": 3}, "d": None}
    out = mqttwatch.merge_patch(target, patch)
    assert out == {"a": {"c": [1], "e": 3}}
    assert target == {"a": {"b": 1, "c": [1]}, "d": 2}
    assert patch == {"a": {"b": None, "e": 3}, "d": None}
    assert out["a"]["c"] is target["a"]["c"]     # untouched members are shared, not copied


def _value(doc, name, start=0, end=-1):
    span = mqttwatch.json_member(doc, name, start, end)
    return None if span is None else doc[span[0]:span[1]]


def test_json_member_finds_the_value_text():
    doc = b' { "a" : 1 ,"microagent":{"x":"}\\"{","y":[1,{"z":null}]} , "b":"\xc3\xa9", "n": null,"t":true } '
    assert _value(doc, b"a") == b"1"
    assert _value(doc, b"microagent") == b'{"x":"}\\"{","y":[1,{"z":null}]}'
    assert _value(doc, b"b") == b'"\xc3\xa9"'
    assert _value(doc, b"n") == b"null"
    assert _value(doc, b"t") == b"true"
    assert _value(doc, b"x") is None           # only the object's own members
    assert _value(doc, b"micro") is None
    assert _value(b"{}", b"a") is None
    assert _value(b'{"a":1,"a":[2]}', b"a") == b"[2]"    # the last one, as json.loads keeps
    # within bounds: the members of an inner object
    outer = b'{"desired":{"microagent":{"k":1},"$version":12},"reported":{"microagent":5}}'
    i, j = mqttwatch.json_member(outer, b"desired")
    assert _value(outer, b"microagent", i, j) == b'{"k":1}'
    assert _value(outer, b"$version", i, j) == b"12"


def test_json_member_refuses_what_is_not_an_object():
    for bad in (b"[1]", b'"x"', b"", b"  ", b"null"):
        assert str(raises(ValueError, mqttwatch.json_member, bad, b"a")) == "not a JSON object", bad
    for bad in (b'{"microagent": ', b'{"a" 1}', b'{"a":1 "b":2}', b'{"a":1,}', b'{a:1}', b'{"a":"1}',
                b'{"a":[1}', b'{"a":1} x', b'{"a":}'):
        e = raises(ValueError, mqttwatch.json_member, bad, b"a")
        assert str(e) != "not a JSON object", bad
