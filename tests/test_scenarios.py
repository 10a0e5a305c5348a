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
