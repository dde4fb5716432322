#!/bin/bash
# Reproducer (no probes, no mdtrace): 6.12.117 "kernel BUG at mm/slub.c:550" in raid5d /
# md_end_clone_io after a direct write across a frozen reshape position of a freshly grown raid5.
# Run: python -m vmtest run-script --kernel 6.12 --timeout 360 tests/vm/guest/repro_612_raid5d_oops.sh
# Exit 3 = oops reproduced (the guest kernel is then broken: the script ends the boot).
modprobe raid456
for i in 1 2 3; do
    for d in /dev/vd[b-e]; do mdadm --zero-superblock $d 2>/dev/null; wipefs -aq $d; done
    mdadm --create /dev/md0 --run --level=5 --raid-devices=3 --size=64M --assume-clean /dev/vdb /dev/vdc /dev/vdd 2>/dev/null
    mdadm /dev/md0 --add /dev/vde
    echo 1000 > /proc/sys/dev/raid/speed_limit_min; echo 2000 > /proc/sys/dev/raid/speed_limit_max
    MDADM_NO_SYSTEMCTL=1 mdadm --grow /dev/md0 --raid-devices=4
    sleep 4
    echo frozen > /sys/block/md0/md/sync_action; sleep 1
    pos=$(cat /sys/block/md0/md/reshape_position)
    dd if=/dev/urandom of=/dev/md0 bs=1M seek=$(( pos / 2048 > 4 ? pos / 2048 - 4 : 0 )) count=8 oflag=direct status=none &
    sleep 15
    echo idle > /sys/block/md0/md/sync_action
    echo 200000 > /proc/sys/dev/raid/speed_limit_max
    for j in $(seq 60); do kill -0 $! 2>/dev/null || break; sleep 1; done
    if dmesg | grep -q 'kernel BUG'; then echo "attempt $i: OOPS"; dmesg | grep -A3 'kernel BUG'; exit 3; fi
    kill -0 $! 2>/dev/null && echo "attempt $i: dd still blocked" || echo "attempt $i: ok pos=$pos"
    for j in $(seq 60); do [[ $(cat /sys/block/md0/md/sync_action) == idle ]] && break; sleep 1; done
    mdadm --stop /dev/md0
done
