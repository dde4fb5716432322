# Healthy raid5 initial resync: NEEDED -> RUNNING -> md_do_sync -> DONE -> reap, no findings.
md=md0
speed_limits 1000 4000   # slow enough to see it running, released below
mdadm --create /dev/$md --run --force --level=5 --raid-devices=3 --size=32M "${DISKS[@]:0:3}" || die "mdadm --create failed"
timeline_start $md
obs level "$(mdattr $md level)"
wait_until 10 is_action $md resync && obs started resync
sleep 1
speed_limits 1000 200000
wait_until 180 is_idle $md || die "resync did not finish in 180 s"
obs finished "$(mdattr $md sync_action)"
obs mismatch_cnt "$(mdattr $md mismatch_cnt)"
obs degraded "$(mdattr $md degraded)"
obs last_sync_action "$(mdattr $md last_sync_action)"
sleep 1
mdadm --stop /dev/$md && obs stopped yes
