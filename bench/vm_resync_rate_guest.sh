#!/bin/bash
# Guest side of bench/vm_resync_rate.py: a raid5 initial resync held at 1 MB/s for about 60 s
# under `mdtrace record`, with direct writes to it meanwhile (raid5d then loops: many
# md_check_recovery calls).  The host counts events per second per array in the trace (issue 12:
# change-only md_check_recovery reporting, <= 1 event/s per array while the resync runs).
set -u
out=$MDTRACE_OUT/bench; mkdir -p "$out"
src=/mnt/src
modprobe raid456
source "$src/tests/vm/guest/record.sh"
now() { cut -d' ' -f1 /proc/uptime; }
echo 1000 > /proc/sys/dev/raid/speed_limit_min; echo 1000 > /proc/sys/dev/raid/speed_limit_max
record_start "$out/resync.jsonl.gz" "$out/record.log"
echo "record ready after ${REC_READY_S}s"
t0=$(now)
mdadm --create /dev/md0 --run --force --level=5 --raid-devices=3 --size=60M \
    /dev/vdb /dev/vdc /dev/vdd || exit 1
sleep 2
t1=$(now)
dd if=/dev/zero of=/dev/md0 bs=4k count=20000 oflag=direct status=none &
ddp=$!
for ((i = 0; i < 100; i++)); do
    grep -q resync /sys/block/md0/md/sync_action || break
    sleep 1
done
t2=$(now)
wait $ddp   # not a bare wait: mdtrace record is a background job too
echo 200000 > /proc/sys/dev/raid/speed_limit_max
for ((i = 0; i < 120; i++)); do grep -q idle /sys/block/md0/md/sync_action && break; sleep 1; done
t3=$(now)
mdadm --stop /dev/md0
sleep 1
record_stop
echo "{\"create\": $t0, \"steady_from\": $t1, \"steady_to\": $t2, \"idle\": $t3}" > "$out/times.json"
echo "resync window $t1 .. $t2 (uptime s); record rc=$REC_RC"
