from microagent import config
from mphelp import raises


def _doc(**kw):
    d = {"deviceId": "dev-01"}
    for k in kw:
        d[k] = kw[k]
    return d


def _err(doc):
    return str(raises(config.ConfigError, config.parse, doc))


def test_minimal_config():
    c = config.parse({"deviceId": "dev-01"})
    assert c.device_id == "dev-01" and c.windows == [] and c.allow is None and c.threat.items() == []
    assert c.console is True and c.fold_s == 60 and c.expiry_days == 30


def test_spec_example_loads():
    doc = {
        "deviceId": "dev-01",
        "timeWindowRules": [
            {"ruleType": "ActiveConnectionsNotInAllowedRange", "isEnabled": True,
             "minThreshold": 0, "maxThreshold": 8, "timeWindowSize": "PT05M"},
            {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True,
             "minThreshold": 0, "maxThreshold": 20, "timeWindowSize": "PT15M"}],
        "allowlistRules": [
            {"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
             "allowlistValues": ["10.0.0.0/8", "20.0.0.0/8", "2001:db8::/32"]}],
        "threatIntel": {"ips": ["198.51.100.23", "203.0.113.0/24"]},
        "certificates": [{"path": "certs/device.pem", "expectedThumbprint": "9f:1c" + "00" * 18},
                         {"path": "certs/root-ca.pem"}],
        "sas": {"deviceKey": "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU="},
        "console": True}
    c = config.parse(doc)
    assert c.windows == [(config.ACTIVE, 0, 8, 300), (config.C2D, 0, 20, 900)]
    assert c.allow.items() == [(bytes([10, 0, 0, 0]), 8), (bytes([20, 0, 0, 0]), 8),
                       (bytes([0x20, 1, 0xd, 0xb8]) + bytes(12), 32)]
    assert c.threat.items() == [(bytes([198, 51, 100, 23]), 32), (bytes([203, 0, 113, 0]), 24)]
    assert c.certificates == [("certs/device.pem", "9F1C" + "00" * 18), ("certs/root-ca.pem", None)]
    assert c.warnings == []


def test_host_bits_warning_names_key():
    c = config.parse(_doc(allowlistRules=[{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                          "allowlistValues": ["10.0.0.0/8", "203.0.113.77/24"]}]))
    assert c.allow.items()[1] == (bytes([203, 0, 113, 0]), 24)
    assert c.warnings == ["allowlistRules[0].allowlistValues[1]: 203.0.113.77/24 has host bits set; read as 203.0.113.0/24"]


def test_errors_name_the_key():
    assert _err({"timeWindowRules": []}) == "deviceId: must be a non-empty string of at most 128 characters"
    assert _err(_doc(timeWindowRules=[{"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True,
                                      "minThreshold": 0, "maxThreshold": 5, "timeWindowSize": "PT5X"}])) == \
        "timeWindowRules[0].timeWindowSize: bad duration unit 'X' (got 'PT5X')"
    assert _err(_doc(timeWindowRules=[{"ruleType": "MqttC2DMessagesNotInAlowedRange"}])) == \
        "timeWindowRules[0].ruleType: unknown ruleType 'MqttC2DMessagesNotInAlowedRange'"
    assert _err(_doc(allowlistRules=[{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": True,
                                     "allowlistValues": ["10.0.0.0/8", "010.1.1.1"]}])) == \
        "allowlistRules[0].allowlistValues[1]: leading zero in IPv4 part (octal is ambiguous) (got '010.1.1.1')"
    assert _err(_doc(threatIntel={"ips": ["0x0a.0.0.1"]})).startswith("threatIntel.ips[0]: ")
    assert _err(_doc(threatIntel={"ips": ["10.1"]})) == \
        "threatIntel.ips[0]: IPv4 address needs four decimal parts (got '10.1')"
    assert _err(_doc(timeWindowRule=[])).startswith("timeWindowRule: unknown key")
    assert _err(_doc(timeWindowRules=[{"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True,
                                      "minThreshold": 6, "maxThreshold": 5, "timeWindowSize": "PT5M"}])) == \
        "timeWindowRules[0].minThreshold: is above maxThreshold (6 > 5)"
    assert _err(_doc(timeWindowRules=[{"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": "yes",
                                      "minThreshold": 0, "maxThreshold": 5, "timeWindowSize": "PT5M"}])) == \
        "timeWindowRules[0].isEnabled: must be true or false"
    assert _err(_doc(timeWindowRules=[{"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True,
                                      "minThreshold": -1, "maxThreshold": 5, "timeWindowSize": "PT5M"}])) == \
        "timeWindowRules[0].minThreshold: must be a whole number >= 0"
    assert _err(_doc(timeWindowRules=[{"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True,
                                      "minThreshold": 0, "maxThreshold": 5, "timeWindowSize": "PT0S"}])) == \
        "timeWindowRules[0].timeWindowSize: must be longer than zero"
    assert _err(_doc(certificates=[{"path": "a.pem", "expectedThumbprint": "ABC"}])) == \
        "certificates[0].expectedThumbprint: must be 40 hex digits (SHA-1) or 64 (SHA-256), got 3"
    assert _err(_doc(sas={"deviceKey": "not base64!"})) == \
        "sas.deviceKey: must be base64 text (length a multiple of 4)"
    assert _err([1, 2]) == "config: must be an object"
    assert _err(_doc(allowlistRules={"ruleType": "x"})) == "allowlistRules: must be a list"


def test_duplicate_rule_refused():
    r = {"ruleType": "TwinUpdatesNotInAllowedRange", "isEnabled": True,
         "minThreshold": 0, "maxThreshold": 5, "timeWindowSize": "PT5M"}
    assert _err(_doc(timeWindowRules=[r, r])) == \
        "timeWindowRules[1].ruleType: TwinUpdatesNotInAllowedRange appears twice"


def test_hub_only_rule_types_accepted_with_warning():
    c = config.parse(_doc(timeWindowRules=[{"ruleType": "QueuePurgesNotInAllowedRange", "isEnabled": True,
                                           "minThreshold": 0, "maxThreshold": 5, "timeWindowSize": "PT5M"}]))
    assert c.windows == []
    assert c.warnings == ["timeWindowRules[0]: QueuePurgesNotInAllowedRange is not observable on the device; not evaluated"]


def test_disabled_rules_validated_but_not_applied():
    c = config.parse(_doc(allowlistRules=[{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": False,
                                          "allowlistValues": ["10.0.0.0/8"]}]))
    assert c.allow is None
    raises(config.ConfigError, config.parse, _doc(allowlistRules=[
        {"ruleType": "ConnectionToIpNotAllowed", "isEnabled": False, "allowlistValues": ["10.0.0.0/88"]}]))


def test_hub_only_rules_are_validated_too():
    base = {"ruleType": "QueuePurgesNotInAllowedRange", "isEnabled": True,
            "minThreshold": 0, "maxThreshold": 5, "timeWindowSize": "PT5M"}
    bad = dict(base)
    bad["isEnabled"] = "yes"
    assert _err(_doc(timeWindowRules=[bad])) == "timeWindowRules[0].isEnabled: must be true or false"
    bad = dict(base)
    bad["minThreshold"] = -1
    assert _err(_doc(timeWindowRules=[bad])) == "timeWindowRules[0].minThreshold: must be a whole number >= 0"
    assert _err(_doc(timeWindowRules=[base, base])) == \
        "timeWindowRules[1].ruleType: QueuePurgesNotInAllowedRange appears twice"
    assert _err(_doc(allowlistRules=[{"ruleType": "ProcessNotAllowed", "isEnabled": True,
                                     "allowlistValues": ["/bin/sh", 5]}])) == \
        "allowlistRules[0].allowlistValues[1]: must be text"
    c = config.parse(_doc(allowlistRules=[{"ruleType": "LocalUserNotAllowed", "isEnabled": True,
                                          "allowlistValues": ["root"]}]))
    assert c.allow is None
    assert c.warnings == ["allowlistRules[0]: LocalUserNotAllowed is not observable on the device; not evaluated"]


def test_window_length_capped():
    r = {"ruleType": "TwinUpdatesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 5,
         "timeWindowSize": "PT" + "9" * 40 + "S"}
    assert _err(_doc(timeWindowRules=[r])) == \
        "timeWindowRules[0].timeWindowSize: must be at most P30D (got '%s')" % r["timeWindowSize"]
    r["timeWindowSize"] = "P30D"
    assert config.parse(_doc(timeWindowRules=[r])).windows == [(config.TWIN, 0, 5, 2592000)]
