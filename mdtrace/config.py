"""Engine thresholds.  Defaults are what a storage engineer would page on; all configurable
(``--threshold NAME=SECONDS`` on the CLI, or a TOML file via ``--config``)."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mdtrace.errors import MdtraceError


@dataclass(frozen=True)
class EngineConfig:
    # F1/F2: DONE set, daemon ran, still not reaped after this long
    reap_grace_s: float = 5.0
    # F3: md_do_sync returned without DONE and RUNNING still set after this long
    done_grace_s: float = 2.0
    # F7: IO across the reshape position blocked longer than this while reshape can't progress
    io_wait_s: float = 5.0
    # F10: progress unchanged for this long while running and not frozen
    stall_s: float = 60.0
    # F9: a wait-for cycle must persist this long before it is reported
    cycle_s: float = 1.0
    # F12-F15 (snapshot stacks): a task seen blocked this long in md/dm code is reported even
    # when no cause is visible (with a visible cause, such as a read-only or suspended array,
    # at once)
    task_blocked_s: float = 5.0
    # bounded memory: evidence events kept per finding, history points kept per array
    max_evidence: int = 32
    max_history: int = 2000
    # forgetting (engine/retention.py): a stopped array and a closed finding leave a live
    # engine's memory (and the exporter's series) this long after the stop / close
    retention_s: float = 300.0

    def with_overrides(self, overrides: dict[str, float]) -> EngineConfig:
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise MdtraceError(
                f"unknown threshold {', '.join(bad)} (known: {', '.join(sorted(names))})")
        return dataclasses.replace(self, **overrides)


def parse_threshold(spec: str) -> tuple[str, float]:
    """'io_wait_s=2.5' -> ('io_wait_s', 2.5) with a one-line error otherwise."""
    name, sep, value = spec.partition("=")
    if not sep:
        raise MdtraceError(f"bad --threshold {spec!r}: expected NAME=VALUE, e.g. io_wait_s=2")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise MdtraceError(f"bad --threshold {spec!r}: {value!r} is not a number") from None


def load_config(path: str | None, overrides: list[str] | tuple[str, ...] = ()) -> EngineConfig:
    cfg = EngineConfig()
    values: dict[str, float] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise MdtraceError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MdtraceError(f"{path}: not valid TOML ({exc})") from None
        section = data.get("thresholds", data)
        for k, v in section.items():
            if not isinstance(v, int | float):
                raise MdtraceError(f"{path}: threshold {k} must be a number")
            values[k] = float(v)
    for spec in overrides:
        k, v = parse_threshold(spec)
        values[k] = v
    int_fields = {"max_evidence", "max_history"}
    conv = {k: (int(v) if k in int_fields else v) for k, v in values.items()}
    return cfg.with_overrides(conv)
