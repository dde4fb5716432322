#!/bin/bash
# Guest side of bench/vm_fio.py: fio 4 KiB randwrite on an md raid5 (4 virtio disks) untraced,
# traced by `mdtrace record`, traced by a naive per-bio bcc probe, untraced again; then the F7
# detection latency (frozen reshape + IO across the position under `mdtrace record`).
# Results: $MDTRACE_OUT/bench/*.json.   env: RUNTIME (s per fio run, default 20)
set -u
out=$MDTRACE_OUT/bench; mkdir -p "$out"
src=/mnt/src
rt=${RUNTIME:-20}
modprobe raid456
now() { cut -d' ' -f1 /proc/uptime; }
mdadm --create /dev/md0 --run --level=5 --raid-devices=4 --size=160M --assume-clean \
    /dev/vdb /dev/vdc /dev/vdd /dev/vde || exit 1
fio_run() {  # fio_run NAME
    fio --name="$1" --filename=/dev/md0 --rw=randwrite --bs=4k --direct=1 --ioengine=libaio \
        --iodepth=16 --numjobs=1 --time_based --runtime="$rt" --size=400M --randrepeat=1 \
        --group_reporting --output-format=json > "$out/fio_$1.json" 2> "$out/fio_$1.err"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], 'iops', round(j['jobs'][0]['write']['iops'], 1))" "$out/fio_$1.json" "$1"
}
wait_ready() {  # wait_ready PID LOGFILE [READYFILE] - up to 120 s
    local i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$1" 2>/dev/null || return 1
        [[ -n ${3:-} && -s ${3:-/nonexistent} ]] && return 0
        grep -qiE 'recording|attached|ready' "$2" 2>/dev/null && return 0
        sleep 0.2
    done
    return 0
}
source "$src/tests/vm/guest/record.sh"
# exact BPF cost: the kernel's per-program run time and run count (issue 17), snapshotted
# around each traced fio run; bench/vm_fio.py takes the differences
sysctl -qw kernel.bpf_stats_enabled=1
bpf_snap() { bpftool prog show -j > "$out/bpf_$1.json" 2> /dev/null; }
fio_run untraced1
if record_available; then
    record_start "$out/bench_trace.jsonl.gz" "$out/record.log"
    echo "record ready after ${REC_READY_S}s"
    if ((REC_PID > 0)); then bpf_snap mdtrace_before; fio_run mdtrace; bpf_snap mdtrace_after; fi
    record_stop
    echo "record rc=$REC_RC trace $(stat -c %s "$out/bench_trace.jsonl.gz" 2>/dev/null) bytes"
else
    echo "mdtrace record not available: traced run skipped"
fi
python3 "$src/bench/vm_naive_probe.py" /tmp/naive.ready > "$out/naive.json" 2> "$out/naive.err" &
np=$!
if wait_ready $np "$out/naive.err" /tmp/naive.ready; then
    bpf_snap naive_before; fio_run naive; bpf_snap naive_after
fi
kill -INT $np; wait $np; echo "naive probe: $(cat "$out/naive.json") $(tail -2 "$out/naive.err")"
fio_run untraced2
mdadm --stop /dev/md0

# F7 detection latency: frozen reshape, then IO across the reshape position, under record.
if record_available; then
    for d in /dev/vd[b-e]; do mdadm --zero-superblock $d 2>/dev/null; done
    mdadm --create /dev/md0 --run --level=5 --raid-devices=3 --size=64M --assume-clean \
        /dev/vdb /dev/vdc /dev/vdd
    mdadm /dev/md0 --add /dev/vde
    echo 1000 > /proc/sys/dev/raid/speed_limit_min; echo 2000 > /proc/sys/dev/raid/speed_limit_max
    record_start "$out/f7.jsonl.gz" "$out/record_f7.log"
    MDADM_NO_SYSTEMCTL=1 mdadm --grow /dev/md0 --raid-devices=4
    # freeze once the reshape has moved 4 MiB per device (freezing a few seconds after the grow,
    # before that, crashes 6.12.117: docs/kernels.md, tests/vm/guest/repro_612_raid5d_oops.sh)
    for ((i = 0; i < 300; i++)); do
        c=$(cut -d' ' -f1 /sys/block/md0/md/sync_completed)
        [[ $c =~ ^[0-9]+$ ]] && ((c >= 8192)) && break
        sleep 0.2
    done
    echo frozen > /sys/block/md0/md/sync_action; sleep 1
    pos=$(cat /sys/block/md0/md/reshape_position)
    t_io=$(now)
    echo "{\"io_start_uptime\": $t_io, \"reshape_position\": $pos}" > "$out/f7_io.json"
    dd if=/dev/urandom of=/dev/md0 bs=1M seek=$(( pos / 2048 > 4 ? pos / 2048 - 4 : 0 )) count=8 \
        oflag=direct status=none &
    ddpid=$!
    sleep 15
    echo idle > /sys/block/md0/md/sync_action
    echo 200000 > /proc/sys/dev/raid/speed_limit_max
    for ((i = 0; i < 60; i++)); do kill -0 $ddpid 2>/dev/null || break; sleep 1; done
    if kill -0 $ddpid 2>/dev/null; then
        echo "F7 IO still blocked 60 s after idle (kernel: see console.log)"
    else
        wait $ddpid; echo "F7 IO finished rc=$? after idle"
    fi
    dmesg | grep -A12 'kernel BUG' | head -14
    sleep 2
    record_stop
    mdtrace report --format json "$out/f7.jsonl.gz" > "$out/f7_report.json" 2> "$out/f7_report.err"
    # may block for good after a kernel bug: never wait for it
    mdadm --stop /dev/md0 > /dev/null 2>&1 < /dev/null &
    sleep 5
fi
exit 0
