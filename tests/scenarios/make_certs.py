"""Writes the corpus scenarios that need certificates or SAS tokens
(tests/scenarios/cert-*.jsonl, sas-*.jsonl, clock-*.jsonl).

    .venv/bin/python tests/scenarios/make_certs.py [OUTDIR]

Certificates are made with `cryptography` from fixed Ed25519 seeds (Ed25519
signatures are deterministic, so the same run writes the same bytes);
SAS tokens with CPython's hmac/base64/urllib the way the Azure IoT SDKs
sign them. The keys are test data, nothing else. tests/test_replay.py
checks that the committed files equal what this script writes.
"""
import base64
import datetime
import hashlib
import hmac
import json
import sys
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

UTC = datetime.timezone.utc
START = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
DEV = "dev-01"
HUB = "contoso-hub.azure-devices.net"
# the key of issue 3's must-hold tokens, and another one
DEVICE_KEY = "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU="
OTHER_KEY = base64.b64encode(bytes(range(32))).decode()


def _key(n):
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


CA_KEY = _key(1)


def cert(cn, not_before, not_after, key=2, serial=0x1001):
    """A DER certificate for `cn` signed by the test CA (Ed25519)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "microagent test CA")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(ca)
         .public_key(_key(key).public_key()).serial_number(serial)
         .not_valid_before(not_before).not_valid_after(not_after))
    return b.sign(CA_KEY, None).public_bytes(serialization.Encoding.DER)


def pem(der):
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


def sha1(der):
    return hashlib.sha1(der).hexdigest().upper()


def sha256(der):
    return hashlib.sha256(der).hexdigest().upper()


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def sas(key_b64, se, device=DEV):
    """SharedAccessSignature for devices/<device> expiring at `se` (int)."""
    sr = urllib.parse.quote("%s/devices/%s" % (HUB, device), safe="")
    mac = hmac.new(base64.b64decode(key_b64), ("%s\n%d" % (sr, se)).encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote(base64.b64encode(mac).decode(), safe="")
    return "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, sig, se)


def ts(dt):
    return int(dt.timestamp())


SEC = datetime.timedelta(seconds=1)
DAY = datetime.timedelta(days=1)
YEAR = 365 * DAY
A_YEAR_AGO = START - YEAR
RESOURCE = "%s/devices/%s" % (HUB, DEV)

# the device certificate in its forms
GOOD = cert(DEV, A_YEAR_AGO, START + YEAR)
OTHER = cert(DEV, A_YEAR_AGO, START + YEAR, key=3, serial=0x1002)
ROOT = cert("microagent test CA", A_YEAR_AGO, START + 10 * YEAR, key=1, serial=1)


def _write(out, name, header, events=()):
    h = {"scenario": name, "device": DEV, "start": iso(START)}
    h.update(header)
    with open(out / (name + ".jsonl"), "w") as f:
        f.write(json.dumps(h) + "\n")
        for e in events:
            f.write(json.dumps(e) + "\n")


def _cfg(certs=None, **more):
    d = {"deviceId": DEV}
    if certs is not None:
        d["certificates"] = certs
    d.update(more)
    return d


def _ev(t, event, **kw):
    d = {"t": t, "event": event}
    d.update(kw)
    return d


def _finding(ftype, at, **details):
    return {"type": ftype, "time": iso(at), "count": 1, "details": details, "times": 1}


def _validity(slug, ftype, fire_der, near_der, near_expect, **cfgmore):
    # one file certs/device.pem checked at t=0 (no time-window rule: the
    # check runs at the start only, so "one second later" stays unseen)
    c = _cfg([{"path": "certs/device.pem"}], **cfgmore)
    return [
        (slug + "-fire", {"config": c, "files": {"certs/device.pem": pem(fire_der)},
                          "expect": [ftype], "exact": True}),
        (slug + "-near", {"config": c, "files": {"certs/device.pem": pem(near_der)},
                          "expect": near_expect, "exact": True}),
    ]


def scenarios():
    """(name, header, events) of every generated scenario."""
    out = []
    p = "certs/device.pem"
    # cert_expired: notAfter one second before the check / one second after
    # (RFC 5280: valid through notAfter inclusive). The near miss is then
    # due to expire within 30 days: cert_expiring and nothing else.
    exp = START - SEC
    nxt = START + SEC
    out += [(n, h, []) for n, h in _validity(
        "cert-expired", _finding("cert_expired", START, path=p, subject=DEV, not_after=iso(exp)),
        cert(DEV, A_YEAR_AGO, exp), cert(DEV, A_YEAR_AGO, nxt),
        [_finding("cert_expiring", START, path=p, subject=DEV, not_after=iso(nxt))])]
    # the boundary itself: notAfter == the check time is still valid (RFC
    # 5280 s4.1.2.5: the validity period includes notAfter), so at t=0 only
    # cert_expiring; one second later (a PT1S window's end runs the checks
    # again) it has expired
    out += [(n, h, []) for n, h in _validity(
        "cert-expired-at-not-after", _finding("cert_expired", START + SEC, path=p, subject=DEV, not_after=iso(START)),
        cert(DEV, A_YEAR_AGO, START), cert(DEV, A_YEAR_AGO, START),
        [_finding("cert_expiring", START, path=p, subject=DEV, not_after=iso(START))])]
    fire = out[-2][1]
    fire["config"] = dict(fire["config"], timeWindowRules=[{
        "ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True, "minThreshold": 0, "maxThreshold": 100,
        "timeWindowSize": "PT1S"}])
    fire["end"] = 1
    fire["expect"] = [_finding("cert_expiring", START, path=p, subject=DEV, not_after=iso(START)), fire["expect"][0]]
    # a chain in one file: the findings name the certificate that expires
    # first and the one that becomes valid last, wherever they stand in the
    # file; the thumbprint pin is the first certificate's
    chain = "certs/chain.pem"
    ca_gone = START - DAY
    late = START + DAY
    c1, c2, c3 = (cert(DEV, A_YEAR_AGO, START + YEAR), cert("intermediate CA", A_YEAR_AGO, ca_gone, key=3, serial=7),
                  cert("root CA", late, START + 10 * YEAR, key=4, serial=8))
    out.append(("cert-chain-fire", {
        "config": _cfg([{"path": chain, "expectedThumbprint": sha256(c1)}]),
        "files": {chain: pem(c1) + pem(c2) + pem(c3)},
        "expect": [_finding("cert_expired", START, path=chain, subject="intermediate CA", not_after=iso(ca_gone)),
                   _finding("cert_not_yet_valid", START, path=chain, subject="root CA", not_before=iso(late))],
        "exact": True}, []))
    # near miss: the certificate that expires first (the second) does so
    # exactly 30 days out, the one that becomes valid last (the third) at
    # the check itself: nothing to say
    c2 = cert("intermediate CA", A_YEAR_AGO, START + 30 * DAY, key=3, serial=7)
    c3 = cert("root CA", START, START + 10 * YEAR, key=4, serial=8)
    out.append(("cert-chain-near", {
        "config": _cfg([{"path": chain, "expectedThumbprint": sha256(c1)}]),
        "files": {chain: pem(c1) + pem(c2) + pem(c3)}, "expect": [], "exact": True}, []))
    # cert_expiring: within certExpiryWarningDays (default 30) of the check
    warn = START + 30 * DAY
    out += [(n, h, []) for n, h in _validity(
        "cert-expiring", _finding("cert_expiring", START, path=p, subject=DEV, not_after=iso(warn - SEC)),
        cert(DEV, A_YEAR_AGO, warn - SEC), cert(DEV, A_YEAR_AGO, warn), [])]
    warn7 = START + 7 * DAY
    out += [(n, h, []) for n, h in _validity(
        "cert-expiring-7-days", _finding("cert_expiring", START, path=p, subject=DEV, not_after=iso(warn7 - SEC)),
        cert(DEV, A_YEAR_AGO, warn7 - SEC), cert(DEV, A_YEAR_AGO, warn7), [], certExpiryWarningDays=7)]
    # cert_not_yet_valid: notBefore one second after the check / at it
    out += [(n, h, []) for n, h in _validity(
        "cert-not-yet-valid", _finding("cert_not_yet_valid", START, path=p, subject=DEV, not_before=iso(START + SEC)),
        cert(DEV, START + SEC, START + YEAR), cert(DEV, START, START + YEAR), [])]

    # cert_thumbprint_mismatch: a SHA-1 pin (PEM file) and a SHA-256 pin
    # (DER file, der_hex) of other certificates; the near miss pins the
    # right ones, the SHA-1 one written as openssl prints it
    files = {p: pem(GOOD), "certs/root-ca.der": {"der_hex": ROOT.hex()}}
    out.append(("cert-thumbprint-fire", {
        "config": _cfg([{"path": p, "expectedThumbprint": sha1(OTHER)},
                        {"path": "certs/root-ca.der", "expectedThumbprint": sha256(GOOD)}]),
        "files": files,
        "expect": [_finding("cert_thumbprint_mismatch", START, path=p, subject=DEV, expected=sha1(OTHER),
                            actual=sha1(GOOD), rule="sha1"),
                   _finding("cert_thumbprint_mismatch", START, path="certs/root-ca.der", subject="microagent test CA",
                            expected=sha256(GOOD), actual=sha256(ROOT), rule="sha256")],
        "exact": True}, []))
    colons = ":".join(sha1(GOOD)[i:i + 2] for i in range(0, 40, 2)).lower()
    out.append(("cert-thumbprint-near", {
        "config": _cfg([{"path": p, "expectedThumbprint": colons},
                        {"path": "certs/root-ca.der", "expectedThumbprint": sha256(ROOT)}]),
        "files": files, "expect": [], "exact": True}, []))

    # rotation: a `file` event replaces the certificate; the agent's file
    # watcher finds the change (findings at the write's time)
    expired = cert(DEV, A_YEAR_AGO, START + 50 * SEC)
    out.append(("cert-rotation", {
        "config": _cfg([{"path": p}]), "files": {p: pem(GOOD)}, "end": 300,
        "expect": [_finding("cert_expired", START + 100 * SEC, path=p, subject=DEV, not_after=iso(START + 50 * SEC))],
        "exact": True}, [
        _ev(100, "file", path=p, text=pem(expired)),
        _ev(200, "file", path=p, text=pem(GOOD))]))
    out.append(("cert-rotation-pinned", {
        "config": _cfg([{"path": p, "expectedThumbprint": sha256(GOOD)}]), "files": {p: pem(GOOD)},
        "expect": [_finding("cert_thumbprint_mismatch", START + 100 * SEC, path=p, subject=DEV,
                            expected=sha256(GOOD), actual=sha256(OTHER), rule="sha256")],
        "exact": True}, [
        _ev(100, "file", path=p, der_hex=OTHER.hex())]))
    # files survive a reboot: the restarted agent checks the rotated file
    # (folding state is volatile, so the same finding comes out again)
    gone = START - DAY
    out.append(("cert-rotation-reboot", {
        "config": _cfg([{"path": p}]), "files": {p: pem(GOOD)},
        "expect": [_finding("cert_expired", START + 20 * SEC, path=p, subject=DEV, not_after=iso(gone)),
                   _finding("cert_expired", START + 30 * SEC, path=p, subject=DEV, not_after=iso(gone))],
        "exact": True}, [
        _ev(20, "file", path=p, text=pem(cert(DEV, A_YEAR_AGO, gone))),
        _ev(30, "reboot")]))

    # SAS tokens, sent as the MQTT CONNECT password
    user = "%s/%s/?api-version=2021-04-12" % (HUB, DEV)
    at10 = ts(START) + 10
    out.append(("sas-expired-fire", {
        "config": _cfg(),
        "expect": [_finding("sas_token_expired", START + 10 * SEC, resource=RESOURCE, expiry=iso(START + 10 * SEC))],
        "exact": True}, [
        _ev(1, "connect", id=1, remote="20.1.2.3", port=8883),
        _ev(10, "mqtt_connect", client_id=DEV, username=user, password=sas(DEVICE_KEY, at10))]))
    out.append(("sas-expired-near", {
        "config": _cfg(), "expect": [], "exact": True}, [
        _ev(1, "connect", id=1, remote="20.1.2.3", port=8883),
        _ev(10, "mqtt_connect", client_id=DEV, username=user, password=sas(DEVICE_KEY, at10 + 1))]))
    far = ts(START + YEAR)
    out.append(("sas-invalid-signature-fire", {
        "config": _cfg(sas={"deviceKey": DEVICE_KEY}),
        "expect": [_finding("sas_token_invalid_signature", START + 2 * SEC, resource=RESOURCE)],
        "exact": True}, [
        _ev(2, "mqtt_connect", client_id=DEV, username=user, password=sas(OTHER_KEY, far))]))
    out.append(("sas-invalid-signature-near", {
        "config": _cfg(sas={"deviceKey": DEVICE_KEY}), "expect": [], "exact": True}, [
        _ev(2, "mqtt_connect", client_id=DEV, username=user, password=sas(DEVICE_KEY, far)),
        # issue 3's must-hold tokens: sr percent-encoded and as plain text
        _ev(3, "mqtt_connect", client_id=DEV, username=user, password=(
            "SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01&sig="
            "OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D&se=1900000000")),
        _ev(4, "mqtt_connect", client_id=DEV, username=user, password=(
            "SharedAccessSignature sr=contoso-hub.azure-devices.net/devices/dev-01&sig="
            "u7cq3gZ2c19vUp6ct0RFuxDG31rNM0nCdPSgaYE1%2BGY%3D&se=1900000000"))]))

    # the clock: unset at power-up (2000-01-01 in a replay) -> one
    # clock_not_set, no expiry verdicts until a clock event sets it; then
    # the certificate and the token waiting for a verdict get theirs
    unset = datetime.datetime(2000, 1, 1, tzinfo=UTC)
    old = cert(DEV, A_YEAR_AGO, START - DAY)
    out.append(("clock-not-set-fire", {
        "clock_set": False, "config": _cfg([{"path": p}]), "files": {p: pem(old)},
        "expect": [{"type": "clock_not_set", "time": iso(unset), "count": 1,
                    "details": {"value": iso(unset), "min": "2024-01-01T00:00:00Z"}, "times": 1},
                   _finding("cert_expired", START, path=p, subject=DEV, not_after=iso(START - DAY)),
                   _finding("sas_token_expired", START, resource=RESOURCE, expiry=iso(START - 3600 * SEC))],
        "exact": True}, [
        _ev(5, "mqtt_connect", client_id=DEV, username=user, password=sas(DEVICE_KEY, ts(START) - 3600)),
        _ev(30, "clock", set=iso(START))]))
    # a clock exactly at the floor (2024-01-01T00:00:00Z) counts as set
    floor = datetime.datetime(2024, 1, 1, tzinfo=UTC)
    out.append(("clock-not-set-near", {
        "start": iso(floor), "config": _cfg([{"path": p}]),
        "files": {p: pem(cert(DEV, floor - YEAR, floor + 5 * YEAR))},
        "expect": [], "exact": True}, [
        _ev(5, "mqtt_connect", client_id=DEV, username=user, password=sas(DEVICE_KEY, ts(floor) + 6))]))
    # an NTP step forward: the next window end's check sees the new time
    soon = START + 3600 * SEC
    out.append(("clock-step", {
        "config": _cfg([{"path": p}], timeWindowRules=[{
            "ruleType": "MqttC2DMessagesNotInAllowedRange", "isEnabled": True,
            "minThreshold": 0, "maxThreshold": 100, "timeWindowSize": "PT1M"}]),
        "files": {p: pem(cert(DEV, A_YEAR_AGO, soon))}, "end": 60,
        "expect": [_finding("cert_expiring", START, path=p, subject=DEV, not_after=iso(soon)),
                   _finding("cert_expired", START + DAY + 50 * SEC, path=p, subject=DEV, not_after=iso(soon))],
        "exact": True}, [
        _ev(10, "clock", set=iso(START + DAY))]))
    return out


def main(argv):
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    for name, header, events in scenarios():
        _write(out, name, header, events)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
