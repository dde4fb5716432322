"""Guest-side baseline for bench/vm_fio.py: the naive way to trace md IO with bcc.

One perf-buffer event per raid5_make_request call (per bio), each read in Python: the overhead
mdtrace must beat.  Writes READY_FILE once attached, counts events until SIGINT/SIGTERM, then
prints {"events": N, "lost": L} as JSON.  Runs with the guest's system python3 (bcc 0.26).
"""

from __future__ import annotations

import json
import signal
import sys

from bcc import BPF  # type: ignore[import-not-found]

PROG = b"""
#include <uapi/linux/ptrace.h>
struct data_t { u64 ts; u64 bio; u32 pid; u32 sectors; };
BPF_PERF_OUTPUT(events);
int on_make_request(struct pt_regs *ctx) {
    struct data_t d = {};
    d.ts = bpf_ktime_get_ns();
    d.bio = PT_REGS_PARM2(ctx);
    d.pid = bpf_get_current_pid_tgid() >> 32;
    events.perf_submit(ctx, &d, sizeof(d));
    return 0;
}
"""


def main() -> int:
    ready = sys.argv[1]
    b = BPF(text=PROG)
    b.attach_kprobe(event=b"raid5_make_request", fn_name=b"on_make_request")
    counts = {"events": 0, "lost": 0}

    def on_event(cpu: int, data: int, size: int) -> None:
        ev = b["events"].event(data)
        counts["events"] += 1 if ev.ts else 0

    def on_lost(n: int) -> None:
        counts["lost"] += n

    b["events"].open_perf_buffer(on_event, page_cnt=64, lost_cb=on_lost)
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    with open(ready, "w") as fh:
        fh.write("attached\n")
    while not stop:
        b.perf_buffer_poll(timeout=200)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
