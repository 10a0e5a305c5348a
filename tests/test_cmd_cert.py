"""`microagent cert inspect`: the device's reader on the host."""
import json
from pathlib import Path

import pytest

from host_tools import cli

CERTS = Path(__file__).resolve().parent / "portable" / "certs"


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_inspect_block_for_each_certificate(capsys):
    rc, out, err = run(capsys, "cert", "inspect", str(CERTS / "chain.pem"), str(CERTS / "forever.pem"),
                       "--now", "2026-11-30T00:00:00Z")
    assert rc == 0 and err == ""
    assert out == """\
{chain} [1/2]
  subject:    CN=dev-01
  issuer:     CN=Contoso Test CA
  serial:     1F2E3D4C5B6A7988 (2246800662264969608)
  not before: 2025-01-01T00:00:00Z
  not after:  2027-01-01T00:00:00Z (in 32d 0h)
  key:        RSA 2048
  SHA-1:      F9DC6CC6A6EDBED00B1B551C5CD4864C04F7F7D3
  SHA-256:    12906F7F6D9B7E9378EAC75E9D6FB5D4D7DF8C8ECFC2C54B02969E1D032F2D13
{chain} [2/2]
  subject:    CN=Contoso Test CA
  issuer:     CN=Contoso Test CA
  serial:     01 (1)
  not before: 2024-01-01T00:00:00Z
  not after:  2049-12-31T23:59:59Z (in 8432d 23h)
  key:        EC P-256
  SHA-1:      6D225E4DFEF7E9E8DB15215EFEDA6AB0B26305D0
  SHA-256:    420A1E16A013DE421A35BE19372628DE0B848AF1731293336777BE8DA374284E
{forever}
  subject:    CN=forever
  issuer:     CN=forever
  serial:     7F0102030405060708090A0B0C0D0E0F10111213 (725064303890588110203033396814564464046290047507)
  not before: 2024-06-01T00:00:00Z
  not after:  9999-12-31T23:59:59Z (no expiry)
  key:        Ed25519
  SHA-1:      035A99EC3D723B0B19B4C5188F32C84EA89CC2FD
  SHA-256:    8FD819914E26F63E0EF0B77B88DD2653B3BCA0FE95A3156E598BC49685EC29A0
""".format(chain=CERTS / "chain.pem", forever=CERTS / "forever.pem")


def test_inspect_expired_and_not_yet_valid(capsys):
    rc, out, err = run(capsys, "cert", "inspect", str(CERTS / "leaf.der"), "--now", "2027-01-03T12:00:00Z")
    assert rc == 0
    assert "  not after:  2027-01-01T00:00:00Z (EXPIRED 2d 12h ago)\n" in out
    rc, out, err = run(capsys, "cert", "inspect", str(CERTS / "leaf.der"), "--now", "2024-12-31T23:00:00Z")
    assert "  not before: 2025-01-01T00:00:00Z (NOT YET VALID: in 1h 0m)\n" in out


def test_not_a_certificate_exits_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "key.pem"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    cut = tmp_path / "cut.der"
    cut.write_bytes((CERTS / "leaf.der").read_bytes()[:300])
    rc, out, err = run(capsys, "cert", "inspect", str(bad), str(CERTS / "p384.der"), str(cut), str(tmp_path / "none.pem"))
    assert rc == 2
    assert err.splitlines() == [
        "microagent cert: %s: not a certificate: neither DER nor a PEM CERTIFICATE block" % bad,
        "microagent cert: %s: not a certificate: length 579 at offset 1 runs past the end (296 bytes left)" % cut,
        "microagent cert: %s: cannot read (No such file or directory)" % (tmp_path / "none.pem")]
    assert out.startswith("%s\n  subject:    CN=Z\u00fcrich \u2603\n" % (CERTS / "p384.der"))


def test_bad_now_is_a_usage_error(capsys):
    rc, out, err = run(capsys, "cert", "inspect", str(CERTS / "leaf.der"), "--now", "yesterday")
    assert rc == 2 and err == "microagent cert: --now: time must be YYYY-MM-DDTHH:MM:SSZ (or whole seconds since 1970)\n"


def test_json_is_what_the_unix_port_reads(capsys, mp, tmp_path):
    files = [CERTS / n for n in ("chain.pem", "two.der", "p384.der", "forever.pem")]
    rc, out, err = run(capsys, "cert", "inspect", "--json", "--now", "1796000000", *map(str, files))
    assert rc == 0
    rows = json.loads(out)
    assert [(Path(r["file"]).name, r["index"], r["subject"], r["status"]) for r in rows] == [
        ("chain.pem", 0, "dev-01", "valid"), ("chain.pem", 1, "Contoso Test CA", "valid"),
        ("two.der", 0, "dev-01", "valid"), ("two.der", 1, "forever", "valid"),
        ("p384.der", 0, "Z\u00fcrich \u2603", "valid"), ("forever.pem", 0, "forever", "valid")]
    assert rows[3]["no_expiry"] is True and rows[0]["no_expiry"] is False
    code = r"""
import sys, json, binascii
from microagent import x509
for p in sys.argv[1:]:
    for c in x509.iter_file(p):
        print(json.dumps([c.subject_cn, c.issuer_cn, str(c.serial), binascii.hexlify(c.serial_bytes).decode().upper(),
                          x509.iso(c.not_before), x509.iso(c.not_after), c.key_text(), c.sha1, c.sha256, c.size]))
"""
    r = mp(code, *map(str, files))
    assert r.returncode == 0, r.stderr
    device = [json.loads(l) for l in r.stdout.split("\n")[:-1]]
    host = [[d["subject"], d["issuer"], d["serial"], d["serial_hex"], d["not_before"], d["not_after"], d["key"],
             d["sha1"], d["sha256"], d["size"]] for d in rows]
    assert host == device


@pytest.mark.parametrize("argv", [["cert"], ["cert", "inspect"]])
def test_usage(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2


def test_bounds_and_odd_files_are_one_line_never_a_traceback(capsys, tmp_path):
    import sys
    sys.path.insert(0, str(CERTS.parent))
    try:
        import test_x509_strict as strict
    finally:
        sys.path.remove(str(CERTS.parent))
    files = {"bigserial.der": strict._with_serial(b"\x01" * 2001),       # 4800+ digits: CPython's int-str limit
             "longoid.der": strict._with_key_oid(b"\x2b" + b"\xff" * 8000 + b"\x7f"),
             "overlong.der": strict._with_cn(0x0C, b"dev\xc0\xaf01"),
             "ffkey.pem": b"-----BEGIN \xffKEY-----\nAAAA\n-----END \xffKEY-----\n",
             "empty.pem": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "dir.pem").mkdir()
    names = list(files) + ["dir.pem"]
    rc, out, err = run(capsys, "cert", "inspect", *[str(tmp_path / n) for n in names])
    assert (rc, out) == (2, "")
    assert err.splitlines() == ["microagent cert: %s: %s" % (tmp_path / n, r) for n, r in (
        ("bigserial.der", "not a certificate: serial number of 2001 octets at offset 17 (more than 64)"),
        ("longoid.der", "not a certificate: OBJECT IDENTIFIER of 8002 octets at offset 144 (more than 63)"),
        ("overlong.der", "not a certificate: UTF8String is not valid UTF-8 at offset 129"),
        ("ffkey.pem", "not a certificate: PEM line 1: malformed BEGIN line"),
        ("empty.pem", "not a certificate: empty input"),
        ("dir.pem", "cannot read (Is a directory)"))]


def test_serial_of_64_octets_is_shown(capsys, tmp_path):
    import sys
    sys.path.insert(0, str(CERTS.parent))
    try:
        import test_x509_strict as strict
    finally:
        sys.path.remove(str(CERTS.parent))
    p = tmp_path / "s64.der"
    p.write_bytes(strict._with_serial(b"\x7f" + b"\xff" * 63))
    rc, out, err = run(capsys, "cert", "inspect", "--json", str(p))
    assert rc == 0 and err == ""
    row = json.loads(out)[0]
    assert row["serial"] == str((1 << 511) - 1) and row["serial_hex"] == "7F" + "FF" * 63
