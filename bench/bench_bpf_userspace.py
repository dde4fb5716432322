"""User-space cost of the BPF layer, measured on this host (no kernel needed).

Prints: BTF parse time (vmlinux + md_mod split BTF, the start-up cost of offsets), and the
decoder's throughput (raw ring-buffer records -> canonicalised Events with hashed pointers),
which bounds how many kernel events per second `mdtrace record` can absorb.
    .venv/bin/python bench/bench_bpf_userspace.py
"""

from __future__ import annotations

import time
from pathlib import Path

from mdtrace.kernel.flags import RECOVERY_6_11, FlagTable
from mdtrace.kernel.offsets import BtfSet, compute_offsets
from mdtrace.pointers import PointerHasher
from mdtrace.sources.bcc_decode import RAW, RawDecoder

DATA = Path(__file__).resolve().parents[1] / "tests/data/btf/6.12.117+deb12-amd64"


def main() -> None:
    t = time.perf_counter()
    off = compute_offsets(BtfSet.from_dir(DATA))
    print(f"btf: parse vmlinux+md_mod+raid456+dm_mod+dm_raid (zstd) and compute "
          f"{len(off.defines)} -D constants: {time.perf_counter() - t:.2f} s")
    dec = RawDecoder(FlagTable.from_enums(RECOVERY_6_11, {}), PointerHasher(),
                     ksym=lambda a: "md_check_recovery", dm_names=lambda d: "")
    recs = []
    for i in range(50_000):
        kind = (1, 2, 3, 4, 5, 9, 18)[i % 7]
        recs.append(RAW.pack(i, 0xFFFF888100000000 + (i % 8) * 4096, 1 << (i % 6), 0,
                             (1 << 64) - 1, i, 0, i, 1, 0xFFFFFFFFC0001000, 0, kind, 0, 1, 1,
                             0, 0, 5, 1, 1, 0, 0, b"md0_raid5", b"md%d" % (i % 8), b"",
                             b"resync"))
    t = time.perf_counter()
    n = sum(1 for r in recs if dec.decode(r) is not None)
    dt = time.perf_counter() - t
    print(f"decode: {n} records in {dt:.2f} s = {n / dt:,.0f} events/s "
          f"({dt / n * 1e6:.1f} us/event)")


if __name__ == "__main__":
    main()
