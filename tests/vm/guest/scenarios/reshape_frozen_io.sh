# raid5 reshape (3 -> 4 devices), frozen mid-way, then IO across the reshape position.
# mdtrace should flag F7 (IO waits while reshape cannot progress, reason FROZEN) within the
# threshold + 2 s where the kernel makes the IO wait; then `echo idle` lets the reshape resume.
md=md0
mdadm --create /dev/$md --run --level=5 --raid-devices=3 --size=64M --assume-clean \
    "${DISKS[@]:0:3}" || die "mdadm --create failed"
timeline_start $md
mdadm /dev/$md --add "${DISKS[3]}" || die "mdadm --add failed"
speed_limits 1000 2000
mdadm --grow /dev/$md --raid-devices=4 || die "mdadm --grow failed"
wait_until 60 reshape_started $md || die "reshape did not start"
wait_until 60 sync_progressed $md 8192 || log "reshape progressing slowly"
echo frozen > /sys/block/$md/md/sync_action
obs frozen "$(mdattr $md sync_action)"
sleep 1
pos=$(mdattr $md reshape_position)
obs reshape_position_frozen "$pos"
obs sync_completed_frozen "$(mdattr $md sync_completed)"
# write 8 MiB centred on the reshape position (array sectors), direct IO
start_mb=$(( pos / 2048 > 4 ? pos / 2048 - 4 : 0 ))
io_start across dd if=/dev/urandom of=/dev/$md bs=1M seek=$start_mb count=8 oflag=direct status=none
io_check across 12 || true
obs reshape_position_after_io "$(mdattr $md reshape_position)"
echo idle > /sys/block/$md/md/sync_action
obs after_idle "$(mdattr $md sync_action)"
speed_limits 1000 200000
io_check across 60 || true
wait_until 5 reshape_started $md
obs reshape_resumed "$(mdattr $md sync_action) pos=$(mdattr $md reshape_position)"
if ! wait_until 90 is_idle $md; then
    # seen on 6.1 (intermittent): the resumed reshape stops progressing for good
    obs stalled "$(mdattr $md sync_action) pos=$(mdattr $md reshape_position) done=$(mdattr $md sync_completed | tr -d ' ')"
    hang_dump
    # does the operator's remedy work?  frozen then idle, each bounded (may block for good)
    for act in frozen idle; do
        bounded 20 sh -c "echo $act > /sys/block/$md/md/sync_action"
        obs "remedy_$act" "rc=$? $(mdattr $md sync_action) pos=$(mdattr $md reshape_position)"
    done
    wait_until 60 is_idle $md && obs after_remedy "$(mdattr $md sync_action) raid_disks=$(mdattr $md raid_disks)"
    die "reshape stalled after idle (remedy: $(mdattr $md sync_action))"
fi
obs finished "$(mdattr $md sync_action) raid_disks=$(mdattr $md raid_disks)"
mdadm --stop /dev/$md && obs stopped yes
