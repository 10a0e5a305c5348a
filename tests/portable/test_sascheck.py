# The agent's SAS token check: findings for expired tokens and bad
# signatures, on CPython and on the unix port under a 64 KB heap.
from microagent.agent import Agent
from mphelp import Lines, ManualClock

BASE = 1796000000  # 2026-11-30T00:53:20Z
KEY = "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU="
RES = "contoso-hub.azure-devices.net/devices/dev-01"
SR = "contoso-hub.azure-devices.net%2Fdevices%2Fdev-01"
SIG_VALID = "OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D"     # se=1900000000, KEY
SIG_EXPIRED = "RfLPh%2FloaIWu3VBcR%2Fl6qOTt3Z6ZAkigoPRltEB%2F2Tw%3D"  # se=1700000000, KEY
VALID = "SharedAccessSignature sr=%s&sig=%s&se=1900000000" % (SR, SIG_VALID)
EXPIRED = "SharedAccessSignature sr=%s&sig=%s&se=1700000000" % (SR, SIG_EXPIRED)
EXPIRED_ISO = "2023-11-14T22:13:20Z"
# a valid signature for se=1900000000, pasted onto another se: forged
FORGED = "SharedAccessSignature sr=%s&sig=%s&se=1999999999" % (SR, SIG_VALID)
FORGED_EXPIRED = "SharedAccessSignature sr=%s&sig=%s&se=1700000001" % (SR, SIG_VALID)


def _agent(key=KEY, utc=BASE):
    clk = ManualClock(utc)
    out = Lines()
    a = Agent(clk, out)
    doc = {"deviceId": "dev-01"}
    if key is not None:
        doc["sas"] = {"deviceKey": key}
    a.configure(doc)
    return a, clk, out


def _no_secrets(out):
    for line in out.lines:
        for secret in (KEY, SIG_VALID, SIG_EXPIRED, "OX147z2F7LNPJgUf2Obcf", "RfLPh"):
            assert secret not in line, line


def test_valid_token_no_finding():
    a, clk, out = _agent()
    a.check_sas(VALID)
    assert out.lines == []
    assert a.stats["faults"] == 0


def test_expired_token():
    a, clk, out = _agent()
    a.check_sas(EXPIRED)
    assert out.brief() == [("sas_token_expired", 1, {"resource": RES, "expiry": EXPIRED_ISO})]
    al = out.alerts()[0]
    assert (al["name"], al["kind"], al["severity"], al["time"]) == (
        "Expired SAS Token", "alert", "low", "2026-11-30T00:53:20Z")
    _no_secrets(out)


def test_expiry_is_checked_without_a_key():
    a, clk, out = _agent(key=None)
    a.check_sas(FORGED)
    a.check_sas(FORGED_EXPIRED)
    assert out.brief() == [("sas_token_expired", 1, {"resource": RES, "expiry": "2023-11-14T22:13:21Z"})]


def test_invalid_signature():
    a, clk, out = _agent()
    a.check_sas(FORGED)
    assert out.brief() == [("sas_token_invalid_signature", 1, {"resource": RES})]
    assert out.alerts()[0]["name"] == "Invalid SAS Token signature"
    _no_secrets(out)


def test_expired_and_invalid_signature():
    a, clk, out = _agent()
    a.check_sas(FORGED_EXPIRED)
    assert out.brief() == [
        ("sas_token_expired", 1, {"resource": RES, "expiry": "2023-11-14T22:13:21Z"}),
        ("sas_token_invalid_signature", 1, {"resource": RES})]
    _no_secrets(out)


def test_wrong_device_key_makes_valid_token_invalid():
    a, clk, out = _agent(key="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    a.check_sas(VALID)
    assert out.brief() == [("sas_token_invalid_signature", 1, {"resource": RES})]


def test_unparseable_token_is_one_agent_error_without_secrets():
    a, clk, out = _agent()
    a.check_sas(VALID + "&se=1900000000")
    a.check_sas(VALID.replace("%3D", "%3"))
    a.check_sas(VALID + "&OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg=1")
    a.check_sas(None)
    assert out.brief() == [
        ("agent_error", 1, {"operation": "check_sas", "error": "SAS token: repeated field 'se'"}),
        ("agent_error", 1, {"operation": "check_sas", "error": "SAS token: sig: bad percent-escape at character 43"}),
        ("agent_error", 1, {"operation": "check_sas",
                            "error": "SAS token: unknown field (name not shown) (allowed: sr, sig, se, skn)"}),
        ("agent_error", 1, {"operation": "check_sas", "error": "SAS token: not text (NoneType)"})]
    assert a.stats["faults"] == 0  # a bad token is the app's, not an agent fault
    _no_secrets(out)


def test_repeats_fold():
    a, clk, out = _agent()
    for i in range(3):
        a.check_sas(EXPIRED)
    assert len(out.lines) == 1
    clk.advance(60)
    a.poll()
    assert out.brief() == [("sas_token_expired", 1, {"resource": RES, "expiry": EXPIRED_ISO}),
                           ("sas_token_expired", 2, {"resource": RES, "expiry": EXPIRED_ISO})]


def test_clock_not_set_waits_for_the_clock():
    a, clk, out = _agent(utc=1500000000)  # 2017: the RTC was never set
    a.check_sas(EXPIRED)
    a.check_sas(EXPIRED)
    assert out.brief() == [("clock_not_set", 1, {"value": "2017-07-14T02:40:00Z", "min": "2024-01-01T00:00:00Z"})]
    clk.advance(5)
    a.poll()
    assert len(out.lines) == 1          # still unset: still no verdict
    clk.utc0 = BASE                     # NTP sets the clock
    a.poll()
    assert out.brief()[1:] == [("sas_token_expired", 1, {"resource": RES, "expiry": EXPIRED_ISO})]
    clk.advance(120)
    a.poll()                            # the verdict is given once
    assert len(out.lines) == 2
    a.check_sas(VALID)
    assert len(out.lines) == 2


def test_clock_not_set_valid_token_then_set():
    a, clk, out = _agent(utc=1500000000)
    a.check_sas(VALID)
    clk.utc0 = BASE
    a.poll()
    assert out.brief() == [("clock_not_set", 1, {"value": "2017-07-14T02:40:00Z", "min": "2024-01-01T00:00:00Z"})]


def test_signature_is_checked_while_the_clock_is_not_set():
    a, clk, out = _agent(utc=1500000000)
    a.check_sas(FORGED)
    assert out.brief() == [("clock_not_set", 1, {"value": "2017-07-14T02:40:00Z", "min": "2024-01-01T00:00:00Z"}),
                           ("sas_token_invalid_signature", 1, {"resource": RES})]


def _tok(se, dev="dev-01"):
    # a token without a valid signature (no key configured: expiry only)
    return "SharedAccessSignature sr=contoso-hub.azure-devices.net%%2Fdevices%%2F%s&sig=%s&se=%s" % (dev, SIG_VALID, se)


def _res(dev):
    return "contoso-hub.azure-devices.net/devices/" + dev


def test_pending_tokens_each_get_their_verdict():
    # tokens checked while the clock was not set: the last 4 distinct ones
    # get their verdict once it is set (a renewal does not hide that an
    # expired token was used)
    a, clk, out = _agent(key=None, utc=1500000000)
    a.check_sas(EXPIRED)
    a.check_sas(VALID)                   # renewed before the clock was set
    a.check_sas(EXPIRED)                 # the same token again: kept once, now the latest
    clk.utc0 = BASE
    a.poll()
    assert out.brief()[1:] == [("sas_token_expired", 1, {"resource": RES, "expiry": EXPIRED_ISO})]
    a, clk, out = _agent(key=None, utc=1500000000)
    for i in range(6):  # six distinct expired tokens: the first two are dropped
        a.check_sas(_tok(1700000000 + i, "dev-%d" % i))
    clk.utc0 = BASE
    a.poll()
    assert out.brief()[1:] == [
        ("sas_token_expired", 1, {"resource": _res("dev-%d" % i), "expiry": "2023-11-14T22:13:2%dZ" % i}) for i in range(2, 6)]
    clk.advance(120)
    a.poll()                              # given once
    assert len(out.brief()) == 5


def test_se_with_many_leading_zeros():
    # no int() of thousands of digits (CPython refuses past 4300)
    a, clk, out = _agent(key=None)
    a.check_sas(_tok("0" * 5000 + "1700000000"))
    assert out.brief() == [("sas_token_expired", 1, {"resource": RES, "expiry": EXPIRED_ISO})]
    assert a.stats["faults"] == 0


def test_clock_lost_again_is_reported_at_once():
    a, clk, out = _agent(key=None, utc=1500000000)
    a.check_sas(VALID)
    clk.utc0 = BASE
    clk.advance(1)
    a.check_sas(VALID)
    clk.utc0 = 946684800 - 1             # the RTC reset again, inside the fold window
    a.check_sas(VALID)
    assert out.brief() == [("clock_not_set", 1, {"value": "2017-07-14T02:40:00Z", "min": "2024-01-01T00:00:00Z"}),
                           ("clock_not_set", 1, {"value": "2000-01-01T00:00:00Z", "min": "2024-01-01T00:00:00Z"})]


def test_mqtt_connect_password_is_checked():
    a, clk, out = _agent()
    user = "contoso-hub.azure-devices.net/dev-01/?api-version=2021-04-12"
    a.mqtt_connect("dev-01", user, EXPIRED.encode())
    a.mqtt_connect("dev-01", user, FORGED)
    a.mqtt_connect("dev-01", user, VALID)
    a.mqtt_connect("dev-01", user, None)          # X.509 authentication
    a.mqtt_connect("dev-01", user, b"\xff\xfe")   # not text: not a token
    assert out.brief() == [("sas_token_expired", 1, {"resource": RES, "expiry": EXPIRED_ISO}),
                           ("sas_token_invalid_signature", 1, {"resource": RES})]
    _no_secrets(out)


def test_before_configure():
    clk = ManualClock(BASE)
    out = Lines()
    a = Agent(clk, out)
    a.check_sas(FORGED_EXPIRED)          # no key known yet: expiry only
    assert out.brief() == [("sas_token_expired", 1, {"resource": RES, "expiry": "2023-11-14T22:13:21Z"})]
