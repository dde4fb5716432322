"""`mdtrace replay` filters and decoding, on a real-kernel golden trace."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mdtrace.commands.replay import command

TRACE = str(Path(__file__).parent / "data" / "golden" / "6.12.117+deb12-amd64"
            / "resync_raid5.jsonl.gz")


def test_kind_filter_and_decoded_flags() -> None:
    res = CliRunner().invoke(command, [TRACE, "--kind", "reap", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows and all(r["kind"] == "reap" for r in rows)
    assert "DONE" in rows[0]["state"]["recovery"]


def test_array_and_time_filters() -> None:
    # issue 16: an array the trace does not have is an error naming the ones it has
    res = CliRunner().invoke(command, [TRACE, "--array", "nope"])
    assert res.output == "" and "its arrays: md0" in str(res.exception)
    res = CliRunner().invoke(command, [TRACE, "--until", "0"])
    assert len(res.output.splitlines()) >= 1
    full = CliRunner().invoke(command, [TRACE]).output.splitlines()
    assert len(res.output.splitlines()) < len(full)
