# lvm raid5 LV (dm-raid), `lvconvert --stripes` reshape with IO running, dmsetup suspend/resume
# mid-reshape, then lvchange --syncaction check/repair.  Records what the kernel does.
vg=mdtvg; lv=r5; dm=$vg-$lv
pvcreate -q -y "${DISKS[@]}" >/dev/null || die "pvcreate failed"
vgcreate -q $vg "${DISKS[@]}" >/dev/null || die "vgcreate failed"
speed_limits 1000 4000   # keep the initial sync running long enough to freeze it
lvcreate -q -y --type raid5 -i 2 -L 128M -n $lv $vg "${DISKS[@]:0:3}" >/dev/null \
    || die "lvcreate --type raid5 failed"
obs created "$(dmsetup status $dm)"
# frozen / idle during the initial sync, through the dm-raid message interface
for act in frozen idle; do
    dmsetup message $dm 0 $act 2> "$SDIR/msg_$act.err"
    rc=$?; sleep 1
    obs "msg_$act" "rc=$rc $(dmsetup status $dm | cut -d' ' -f6-8)"
done
# 6.12 (dm-raid after the 6.9 series): "frozen"/"idle" stop the sync, then fail with EINVAL and
# leave it idle, part-synced; nothing restarts it.  "resync" does (sets MD_RECOVERY_NEEDED).
if dmsetup status $dm | grep -qw idle && ! dmsetup status $dm | grep -q ' 131072/131072 '; then
    obs sync_left_idle "$(dmsetup status $dm | cut -d' ' -f6-8)"
    dmsetup message $dm 0 resync 2> "$SDIR/msg_resync.err"
    rc=$?; sleep 1
    obs msg_resync "rc=$rc $(dmsetup status $dm | cut -d' ' -f6-8)"
fi
speed_limits 1000 200000
wait_until 120 bash -c "[[ \$(lvs --noheadings -o sync_percent $vg/$lv | tr -d ' ') == 100.00 ]]" \
    || die "initial sync did not finish"
obs synced "$(dmsetup status $dm | cut -d' ' -f4-8)"
for act in check repair; do
    lvchange -q --syncaction $act $vg/$lv && obs "syncaction_$act" "$(dmsetup status $dm | cut -d' ' -f6-8)"
    wait_until 60 bash -c "dmsetup status $dm | grep -qw idle" && obs "${act}_done" "$(dmsetup status $dm | cut -d' ' -f6-8)"
done
speed_limits 1000 4000
io_start fio fio --name=w --filename=/dev/$vg/$lv --rw=randwrite --bs=4k --direct=1 \
    --ioengine=psync --time_based --runtime=40 --size=96M
if lvconvert -q -y --stripes 3 $vg/$lv > "$SDIR/lvconvert.log" 2>&1; then
    obs lvconvert "ok"
else
    obs lvconvert "failed: $(tail -1 "$SDIR/lvconvert.log")"
fi
wait_until 60 bash -c "dmsetup status $dm | grep -qw reshape" && obs reshaping "$(dmsetup status $dm | cut -d' ' -f4-8)"
sleep 2
obs before_suspend "$(dmsetup status $dm | cut -d' ' -f4-8)"
t0=$(now)
if timeout 60 dmsetup suspend $dm; then
    obs suspend "ok in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s"
else
    obs suspend "failed/timed out rc=$?"
fi
obs suspended_status "$(dmsetup status $dm | cut -d' ' -f4-8)"
sleep 3
obs suspended_status_later "$(dmsetup status $dm | cut -d' ' -f4-8)"
t0=$(now)
timeout 60 dmsetup resume $dm && obs resume "ok in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s" \
    || obs resume "failed/timed out"
speed_limits 1000 200000
io_check fio 60 || true
if wait_until 180 bash -c "dmsetup status $dm | grep -qw idle"; then
    obs reshape_done "$(dmsetup status $dm | cut -d' ' -f3-8)"
else
    obs reshape_done "no: $(dmsetup status $dm | cut -d' ' -f3-8)"
fi
obs stripes "$(lvs --noheadings -o stripes $vg/$lv | tr -d ' ')"
