"""`microagent sas generate|check`: exact output and exit codes."""
import json
import subprocess
import sys

import pytest

from host_tools import cli

KEY = "rek3wj3ATGSwvTfhkMJsj9vnuzuCStyGYMAqlotJJCU="
TOK_ENC = ("SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01"
           "&sig=OX147z2F7LNPJgUf2ObcfiNl8tYKjHrW1BUyS4bSBVg%3D&se=1900000000")
TOK_RAW = ("SharedAccessSignature sr=contoso-hub.azure-devices.net/devices/dev-01"
           "&sig=u7cq3gZ2c19vUp6ct0RFuxDG31rNM0nCdPSgaYE1%2BGY%3D&se=1900000000")
NOW = "2026-11-30T00:53:20Z"  # 1796000000


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_generate_matches_the_reference_token(capsys):
    rc, out, err = run(capsys, "sas", "generate", "--hub", "contoso-hub.azure-devices.net", "--device", "dev-01",
                       "--key", KEY, "--ttl", "104000000", "--now", "1796000000")
    assert (rc, out, err) == (0, TOK_ENC + "\n", "")


def test_generate_policy_module_and_iso_ttl(capsys):
    rc, out, err = run(capsys, "sas", "generate", "--hub", "contoso-hub.azure-devices.net", "--device", "dev-01",
                       "--module", "sensor", "--key", KEY, "--ttl", "P1D", "--now", NOW, "--policy", "device")
    assert rc == 0 and err == ""
    assert out == ("SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01%2Fmodules%2Fsensor"
                   "&sig=IwaIKkS%2BjcP8DJROTe9uKyO4pirzf9lYvuAAFXUi8eE%3D&se=1796086400&skn=device\n")


@pytest.mark.parametrize("argv,msg", [
    (["--key", "not base64!", "--ttl", "60"], "--key must be a base64 key (a device's or policy's primary or secondary key)"),
    (["--key", "", "--ttl", "60"], "--key must be a base64 key (a device's or policy's primary or secondary key)"),
    (["--key", KEY, "--ttl", "0"], "--ttl must be longer than zero"),
    (["--key", KEY, "--ttl", "P1M"], "--ttl: years and months are not fixed lengths; use days (or whole seconds)"),
    (["--key", KEY, "--ttl", "60", "--now", "yesterday"], "--now: time must be YYYY-MM-DDTHH:MM:SSZ (or whole seconds since 1970)"),
])
def test_generate_usage_errors(capsys, argv, msg):
    rc, out, err = run(capsys, "sas", "generate", "--hub", "h", "--device", "d", *argv)
    assert (rc, out, err) == (2, "", "microagent sas: %s\n" % msg)


def test_generate_refuses_slash_in_device(capsys):
    rc, out, err = run(capsys, "sas", "generate", "--hub", "h", "--device", "a/b", "--key", KEY, "--ttl", "60")
    assert (rc, out, err) == (2, "", "microagent sas: --device must be non-empty, without '/' or spaces\n")


def test_check_valid_with_key(capsys):
    for tok in (TOK_ENC, TOK_RAW):
        rc, out, err = run(capsys, "sas", "check", tok, "--key", KEY, "--now", NOW)
        assert (rc, err) == (0, "")
        assert out == (
            "SAS token\n"
            "  resource:   contoso-hub.azure-devices.net/devices/dev-01\n"
            "  hub:        contoso-hub.azure-devices.net\n"
            "  device:     dev-01\n"
            "  policy:     none (signed with the device's key)\n"
            "  expiry:     2030-03-17T17:46:40Z (in 1203d 16h 53m 20s; now 2026-11-30T00:53:20Z)\n"
            "  signature:  valid (matches the given key)\n"
            "  verdict:    VALID\n")


def test_check_without_key_is_valid_when_not_expired(capsys):
    rc, out, err = run(capsys, "sas", "check", TOK_ENC, "--now", "1899999999")
    assert rc == 0
    assert out.splitlines()[5:] == [
        "  expiry:     2030-03-17T17:46:40Z (in 1s; now 2030-03-17T17:46:39Z)",
        "  signature:  not checked (no --key given)",
        "  verdict:    VALID"]


def test_check_expired_and_bad_signature(capsys):
    tok = TOK_ENC.replace("se=1900000000", "se=1700000000") + "&skn=device"
    rc, out, err = run(capsys, "sas", "check", tok, "--key", KEY, "--now", NOW)
    assert (rc, err) == (1, "")
    assert out == (
        "SAS token\n"
        "  resource:   contoso-hub.azure-devices.net/devices/dev-01\n"
        "  hub:        contoso-hub.azure-devices.net\n"
        "  device:     dev-01\n"
        "  policy:     device (signed with this shared access policy's key)\n"
        "  expiry:     2023-11-14T22:13:20Z (expired 1111d 2h 40m 0s ago; now 2026-11-30T00:53:20Z)\n"
        "  signature:  INVALID (does not match the given key)\n"
        "  verdict:    NOT VALID: expired, signature does not match\n")


def test_check_expires_at_se(capsys):
    rc, out, err = run(capsys, "sas", "check", TOK_ENC, "--now", "1900000000")
    assert rc == 1
    assert out.splitlines()[5:] == [
        "  expiry:     2030-03-17T17:46:40Z (expired 0s ago; now 2030-03-17T17:46:40Z)",
        "  signature:  not checked (no --key given)",
        "  verdict:    NOT VALID: expired"]


def test_check_signature_only_invalid(capsys):
    rc, out, err = run(capsys, "sas", "check", TOK_ENC.replace("dev-01", "dev-02"), "--key", KEY, "--now", NOW)
    assert rc == 1
    assert out.splitlines()[-1] == "  verdict:    NOT VALID: signature does not match"


def test_check_hub_level_policy_token_and_module(capsys):
    tok = ("SharedAccessSignature sr=contoso-hub.azure-devices.net&sig=t0NhcU9SqU16a5%2FZSxMBbMhp2Dtu771jZ5Ij03qLcM0%3D"
           "&se=1900000000&skn=iothubowner")
    rc, out, err = run(capsys, "sas", "check", tok, "--key", KEY, "--now", NOW)
    assert rc == 0
    assert out.splitlines()[1:5] == [
        "  resource:   contoso-hub.azure-devices.net",
        "  hub:        contoso-hub.azure-devices.net",
        "  device:     - (not a device resource)",
        "  policy:     iothubowner (signed with this shared access policy's key)"]
    tok = ("SharedAccessSignature sr=contoso-hub.azure-devices.net%2Fdevices%2Fdev-01%2Fmodules%2Fsensor"
           "&sig=ydeL6mvt29b81SSUzQJpbxfPU9Ofawd%2FuO7dcopgt%2Fw%3D&se=1900000000")
    rc, out, err = run(capsys, "sas", "check", tok, "--key", KEY, "--now", NOW)
    assert rc == 0
    assert out.splitlines()[3:5] == ["  device:     dev-01", "  module:     sensor"]


@pytest.mark.parametrize("tok,msg", [
    (TOK_ENC + "&se=1900000000", "repeated field 'se'"),
    (TOK_ENC + "&skn=&skn=", "repeated field 'skn'"),
    (TOK_ENC + "&foo=bar", "unknown field 'foo' (allowed: sr, sig, se, skn)"),
    (TOK_ENC[len("SharedAccessSignature "):], "not a SAS token: it must start with 'SharedAccessSignature '"),
    (TOK_ENC.replace("%3D", ""), "sig is not base64: length 43 is not a multiple of 4"),
    (TOK_RAW.replace("%2B", " "), "sig is not base64 (character 40)"),
    (TOK_ENC.replace("&se=1900000000", ""), "no 'se' field"),
])
def test_check_cannot_parse(capsys, tok, msg):
    rc, out, err = run(capsys, "sas", "check", tok, "--key", KEY, "--now", NOW)
    assert (rc, out, err) == (2, "", "microagent sas check: cannot parse the token: %s\n" % msg)
    rc, out, err = run(capsys, "sas", "check", tok, "--json", "--now", NOW)
    assert (rc, json.loads(out), err) == (2, {"valid": False, "error": msg}, "")


def test_check_bad_key_is_usage_error(capsys):
    rc, out, err = run(capsys, "sas", "check", TOK_ENC, "--key", KEY[:-1], "--now", NOW)
    assert (rc, out, err) == (2, "", "microagent sas: --key: key is not base64: length 43 is not a multiple of 4\n")


def test_check_json(capsys):
    rc, out, err = run(capsys, "sas", "check", TOK_ENC, "--key", KEY, "--now", NOW, "--json")
    assert rc == 0
    assert json.loads(out) == {
        "resource": "contoso-hub.azure-devices.net/devices/dev-01", "hub": "contoso-hub.azure-devices.net",
        "device": "dev-01", "module": None, "policy": None, "expiry": "2030-03-17T17:46:40Z",
        "expiry_s": 1900000000, "now": "2026-11-30T00:53:20Z", "expires_in_s": 104000000,
        "expired": False, "signature": "valid", "valid": True}


def test_check_se_beyond_year_9999(capsys):
    # not signed with KEY (sig of another se): shows how a huge se reads
    tok = TOK_ENC.replace("se=1900000000", "se=99999999999999999999")
    rc, out, err = run(capsys, "sas", "check", tok, "--now", NOW)
    assert rc == 0
    assert out.splitlines()[5] == ("  expiry:     +3168873852651-02-22T09:46:39Z "
                                   "(in 1157407407386620d 8h 53m 19s; now 2026-11-30T00:53:20Z)")


def test_installed_command_reads_token_from_stdin():
    # the real `microagent` entry point in a subprocess, token on stdin
    r = subprocess.run([sys.executable, "-m", "host_tools.cli", "sas", "check", "-", "--key", KEY, "--now", NOW],
                       input=TOK_ENC + "\n", capture_output=True, text=True, timeout=60,
                       cwd=str(cli.__file__).rsplit("/host_tools/", 1)[0])
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines()[-1] == "  verdict:    VALID"


def test_check_shows_skn_percent_decoded(capsys):
    tok = TOK_ENC + "&skn=device%20policy%C3%A9"
    rc, out, err = run(capsys, "sas", "check", tok, "--now", NOW)
    assert rc == 0
    assert out.splitlines()[4] == "  policy:     device policy\u00e9 (signed with this shared access policy's key)"


@pytest.mark.parametrize("tok,msg", [
    (TOK_ENC.replace("BVg%3D", "BVh%3D"), "sig is not canonical base64 (character 42 leaves bits after the last byte)"),
    (TOK_ENC.replace("dev-01", "dev%C0%AF01"), "sr is not UTF-8 after percent-decoding"),
    (TOK_ENC + "&skn=%ED%A0%80", "skn is not UTF-8 after percent-decoding"),
])
def test_check_refuses_what_iot_hub_would_read_differently(capsys, tok, msg):
    rc, out, err = run(capsys, "sas", "check", tok, "--key", KEY, "--now", NOW)
    assert (rc, out, err) == (2, "", "microagent sas check: cannot parse the token: %s\n" % msg)


def test_check_se_with_thousands_of_leading_zeros(capsys):
    # signed as written: not valid under KEY, but readable (CPython's int()
    # refuses more than 4300 digits; the zeros are dropped first)
    tok = TOK_ENC.replace("se=1900000000", "se=" + "0" * 5000 + "1900000000")
    rc, out, err = run(capsys, "sas", "check", tok, "--now", NOW, "--json")
    assert (rc, err) == (0, "")
    assert json.loads(out)["expiry"] == "2030-03-17T17:46:40Z"
