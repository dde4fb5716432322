# Healthy raid1 recovery after mdadm --fail/--remove/--add: full lifecycle, no findings.
md=md0
mdadm --create /dev/$md --run --level=1 --raid-devices=2 --size=32M --assume-clean \
    --metadata=1.2 "${DISKS[@]:0:2}" || die "mdadm --create failed"
timeline_start $md
dd if=/dev/urandom of=/dev/$md bs=1M count=8 oflag=direct status=none
mdadm /dev/$md --fail "${DISKS[1]}" && obs failed "${DISKS[1]}"
obs degraded_after_fail "$(mdattr $md degraded)"
mdadm /dev/$md --remove "${DISKS[1]}" && obs removed "${DISKS[1]}"
mdadm --zero-superblock "${DISKS[1]}"
mdadm /dev/$md --add "${DISKS[1]}" && obs added "${DISKS[1]}"
wait_until 10 is_action $md recover && obs started recover
wait_until 180 is_idle $md || die "recovery did not finish in 180 s"
sleep 0.5
obs finished "$(mdattr $md sync_action)"
obs degraded "$(mdattr $md degraded)"
obs last_sync_action "$(mdattr $md last_sync_action)"
mdadm --stop /dev/$md && obs stopped yes
