"""`microagent cert inspect FILE... [--json]`: what the device sees in
certificate files.

It reads the files with the device's own reader: firmware/microagent/x509.py
(and der.py) imported on CPython. Those are the very files the board runs;
tests/portable runs their tests on the unix port too, and
tests/test_x509_xcheck.py checks that the unix port reads generated
certificates exactly as CPython does, so "the CLI reads it" and "the device
reads it" cannot drift apart. A subprocess on the unix port would add
start-up time and staging and tell nothing more.
"""
import json
import sys
import time
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def _fw():
    # the firmware package, from the source tree (the same files the board runs)
    if str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
    from microagent import platform, x509
    return x509, platform


def _span(seconds):
    d, r = divmod(seconds, 86400)
    h, r = divmod(r, 3600)
    m = r // 60
    if d:
        return "%dd %dh" % (d, h)
    if h:
        return "%dh %dm" % (h, m)
    return "%dm" % m


def describe(c, now):
    """A dict of what the device knows about Certificate `c` (see x509.py)
    judged at `now` (int UTC seconds): subject, issuer (CNs or None),
    serial (decimal text) and serial_hex (the INTEGER's octets, upper-case),
    not_before / not_after (ISO 8601 UTC), status ("valid", "expired",
    "not yet valid"), key, sha1 and sha256 (IoT Hub's form: upper-case hex,
    no colons), size (DER bytes)."""
    x509, platform = _fw()
    t = x509.civil(now)
    if c.not_after < t:
        status = "expired"
    elif c.not_before > t:
        status = "not yet valid"
    else:
        status = "valid"
    return {
        "subject": c.subject_cn, "issuer": c.issuer_cn,
        "serial": str(c.serial), "serial_hex": c.serial_bytes.hex().upper(),
        "not_before": x509.iso(c.not_before), "not_after": x509.iso(c.not_after),
        "no_expiry": c.not_after == x509.NO_EXPIRY, "status": status,
        "key": c.key_text(), "sha1": c.sha1, "sha256": c.sha256, "size": c.size,
    }


def _utc(text):
    x509, platform = _fw()
    return x509.civil(platform.parse_iso8601(text))


def format_block(path, index, count, d, now):
    """The readable block for one certificate (describe()'s dict)."""
    x509, platform = _fw()
    head = path if count == 1 else "%s [%d/%d]" % (path, index + 1, count)
    na = d["not_after"]
    if d["no_expiry"]:
        when = "no expiry"
    elif d["status"] == "expired":
        when = "EXPIRED %s ago" % _span(now - platform.parse_iso8601(na))
    else:
        when = "in %s" % _span(platform.parse_iso8601(na) - now)
    nb = d["not_before"]
    nb_note = " (NOT YET VALID: in %s)" % _span(platform.parse_iso8601(nb) - now) if d["status"] == "not yet valid" else ""
    lines = [head,
             "  subject:    %s" % _cn(d["subject"]),
             "  issuer:     %s" % _cn(d["issuer"]),
             "  serial:     %s (%s)" % (d["serial_hex"], d["serial"]),
             "  not before: %s%s" % (nb, nb_note),
             "  not after:  %s (%s)" % (na, when),
             "  key:        %s" % d["key"],
             "  SHA-1:      %s" % d["sha1"],
             "  SHA-256:    %s" % d["sha256"]]
    return "\n".join(lines)


def _cn(v):
    return "CN=" + v if v is not None else "(no CN)"


def inspect_file(path):
    """[Certificate, ...] of a file (DER or PEM, one or several).
    Raises OSError (cannot read) or ValueError (not certificates)."""
    x509, _ = _fw()
    return list(x509.iter_file(path))


def _reason(e):
    # one line for a file that cannot be read or is not certificates; the
    # reader's DERError messages quote no file content (docs/certificates.md),
    # anything else is named by its class only
    from microagent.der import DERError
    if isinstance(e, OSError):
        return "cannot read (%s)" % (e.strerror or type(e).__name__)
    if isinstance(e, DERError):
        return "not a certificate: %s" % e
    return "not a certificate (%s)" % type(e).__name__


def cmd_inspect(args):
    x509, platform = _fw()
    if args.now is not None:
        try:
            now = int(args.now) if args.now.isdigit() else platform.parse_iso8601(args.now)
        except ValueError as e:
            print("microagent cert: --now: %s (or whole seconds since 1970)" % e, file=sys.stderr)
            return 2
    else:
        now = int(time.time())
    rc = 0
    out = []
    for path in args.files:
        try:
            certs = inspect_file(path)
        except Exception as e:  # never a traceback: one line, exit 2
            reason = _reason(e)
        else:
            for i, c in enumerate(certs):
                d = describe(c, now)
                if args.json:
                    d = dict(file=path, index=i, **d)
                    out.append(d)
                else:
                    print(format_block(path, i, len(certs), d, now))
            continue
        rc = 2
        if args.json:
            out.append({"file": path, "error": reason})
        print("microagent cert: %s: %s" % (path, reason), file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False))
    return rc


def add_parser(sub):
    p = sub.add_parser("cert", help="inspect X.509 certificates as the device reads them",
                       description="Inspect X.509 certificates with the device's own reader (docs/certificates.md).")
    s = p.add_subparsers(dest="cert_command", required=True, metavar="ACTION")
    i = s.add_parser("inspect", help="print subject, issuer, serial, validity and thumbprints (exit 2: not a certificate)",
                     description="Print what the device sees in each certificate file (DER or PEM, one or several "
                                 "certificates): subject and issuer CN, serial, validity, key, and the SHA-1 and "
                                 "SHA-256 thumbprints as IoT Hub shows them (upper-case hex, no colons). "
                                 "Exit 0: every file held certificates; 2: a file could not be read or is not "
                                 "a certificate (one line on stderr says why).")
    i.add_argument("files", nargs="+", metavar="FILE", help="certificate file (DER or PEM)")
    i.add_argument("--json", action="store_true", help="print a JSON list, one object per certificate")
    i.add_argument("--now", help="judge validity at this time: YYYY-MM-DDTHH:MM:SSZ or seconds since 1970")
    i.set_defaults(func=cmd_inspect)
