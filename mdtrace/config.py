"""Engine thresholds.  Defaults are what a storage engineer would page on; all configurable
(``--threshold NAME=SECONDS`` on the CLI, or a TOML file via ``--config``)."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdtrace.errors import MdtraceError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.9/3.10 (Debian 11, RHEL 9, Ubuntu 22.04): the same parser, from PyPI
    import tomli as tomllib


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

    def with_overrides(self, overrides: dict[str, float], where: str = "") -> EngineConfig:
        """A copy with ``overrides`` (checked: :func:`check_value`); ``where`` names their
        source in errors (a config file; '' for --threshold)."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise MdtraceError(
                f"unknown threshold {', '.join(bad)} (known: {', '.join(sorted(names))})")
        checked: dict[str, Any] = {k: check_value(k, v, where) for k, v in overrides.items()}
        return dataclasses.replace(self, **checked)


INT_FIELDS = frozenset({"max_evidence", "max_history"})
MAX_SECONDS = 1e9        # ~31.7 years: any threshold in nanoseconds fits in 64 bits
MAX_COUNT = 10_000_000   # evidence / history points kept: a memory bound, not a wish


def check_value(name: str, value: object, where: str = "") -> float | int:
    """A threshold as the engine needs it, or a one-line error: seconds finite, > 0 and at
    most MAX_SECONDS (NaN would flag every IO, inf overflows the nanosecond clock); counts
    whole numbers from 1 to MAX_COUNT."""
    src = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MdtraceError(f"{src}threshold {name} must be a number, not {value!r}")
    if name in INT_FIELDS:
        if not math.isfinite(value) or value != int(value) or not 1 <= value <= MAX_COUNT:
            raise MdtraceError(f"{src}threshold {name}={value!r} must be a whole number from "
                               f"1 to {MAX_COUNT:,}")
        return int(value)
    if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise MdtraceError(f"{src}threshold {name}={value!r} must be a finite number of "
                           f"seconds > 0 and at most {MAX_SECONDS:g}")
    return float(value)


def parse_threshold(spec: str) -> tuple[str, float]:
    """'io_wait_s=2.5' -> ('io_wait_s', 2.5) with a one-line error otherwise."""
    name, sep, value = spec.partition("=")
    if not sep:
        raise MdtraceError(f"bad --threshold {spec!r}: expected NAME=VALUE, e.g. io_wait_s=2")
    try:
        return name.strip(), float(value.strip())
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
        except OSError as exc:
            raise MdtraceError(f"{path}: cannot read config file ({exc.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MdtraceError(f"{path}: not valid TOML ({exc})") from None
        section = data.get("thresholds", data)
        if not isinstance(section, dict):
            raise MdtraceError(f"{path}: [thresholds] must be a table of NAME = SECONDS")
        cfg = cfg.with_overrides(dict(section), where=path)
    for spec in overrides:
        k, v = parse_threshold(spec)
        values[k] = v
    return cfg.with_overrides(values)
