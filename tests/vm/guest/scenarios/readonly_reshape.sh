# raid5 reshape interrupted by `mdadm --readonly`, then reads across the reshape position.
# F2-like state (read-only during reshape) and F7 if the read waits.
md=md0
mdadm --create /dev/$md --run --level=5 --raid-devices=3 --size=64M --assume-clean \
    "${DISKS[@]:0:3}" || die "mdadm --create failed"
timeline_start $md
mdadm /dev/$md --add "${DISKS[3]}" || die "mdadm --add failed"
speed_limits 1000 2000
mdadm --grow /dev/$md --raid-devices=4 || die "mdadm --grow failed"
wait_until 60 reshape_started $md || die "reshape did not start"
wait_until 60 sync_progressed $md 8192 || log "reshape progressing slowly"
# udev probes md0 after the grow's change uevent (blkid has it open): md_set_readonly then
# refuses with EBUSY, "md: md0 still in use" (CI 2026-12-03, 6.1; it also unfreezes).  Settle
# and try again, as an engineer would; a refusal that lasts is still recorded as one.
for try in 1 2 3 4 5; do
    udevadm settle -t 10 2>/dev/null || true
    mdadm --readonly /dev/$md 2> "$SDIR/readonly.err" && break
    log "mdadm --readonly refused (try $try): $(head -1 "$SDIR/readonly.err")"
    sleep 0.5
done
if [[ $(cat /sys/block/$md/ro) == 1 ]]; then
    obs readonly "ok ro=1 state=$(mdattr $md array_state) tries=$try"
else
    obs readonly "refused: $(head -1 "$SDIR/readonly.err") tries=$try"
fi
sleep 1
pos=$(mdattr $md reshape_position)
obs reshape_position_ro "$pos"
obs sync_action_ro "$(mdattr $md sync_action)"
start_mb=$(( pos / 2048 > 4 ? pos / 2048 - 4 : 0 ))
io_start across dd if=/dev/$md of=/dev/null bs=1M skip=$start_mb count=8 iflag=direct status=none
io_check across 12 || true
if mdadm --readwrite /dev/$md 2> "$SDIR/readwrite.err"; then
    obs readwrite "ok state=$(mdattr $md array_state)"
else
    obs readwrite "refused: $(head -1 "$SDIR/readwrite.err")"
fi
speed_limits 1000 200000
io_check across 60 || true
wait_until 200 is_idle $md || die "reshape did not finish in 200 s after --readwrite"
obs finished "$(mdattr $md sync_action) raid_disks=$(mdattr $md raid_disks)"
mdadm --stop /dev/$md && obs stopped yes
