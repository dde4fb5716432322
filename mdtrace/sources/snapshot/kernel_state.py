"""Which reader gives diagnose the kernel's own view of each mddev: /proc/kcore first (no
compile), the BPF probe where kcore cannot be read but BPF may (bpf_state.py), else none.

One rule each: kcore.py reads, bpf_state.py fires and copies, both decode with
kcore.read_mddev; this module only chooses, and says why in one line when neither can.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from mdtrace.kernel.offsets import BtfSet
from mdtrace.sources.snapshot import bpf_state, kcore
from mdtrace.sources.snapshot.kcore import KernelStateResult

Reader = Callable[..., KernelStateResult]

# lockdown's confidentiality level forbids LOCKDOWN_KCORE, LOCKDOWN_KPROBES and
# LOCKDOWN_BPF_READ_KERNEL alike (include/linux/security.h: all above LOCKDOWN_INTEGRITY_MAX);
# integrity mode allows all three
LOCKDOWN_NOTE = ("BPF cannot read kernel memory either in that mode (LOCKDOWN_KPROBES, "
                 "LOCKDOWN_BPF_READ_KERNEL): no fallback")


def no_fallback(kcore_res: KernelStateResult, sys_root: Path) -> str:
    """Why the BPF probe would fail the same way ('' = worth a try)."""
    if kcore_res.ok:
        return "not needed"
    if kcore.lockdown_mode(sys_root) == "confidentiality":
        return LOCKDOWN_NOTE
    if kcore_res.reason.startswith(("no usable BTF", "BTF of md_mod")):
        return "the probe needs the same BTF"
    return ""


def read_kernel_state_any(sys_root: Path | str = "/sys", proc_root: Path | str = "/proc", *,
                          by_kcore: Reader = kcore.read_kernel_state,
                          by_probe: Reader = bpf_state.read_by_probe,
                          announce: bpf_state.Announce | None = None,
                          load_btf: Callable[[Path], BtfSet] = BtfSet.from_dir,
                          ) -> KernelStateResult:
    """/proc/kcore, then (where that failed for a reason BPF does not share) the probe; the
    BTF is parsed once for both."""
    sys_root, proc_root = Path(sys_root), Path(proc_root)
    load = functools.cache(load_btf)
    first = by_kcore(sys_root, proc_root, load_btf=load)
    if first.ok:
        return first
    why = no_fallback(first, sys_root)
    if why:
        first.reason = f"{first.reason}; {why}"
        return first
    second = by_probe(sys_root, proc_root, load_btf=load, announce=announce)
    if not second.ok:
        return KernelStateResult(reason=f"{first.reason}; {second.reason}",
                                 timings={**first.timings, **second.timings})
    second.fallback_from = first.reason
    second.timings = {**first.timings, **second.timings}
    return second


__all__ = ["LOCKDOWN_NOTE", "no_fallback", "read_kernel_state_any"]
