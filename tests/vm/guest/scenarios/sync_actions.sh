# idle / frozen / check / repair through sysfs during a sync, on a native md raid5.
md=md0
speed_limits 1000 4000
mdadm --create /dev/$md --run --force --level=5 --raid-devices=3 --size=64M "${DISKS[@]:0:3}" \
    || die "mdadm --create failed"
timeline_start $md
wait_until 10 is_action $md resync && obs started resync
sleep 2
for act in frozen idle; do
    echo $act > /sys/block/$md/md/sync_action
    sleep 1.5
    obs "after_$act" "$(mdattr $md sync_action) done=$(mdattr $md sync_completed | tr -d ' ')"
done
speed_limits 1000 200000
wait_until 120 is_idle $md || die "resync did not finish after idle"
obs resync_done "$(mdattr $md sync_action)"
for act in check repair; do
    speed_limits 1000 4000
    echo $act > /sys/block/$md/md/sync_action
    wait_until 5 is_action $md $act
    obs "running_$act" "$(mdattr $md sync_action)"
    sleep 1
    echo idle > /sys/block/$md/md/sync_action
    wait_until 20 is_idle $md
    obs "${act}_idle" "$(mdattr $md sync_action) last=$(mdattr $md last_sync_action)"
done
speed_limits 1000 200000
echo check > /sys/block/$md/md/sync_action
wait_until 5 is_action $md check
wait_until 120 is_idle $md || die "check did not finish"
obs check_done "mismatch_cnt=$(mdattr $md mismatch_cnt) last=$(mdattr $md last_sync_action)"
mdadm --stop /dev/$md && obs stopped yes
