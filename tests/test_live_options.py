"""run, top and exporter share their live options (commands/_live.py live_options), and the
BccSource arguments --ebpf prints are the ones the command loads with."""

from __future__ import annotations

import pytest

from mdtrace.commands import _live
from mdtrace.commands._ebpf import BCC_ARGS
from mdtrace.commands.exporter import command as exporter
from mdtrace.commands.run import command as run
from mdtrace.commands.top import command as top

SHARED = {"prefer", "locks", "locks_full", "io_threshold_ms", "config_path", "thresholds",
          "interval", "sysfs_root", "snapshot"}


def _opts(cmd) -> dict[str, tuple]:  # noqa: ANN001
    return {p.name: (tuple(p.opts), p.default, p.help) for p in cmd.params if p.name in SHARED}


def test_the_three_front_ends_have_the_same_live_options() -> None:
    assert set(_opts(run)) == SHARED
    assert _opts(run) == _opts(top) == _opts(exporter)


def test_bcc_arguments_follow_the_config_threshold(tmp_path) -> None:  # noqa: ANN001
    kw = {"locks": True, "locks_full": False, "io_threshold_ms": 500.0, "config_path": None,
          "thresholds": ("io_wait_s=2.5",)}
    got = _live.live_bcc_kwargs(kw)
    assert got == {"locks": True, "locks_full": False, "io_threshold_ms": 500.0,
                   "io_alert_s": 2.5}
    assert BCC_ARGS["run"] is BCC_ARGS["top"] is BCC_ARGS["exporter"] is _live.live_bcc_kwargs


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), 1e9])
def test_interval_must_be_sane(bad: float) -> None:
    from mdtrace.errors import MdtraceError

    with pytest.raises(MdtraceError, match="--interval"):
        _live.check_interval("top", bad)
