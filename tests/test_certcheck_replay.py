"""Certificate checks end to end through `microagent replay` (the agent on
the unix port with a virtual clock): an unset clock, NTP, then a
certificate rotation written to the device's filesystem."""
import json
from pathlib import Path

from host_tools import cli

CERTS = Path(__file__).resolve().parent / "portable" / "certs"
LEAF_SHA256 = "12906F7F6D9B7E9378EAC75E9D6FB5D4D7DF8C8ECFC2C54B02969E1D032F2D13"
FOREVER_SHA256 = "8FD819914E26F63E0EF0B77B88DD2653B3BCA0FE95A3156E598BC49685EC29A0"


def test_clock_set_then_rotation(tmp_path, capsys):
    hdr = {"scenario": "cert-rotation", "device": "dev-01", "start": "2027-02-01T00:00:00Z", "clock_set": False,
           "config": {"deviceId": "dev-01", "certificates": [
               {"path": "certs/device.pem", "expectedThumbprint": LEAF_SHA256.lower()}]},
           "files": {"certs/device.pem": (CERTS / "leaf.pem").read_text()},
           "end": 30}
    events = [{"t": 5, "event": "clock", "set": "2027-02-01T00:00:05Z"},
              {"t": 10, "event": "file", "path": "certs/device.pem", "text": (CERTS / "forever.pem").read_text()}]
    f = tmp_path / "rotation.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [hdr] + events) + "\n")
    rc = cli.main(["replay", str(f)])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [json.loads(l.split(" ", 1)[1]) for l in out.splitlines() if l.startswith(("ALERT ", "RECOMMENDATION "))]
    assert [(a["type"], a["time"], a["details"]) for a in lines] == [
        ("clock_not_set", "2000-01-01T00:00:00Z", {"value": "2000-01-01T00:00:00Z", "min": "2024-01-01T00:00:00Z"}),
        ("cert_expired", "2027-02-01T00:00:05Z", {"path": "certs/device.pem", "subject": "dev-01",
                                                  "not_after": "2027-01-01T00:00:00Z"}),
        ("cert_thumbprint_mismatch", "2027-02-01T00:00:10Z", {
            "path": "certs/device.pem", "subject": "forever", "expected": LEAF_SHA256, "actual": FOREVER_SHA256,
            "rule": "sha256"})]
