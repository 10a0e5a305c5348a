"""The scenario corpus: every tests/scenarios/*.jsonl through
`microagent replay --check` (the real agent on the unix port, 64 KB heap).
Each file is one case; a failing case shows the replay's diff."""
from pathlib import Path

import pytest

from host_tools import cli

CORPUS = Path(__file__).resolve().parent / "scenarios"
FILES = sorted(CORPUS.glob("*.jsonl"))


def test_corpus_is_there():
    # a glob that matched nothing would make the parametrized cases vanish
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_scenario(path, mp_lib, capsys):
    rc = cli.main(["replay", "--check", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.startswith("PASS %s (" % path), out


def test_accept_ports_are_service_ports():
    # an `accept` event's port is the device's own (the service the remote
    # connected to), as the agent reports an inbound connection: never a
    # port from the ephemeral range 49152-65535 (RFC 6335), a client's
    import json
    seen = []
    for path in FILES:
        with open(path) as f:
            next(f)
            for line in f:
                e = json.loads(line)
                if e["event"] == "accept":
                    seen.append((path.stem, e["port"]))
    assert seen == [("connection-not-allowed-fire", 8080), ("connection-not-allowed-near", 8080),
                    ("suspicious-ip-fire", 22), ("suspicious-ip-near", 22)]
