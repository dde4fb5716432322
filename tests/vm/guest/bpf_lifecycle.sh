#!/bin/bash
# Guest: BPF layer check (tests/vm/test_bpf_guest.py).  Starts `mdtrace record` (lifecycle,
# dm, reshape IO and --locks), creates a raid5 that resyncs, stops it, then writes the trace,
# the recorder's log and a probe listing to $MDTRACE_OUT/bpf/.
set -u
out=$MDTRACE_OUT/bpf
mkdir -p "$out"
modprobe raid456; modprobe dm-raid
[[ -d /sys/kernel/debug/kprobes ]] || mount -t debugfs none /sys/kernel/debug 2>/dev/null
disks=(/dev/vdb /dev/vdc /dev/vdd)
for d in "${disks[@]}"; do mdadm --zero-superblock "$d" >/dev/null 2>&1; wipefs -aq "$d"; done
t0=$(cut -d' ' -f1 /proc/uptime)
mdtrace record -o "$out/trace.jsonl.gz" --locks --io-threshold-ms 200 > "$out/record.log" 2>&1 &
rec=$!
for i in $(seq 1 300); do
    grep -q "recording to" "$out/record.log" && break
    kill -0 $rec 2>/dev/null || break
    sleep 0.2
done
echo "record ready after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{print b-a}') s"
cat /sys/kernel/debug/kprobes/list > "$out/kprobes_list.txt" 2>/dev/null
echo 1000 > /proc/sys/dev/raid/speed_limit_min; echo 4000 > /proc/sys/dev/raid/speed_limit_max
mdadm --create /dev/md0 --run --force --level=5 --raid-devices=3 --size=16M "${disks[@]}"
sleep 2
echo 200000 > /proc/sys/dev/raid/speed_limit_max
for i in $(seq 1 300); do [[ $(cat /sys/block/md0/md/sync_action) == idle ]] && break; sleep 0.2; done
cat /proc/mdstat
dd if=/dev/zero of=/dev/md0 bs=64k count=64 oflag=direct status=none
sleep 1.5
mdadm --stop /dev/md0
sleep 1
kill -INT $rec
for i in $(seq 1 150); do kill -0 $rec 2>/dev/null || break; sleep 0.2; done
wait $rec; echo "record rc=$?" | tee "$out/record.rc"
cat "$out/record.log"
python3 - "$out/trace.jsonl.gz" <<'PY' > "$out/events.txt"
import sys
from mdtrace.trace import TraceReader
from mdtrace.events import describe
r = TraceReader(sys.argv[1])
for ev in r:
    d = describe(ev)
    print(d["kind"], d["array"], d.get("comm"), d.get("state", {}).get("recovery"),
          d.get("state", {}).get("sync_thread"), d.get("args", {}))
PY
grep -v "^probe_status" "$out/events.txt" | head -80
echo "kinds:"; awk '{print $1}' "$out/events.txt" | sort | uniq -c
