"""`microagent sas`: make and check IoT Hub SAS tokens.

`sas generate` signs a device token the way the Azure IoT SDKs do (CPython's
hmac, base64 and urllib). `sas check` reads a token with the device's own
parser: firmware/microagent/sas.py imported on CPython. It is the very file
the board runs, and tests/portable runs its tests on the unix port too, so
"the CLI accepts it" and "the device accepts it" cannot drift apart; a
subprocess on the unix port would only add start-up time and staging.
"""
import base64
import binascii
import hashlib
import hmac
import json
import sys
import time
import urllib.parse
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def _fw():
    # the firmware package, from the source tree (the same files the board runs)
    if str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
    from microagent import duration, platform, sas
    return sas, duration, platform


class UsageError(ValueError):
    """A command-line value that cannot be used (exit 2)."""


def _now(text):
    """--now: 'YYYY-MM-DDTHH:MM:SSZ' or whole seconds since 1970; None = the
    host clock."""
    if text is None:
        return int(time.time())
    if text.isdigit():
        return int(text)
    _, _, platform = _fw()
    try:
        return platform.parse_iso8601(text)
    except ValueError as e:
        raise UsageError("--now: %s (or whole seconds since 1970)" % e)


def _ttl(text):
    """--ttl: whole seconds or an ISO 8601 duration (PT1H, P30D)."""
    if text.isdigit():
        s = int(text)
    else:
        _, duration, _ = _fw()
        try:
            s = duration.parse_duration(text)
        except ValueError as e:
            raise UsageError("--ttl: %s (or whole seconds)" % e)
    if s <= 0:
        raise UsageError("--ttl must be longer than zero")
    return s


def _key_bytes(text):
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise UsageError("--key must be a base64 key (a device's or policy's primary or secondary key)")
    return key


def generate(hub, device, key, expiry, policy=None, module=None):
    """A SAS token for resource "{hub}/devices/{device}[/modules/{module}]".

    key: base64 text (the device's, or with `policy` that shared access
    policy's, key); expiry: int UTC seconds since 1970; policy: skn or None.
    sr is the URL-encoded resource and sig the URL-encoded base64 of
    HMAC-SHA256(key, sr + "\\n" + se), as the Azure IoT SDKs make them.
    Returns str; raises UsageError for an empty hub/device or a bad key.
    """
    for name, v in (("--hub", hub), ("--device", device)):
        if not v or "/" in v or any(c.isspace() for c in v):
            raise UsageError("%s must be non-empty, without '/' or spaces" % name)
    if module is not None and (not module or "/" in module):
        raise UsageError("--module must be non-empty, without '/'")
    uri = "%s/devices/%s" % (hub, device)
    if module:
        uri += "/modules/" + module
    sr = urllib.parse.quote(uri, safe="")
    mac = hmac.new(_key_bytes(key), ("%s\n%d" % (sr, expiry)).encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote(base64.b64encode(mac).decode(), safe="")
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, sig, expiry)
    if policy:
        token += "&skn=" + urllib.parse.quote(policy, safe="")
    return token


def span(seconds):
    """'3d 4h 5m 6s' for a non-negative number of seconds (leading zero
    units left out)."""
    d, r = divmod(seconds, 86400)
    h, r = divmod(r, 3600)
    m, s = divmod(r, 60)
    if d:
        return "%dd %dh %dm %ds" % (d, h, m, s)
    if h:
        return "%dh %dm %ds" % (h, m, s)
    if m:
        return "%dm %ds" % (m, s)
    return "%ds" % s


def inspect(token, key=None, now=None):
    """What `sas check` reports about `token` (str) as a dict.

    key: base64 text or None (no signature verdict); now: int UTC seconds.
    Raises ValueError (from the firmware parser) when the token cannot be
    parsed, UsageError for a bad key.
    """
    sas, _, _ = _fw()
    if now is None:
        now = int(time.time())
    kb = None
    if key is not None:
        try:
            kb = sas.decode_key(key)
        except ValueError as e:
            raise UsageError("--key: %s" % e)
    t = sas.parse(token)
    se = sas.se_value(t.se)
    expired = sas.expired(t.se, now)
    sig = "not_checked" if kb is None else ("valid" if sas.verify(t, kb) else "invalid")
    return {
        "resource": t.resource, "hub": t.hub, "device": t.device, "module": t.module,
        "policy": t.policy, "expiry": sas.iso8601(se), "expiry_s": se,
        "now": sas.iso8601(now), "expires_in_s": se - now, "expired": expired,
        "signature": sig, "valid": not expired and sig != "invalid",
    }


def format_block(r):
    """The readable block `sas check` prints for inspect()'s dict."""
    lines = ["SAS token"]
    lines.append("  resource:   %s" % r["resource"])
    lines.append("  hub:        %s" % r["hub"])
    lines.append("  device:     %s" % (r["device"] if r["device"] else "- (not a device resource)"))
    if r["module"]:
        lines.append("  module:     %s" % r["module"])
    lines.append("  policy:     %s" % (r["policy"] + " (signed with this shared access policy's key)"
                                        if r["policy"] else "none (signed with the device's key)"))
    d = r["expires_in_s"]
    when = ("expired %s ago" % span(-d)) if r["expired"] else ("in %s" % span(d))
    lines.append("  expiry:     %s (%s; now %s)" % (r["expiry"], when, r["now"]))
    lines.append("  signature:  %s" % {
        "valid": "valid (matches the given key)",
        "invalid": "INVALID (does not match the given key)",
        "not_checked": "not checked (no --key given)"}[r["signature"]])
    why = []
    if r["expired"]:
        why.append("expired")
    if r["signature"] == "invalid":
        why.append("signature does not match")
    lines.append("  verdict:    %s" % ("VALID" if r["valid"] else "NOT VALID: " + ", ".join(why)))
    return "\n".join(lines)


def _err(msg):
    print("microagent sas: %s" % msg, file=sys.stderr)
    return 2


def cmd_generate(args):
    try:
        now = _now(args.now)
        token = generate(args.hub, args.device, args.key, now + _ttl(args.ttl), args.policy, args.module)
    except UsageError as e:
        return _err(e)
    print(token)
    return 0


def cmd_check(args):
    token = args.token
    if token == "-":
        token = sys.stdin.readline().rstrip("\r\n")
    try:
        now = _now(args.now)
        r = inspect(token, args.key, now)
    except UsageError as e:
        return _err(e)
    except ValueError as e:
        if args.json:
            print(json.dumps({"valid": False, "error": str(e)}))
        else:
            print("microagent sas check: cannot parse the token: %s" % e, file=sys.stderr)
        return 2
    print(json.dumps(r) if args.json else format_block(r))
    return 0 if r["valid"] else 1


def add_parser(sub):
    p = sub.add_parser("sas", help="make and check IoT Hub SAS tokens",
                       description="Make and check IoT Hub SAS tokens (docs/sas.md).")
    s = p.add_subparsers(dest="sas_command", required=True, metavar="ACTION")

    g = s.add_parser("generate", help="print a SAS token for a device (provisioning)",
                     description="Print a SAS token signed like the Azure IoT SDKs sign it.")
    g.add_argument("--hub", required=True, help="IoT Hub host name, e.g. contoso-hub.azure-devices.net")
    g.add_argument("--device", required=True, help="device id")
    g.add_argument("--module", help="module id (a module identity's token)")
    g.add_argument("--key", required=True, help="base64 key: the device's, or with --policy that policy's")
    g.add_argument("--ttl", required=True, help="lifetime: whole seconds or an ISO 8601 duration (PT1H, P30D)")
    g.add_argument("--policy", help="shared access policy name (adds skn=)")
    g.add_argument("--now", help="start time instead of the host clock: YYYY-MM-DDTHH:MM:SSZ or seconds since 1970")
    g.set_defaults(func=cmd_generate)

    c = s.add_parser("check", help="say whether a SAS token is valid (exit 0 valid, 1 not valid, 2 unparseable)",
                     description="Read a SAS token with the device's parser and say what it found. "
                                 "Exit 0: valid (not expired; signature matches where --key is given); "
                                 "1: not valid; 2: cannot be parsed.")
    c.add_argument("token", metavar="TOKEN", help="the token (quote it: it contains '&'); '-' reads one line from stdin")
    c.add_argument("--key", help="base64 key to verify the signature with")
    c.add_argument("--now", help="judge expiry at this time: YYYY-MM-DDTHH:MM:SSZ or seconds since 1970")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the block")
    c.set_defaults(func=cmd_check)
