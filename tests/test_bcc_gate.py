"""User space's half of the per-IO gate (mdtrace/sources/bcc_gate.py)."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

from mdtrace.sources.bcc_gate import IoGateForce, reshape_positions


def _md(root: Path, name: str, pos: str) -> None:
    d = root / "block" / name / "md"
    d.mkdir(parents=True)
    (d / "reshape_position").write_text(pos + "\n")


def test_reshape_positions_lists_only_arrays_with_one(tmp_path: Path) -> None:
    _md(tmp_path, "md0", "none")
    _md(tmp_path, "md1", "12288")
    (tmp_path / "block" / "vda").mkdir(parents=True)
    assert reshape_positions(tmp_path) == {"md1": "12288"}


class _Leaf(ctypes.Structure):
    _fields_ = [("force", ctypes.c_uint64), ("on_since", ctypes.c_uint64)]


class _KLeaf(ctypes.Structure):
    _fields_ = [("count", ctypes.c_int64), ("on_since", ctypes.c_uint64)]


class _Table(dict):
    def __init__(self, leaf: type) -> None:
        super().__init__()
        self.Leaf = leaf
        self[0] = leaf()

    def __getitem__(self, k: object) -> object:
        return super().__getitem__(getattr(k, "value", k))

    def __setitem__(self, k: object, v: object) -> None:
        super().__setitem__(getattr(k, "value", k), v)


def _bpf(count: int) -> dict[bytes, _Table]:
    k = _Table(_KLeaf)
    k[0].count = count
    return {b"io_gate_user": _Table(_Leaf), b"io_gate": k}


def test_force_follows_sysfs_and_keeps_an_earlier_opening(tmp_path: Path) -> None:
    bpf = _bpf(0)
    gate = IoGateForce(bpf, tmp_path)
    assert gate.refresh() is False and bpf[b"io_gate_user"][0].force == 0
    _md(tmp_path, "md0", "4096")
    t0 = time.monotonic_ns()
    assert gate.refresh() is True
    leaf = bpf[b"io_gate_user"][0]
    assert leaf.force == 1 and leaf.on_since >= t0
    (tmp_path / "block" / "md0" / "md" / "reshape_position").write_text("none\n")
    assert gate.refresh() is False
    assert bpf[b"io_gate_user"][0].force == 0 and bpf[b"io_gate_user"][0].on_since == leaf.on_since

    # already open through the kernel's count: forcing must not distrust older slots
    bpf = _bpf(1)
    gate = IoGateForce(bpf, tmp_path)
    (tmp_path / "block" / "md0" / "md" / "reshape_position").write_text("8192\n")
    assert gate.refresh() is True
    assert bpf[b"io_gate_user"][0].force == 1 and bpf[b"io_gate_user"][0].on_since == 0
