from microagent import certcheck, platform, x509
from microagent.agent import Agent
from mphelp import Lines, ManualClock, raises, scratch
from mphelp import fixture

LEAF_SHA1 = "F9DC6CC6A6EDBED00B1B551C5CD4864C04F7F7D3"
LEAF_SHA256 = "12906F7F6D9B7E9378EAC75E9D6FB5D4D7DF8C8ECFC2C54B02969E1D032F2D13"
FOREVER_SHA1 = "035A99EC3D723B0B19B4C5188F32C84EA89CC2FD"
# leaf.pem (dev-01, RSA 2048) is valid 2025-01-01T00:00:00Z .. 2027-01-01T00:00:00Z


def _utc(text):
    return platform.parse_iso8601(text)


def _agent(when, certs, **more):
    clk = ManualClock(_utc(when))
    out = Lines()
    a = Agent(clk, out)
    doc = {"deviceId": "dev-01", "certificates": certs}
    for k in more:
        doc[k] = more[k]
    a.configure(doc)
    return a, clk, out


def _tmp(tag):
    import sys
    return scratch("certcheck-%s" % tag)


def _write(path, name):
    with open(fixture(name), "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data)


def _rm(path):
    import os
    try:
        os.remove(path)
    except OSError:
        pass


def test_valid_certificate_with_matching_thumbprint_is_quiet():
    a, clk, out = _agent("2026-06-01T00:00:00Z", [{"path": fixture("leaf.pem"), "expectedThumbprint": LEAF_SHA1},
                                                  {"path": fixture("leaf.der"), "expectedThumbprint": LEAF_SHA256.lower()}])
    assert out.brief() == []
    assert a.certs is not None


def test_expiring_within_the_configured_days():
    # 2026-11-30: 32 days left
    a, clk, out = _agent("2026-11-30T00:00:00Z", [{"path": fixture("leaf.pem")}])
    assert out.brief() == []
    a, clk, out = _agent("2026-11-30T00:00:00Z", [{"path": fixture("leaf.pem")}], certExpiryWarningDays=40)
    assert out.brief() == [("cert_expiring", 1, {"path": fixture("leaf.pem"), "subject": "dev-01",
                                                 "not_after": "2027-01-01T00:00:00Z"})]
    assert out.alerts()[0]["kind"] == "recommendation"
    a, clk, out = _agent("2026-12-15T00:00:00Z", [{"path": fixture("leaf.pem")}])
    assert out.brief() == [("cert_expiring", 1, {"path": fixture("leaf.pem"), "subject": "dev-01",
                                                 "not_after": "2027-01-01T00:00:00Z"})]
    a, clk, out = _agent("2026-12-15T00:00:00Z", [{"path": fixture("leaf.pem")}], certExpiryWarningDays=0)
    assert out.brief() == []


def test_expired_after_not_after_inclusive():
    a, clk, out = _agent("2027-01-01T00:00:00Z", [{"path": fixture("leaf.pem")}])
    assert [b[0] for b in out.brief()] == ["cert_expiring"]  # still valid in its last second
    a, clk, out = _agent("2027-01-01T00:00:01Z", [{"path": fixture("leaf.pem")}])
    assert out.brief() == [("cert_expired", 1, {"path": fixture("leaf.pem"), "subject": "dev-01",
                                               "not_after": "2027-01-01T00:00:00Z"})]
    al = out.alerts()[0]
    assert (al["kind"], al["severity"], al["time"]) == ("alert", "medium", "2027-01-01T00:00:01Z")


def test_not_yet_valid():
    a, clk, out = _agent("2024-06-01T00:00:00Z", [{"path": fixture("leaf.der")}])
    assert out.brief() == [("cert_not_yet_valid", 1, {"path": fixture("leaf.der"), "subject": "dev-01",
                                                     "not_before": "2025-01-01T00:00:00Z"})]
    a, clk, out = _agent("2025-01-01T00:00:00Z", [{"path": fixture("leaf.der")}])
    assert out.brief() == []


def test_no_expiry_certificate_never_expires():
    a, clk, out = _agent("2026-06-01T00:00:00Z", [{"path": fixture("forever.pem")}], certExpiryWarningDays=100000)
    assert out.brief() == []


def test_thumbprint_mismatch_says_which_algorithm():
    cfg = [{"path": fixture("leaf.pem"), "expectedThumbprint": "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33"},
           {"path": fixture("leaf.der"), "expectedThumbprint": "ab" * 32}]
    a, clk, out = _agent("2026-06-01T00:00:00Z", cfg)
    assert out.brief() == [
        ("cert_thumbprint_mismatch", 1, {"path": fixture("leaf.pem"), "subject": "dev-01",
                                         "expected": "00112233445566778899AABBCCDDEEFF00112233",
                                         "actual": LEAF_SHA1, "rule": "sha1"}),
        ("cert_thumbprint_mismatch", 1, {"path": fixture("leaf.der"), "subject": "dev-01",
                                         "expected": "AB" * 32, "actual": LEAF_SHA256, "rule": "sha256"})]


def test_clock_not_set_no_expiry_verdicts_until_it_is_set():
    cfg = [{"path": fixture("leaf.pem"), "expectedThumbprint": FOREVER_SHA1}]
    a, clk, out = _agent("2021-01-01T00:00:00Z", cfg)
    assert out.brief() == [
        ("clock_not_set", 1, {"value": "2021-01-01T00:00:00Z", "min": "2024-01-01T00:00:00Z"}),
        ("cert_thumbprint_mismatch", 1, {"path": fixture("leaf.pem"), "subject": "dev-01",
                                         "expected": FOREVER_SHA1, "actual": LEAF_SHA1, "rule": "sha1"})]
    clk.utc0 = _utc("2027-02-01T00:00:00Z")  # NTP arrived
    a.poll()
    assert out.brief()[2:] == [
        ("cert_expired", 1, {"path": fixture("leaf.pem"), "subject": "dev-01", "not_after": "2027-01-01T00:00:00Z"})]


def test_chain_file_pins_the_first_and_dates_the_first_to_expire():
    # chain.pem: dev-01 (to 2027) then the CA (to 2049-12-31T23:59:59Z)
    a, clk, out = _agent("2027-02-01T00:00:00Z", [{"path": fixture("chain.pem"), "expectedThumbprint": LEAF_SHA1}])
    assert out.brief() == [("cert_expired", 1, {"path": fixture("chain.pem"), "subject": "dev-01",
                                               "not_after": "2027-01-01T00:00:00Z"})]
    a, clk, out = _agent("2024-06-01T00:00:00Z", [{"path": fixture("chain.pem")}])
    assert out.brief() == [("cert_not_yet_valid", 1, {"path": fixture("chain.pem"), "subject": "dev-01",
                                                     "not_before": "2025-01-01T00:00:00Z"})]


def test_unreadable_and_non_certificate_files_are_agent_errors():
    cfg = [{"path": "/nonexistent/device.pem"}, {"path": fixture("../mphelp.py")}]
    a, clk, out = _agent("2026-06-01T00:00:00Z", cfg)
    assert out.brief() == [
        ("agent_error", 1, {"operation": "certificate", "path": "/nonexistent/device.pem", "error": "cannot read (ENOENT)"}),
        ("agent_error", 1, {"operation": "certificate", "path": fixture("../mphelp.py"),
                            "error": "neither DER nor a PEM CERTIFICATE block"})]
    assert a.stats["faults"] == 0  # reported as findings, not agent faults


def test_repeats_at_window_ends_fold():
    rule = {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 0,
            "maxThreshold": 100, "timeWindowSize": "PT1M"}
    a, clk, out = _agent("2027-02-01T00:00:00Z", [{"path": fixture("leaf.der")}],
                         timeWindowRules=[rule], foldWindowSize="PT5M")
    for i in range(5):
        clk.advance(60)
        a.poll()
    d = {"path": fixture("leaf.der"), "subject": "dev-01", "not_after": "2027-01-01T00:00:00Z"}
    # 1 at start; the checks at 60..240 s fold into one line when the fold
    # window ends at 300 s; the check at 300 s starts a new one
    assert out.brief() == [("cert_expired", 1, d), ("cert_expired", 4, d), ("cert_expired", 1, d)]


def test_changed_file_is_checked_again_within_seconds():
    path = _tmp("change.pem")
    _write(path, "leaf.pem")
    try:
        a, clk, out = _agent("2026-06-01T00:00:00Z", [{"path": path, "expectedThumbprint": LEAF_SHA1}])
        a.poll()
        assert out.brief() == []
        _write(path, "forever.pem")
        clk.advance(1)
        a.poll()
        assert out.brief() == []  # not looked at yet
        clk.advance(certcheck.STAT_EVERY_S - 1)
        a.poll()
        assert out.brief() == [("cert_thumbprint_mismatch", 1, {"path": path, "subject": "forever", "expected": LEAF_SHA1,
                                                                "actual": FOREVER_SHA1, "rule": "sha1"})]
        _rm(path)
        clk.advance(certcheck.STAT_EVERY_S)
        a.poll()
        assert out.brief()[1:] == [("agent_error", 1, {"operation": "certificate", "path": path, "error": "cannot read (ENOENT)"})]
        clk.advance(certcheck.STAT_EVERY_S)
        a.poll()  # still missing: nothing new
        assert len(out.brief()) == 2
        _write(path, "leaf.pem")
        clk.advance(certcheck.STAT_EVERY_S)
        a.poll()
        assert len(out.brief()) == 2  # back to the expected certificate
    finally:
        _rm(path)


def test_no_certificates_no_certcheck():
    clk = ManualClock(_utc("2026-06-01T00:00:00Z"))
    a = Agent(clk, Lines())
    a.configure({"deviceId": "dev-01"})
    assert a.certs is None and a.watchers == [] and a.checks == []
    a.configure({"deviceId": "dev-01", "certificates": [{"path": fixture("leaf.pem")}]})
    cc = a.certs
    assert len(a.checks) == 1 and len(a.watchers) == 1
    a.configure({"deviceId": "dev-01"})
    a.configure({"deviceId": "dev-01", "certificates": [{"path": fixture("leaf.pem")}]})
    assert a.certs is cc and len(a.checks) == 1


def _der(name):
    with open(fixture(name), "rb") as f:
        return f.read()


def test_peer_certificate_checked_and_pinned():
    clk = ManualClock(_utc("2027-02-01T00:00:00Z"))
    out = Lines()
    a = Agent(clk, out)
    a.configure({"deviceId": "dev-01"})
    c = a.check_cert(memoryview(_der("leaf.der")), FOREVER_SHA1, "hub")
    assert c.subject_cn == "dev-01" and c.sha1 == LEAF_SHA1
    assert out.brief() == [
        ("cert_thumbprint_mismatch", 1, {"path": "tls:hub", "subject": "dev-01", "expected": FOREVER_SHA1,
                                         "actual": LEAF_SHA1, "rule": "sha1"}),
        ("cert_expired", 1, {"path": "tls:hub", "subject": "dev-01", "not_after": "2027-01-01T00:00:00Z"})]
    assert a.check_cert(_der("ca.der"), None, "hub", 1).subject_cn == "Contoso Test CA"
    assert len(out.brief()) == 2
    assert a.check_cert(b"\x30\x03\x02\x01", None, "hub") is None
    assert a.check_cert(_der("ca.der"), "12345", "hub") is None  # a bad thumbprint: never raises
    assert out.brief()[2:] == [
        ("agent_error", 1, {"operation": "check_cert", "path": "tls:hub",
                            "error": "length 3 at offset 1 runs past the end (2 bytes left)"}),
        ("agent_error", 1, {"operation": "check_cert",
                            "error": "ConfigError: expected: must be 40 hex digits (SHA-1) or 64 (SHA-256), got 5"})]


def test_peerwatch_follows_the_verify_callback_order():
    # mbedtls calls verify_callback(cert memoryview, depth) top first, the
    # server's own certificate (depth 0) last; here the calls are made
    # directly (tests/test_certcheck_tls.py does it through a real TLS
    # handshake on the unix port)
    clk = ManualClock(_utc("2026-06-01T00:00:00Z"))
    out = Lines()
    a = Agent(clk, out)
    a.configure({"deviceId": "dev-01"})
    w = certcheck.PeerWatch(a, LEAF_SHA1.lower(), "hub")
    assert w(memoryview(_der("ca.der")), 1) == 0
    assert w(memoryview(_der("leaf.der")), 0) == 0
    assert [c.subject_cn for c in w.chain] == ["Contoso Test CA", "dev-01"]
    assert w.peer.sha1 == LEAF_SHA1 and w.pinned is True
    assert out.brief() == []
    # next handshake: another server certificate, enforced
    w.enforce = True
    assert w(memoryview(_der("p384.der")), 0) == -1
    assert [c.subject_cn for c in w.chain] == ["Z\u00fcrich \u2603"] and w.pinned is False
    assert out.brief()[0][0] == "cert_thumbprint_mismatch"
    assert w(memoryview(b"\x30\x00"), 0) == -1  # unreadable while a pin is expected
    assert w.peer is None and w.pinned is False
    w2 = certcheck.PeerWatch(a)
    assert w2(memoryview(b"\x30\x00"), 0) == 0 and w2.pinned is None
    raises(ValueError, certcheck.PeerWatch, a, "xyz")


def test_peer_time_tuple_is_board_safe():
    # the verdicts compare (Y, M, D, h, m, s) tuples, also for a clock
    # value past 2038 and a certificate without expiry
    c = x509.read_file(fixture("forever.pem"))
    assert x509.civil(_utc("2099-12-31T23:59:59Z")) < c.not_after


def test_same_size_same_mtime_change_is_seen_within_reread_s():
    # a renewed certificate of the same size written in the same second
    # (an unset RTC stamps every file alike): stat cannot tell, the
    # periodic re-read at a window end does
    path = _tmp("same.pem")
    with open(fixture("leaf.pem"), "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    sig_line = lines[-3]  # a line of the signature: changing it keeps the DER valid
    flipped = sig_line[:5] + (b"A" if sig_line[5:6] != b"A" else b"B") + sig_line[6:]
    other = data.replace(sig_line, flipped)
    assert len(other) == len(data) and other != data
    rule = {"ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 0,
            "maxThreshold": 100, "timeWindowSize": "PT1M"}
    try:
        with open(path, "wb") as f:
            f.write(data)
        a, clk, out = _agent("2026-06-01T00:00:00Z", [{"path": path, "expectedThumbprint": LEAF_SHA1}],
                             timeWindowRules=[rule])
        with open(path, "wb") as f:
            f.write(other)
        clk.advance(certcheck.REREAD_S)
        a.poll()
        b = out.brief()
        assert len(b) == 1 and b[0][0] == "cert_thumbprint_mismatch"
        assert b[0][2]["expected"] == LEAF_SHA1 and b[0][2]["actual"] != LEAF_SHA1
        assert b[0][2]["actual"] == x509.read_file(path).sha1
    finally:
        _rm(path)


def test_key_files_are_one_agent_error_that_quotes_no_key():
    # a private key where a certificate is configured, in every layout the
    # review fed in (one-line keys used to be quoted whole)
    import keys
    path = _tmp("key.pem")
    try:
        for pem in keys.KEYS:
            for name, data in keys.forms(pem):
                with open(path, "wb") as f:
                    f.write(data)
                a, clk, out = _agent("2026-06-01T00:00:00Z", [{"path": path}])
                b = out.brief()
                if name.startswith("one line") or name == "indented one line":
                    assert b == [("agent_error", 1, {"operation": "certificate", "path": path,
                                                     "error": "PEM line 1: malformed BEGIN line"})], (name, b)
                else:
                    assert len(b) == 1 and b[0][0] == "agent_error", (name, b)
                for line in out.lines:
                    assert keys.leak(pem, line) is None, (name, line)
    finally:
        _rm(path)


def test_clock_lost_again_is_reported_at_once():
    a, clk, out = _agent("2021-01-01T00:00:00Z", [{"path": fixture("leaf.pem")}])
    assert out.brief() == [("clock_not_set", 1, {"value": "2021-01-01T00:00:00Z", "min": "2024-01-01T00:00:00Z"})]
    clk.utc0 = _utc("2026-06-01T00:00:00Z")  # NTP
    clk.advance(5)
    a.poll()
    clk.utc0 = _utc("2000-01-01T00:00:00Z") - 10  # lost again (a reset RTC), inside the fold window
    clk.advance(5)
    a.check_cert(_der("leaf.der"))
    assert out.brief()[1:] == [("clock_not_set", 1, {"value": "2000-01-01T00:00:00Z", "min": "2024-01-01T00:00:00Z"})]
    clk.advance(120)
    a.poll()
    assert len(out.brief()) == 2  # nothing folded behind it
