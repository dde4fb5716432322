# zoo scenario: an lvm raid5 LV (dm-raid), `lvconvert --stripes 3` (lvm2's reshape: table
# reloads around dm-raid's rs_start_reshape, which sets MD_RECOVERY_WAIT), then a dmsetup
# suspend/resume mid-reshape and the reshape to its end: the steps of lvm2's
# shell/lvconvert-raid-reshape.sh.  Every step is bounded; a step that does not return is the
# hang: evidence is dumped, the recorder gets HANG_SETTLE_S more, and the scenario ends
# (obs outcome = hang:<step>).  Sourced by run_scenarios.sh with lib.sh.
vg=mdtvg; lv=r5; dm=$vg-$lv
settle=${HANG_SETTLE_S:-20}
hang() {  # hang STEP: the step never returned
    obs outcome "hang:$1"
    hang_dump
    # what `mdtrace diagnose` (stacks, sysfs, kernel state) says about the hang, while it lasts
    bounded 150 sh -c 'mdtrace diagnose --format json -o "$1/diagnose.json" 2> "$1/diagnose.err"' _ "$SDIR"
    obs diagnose_rc "$?"
    sleep "$settle"
    obs after_settle "$(dmsetup status $dm 2>/dev/null | cut -d' ' -f4-8)"
    exit 0
}
pvcreate -q -y "${DISKS[@]}" >/dev/null || die "pvcreate failed"
vgcreate -q $vg "${DISKS[@]}" >/dev/null || die "vgcreate failed"
bounded 120 lvcreate -q -y --type raid5 -i 2 -L 64M -n $lv $vg "${DISKS[@]:0:3}" >/dev/null
rc=$?; ((rc == 124)) && hang lvcreate; ((rc == 0)) || die "lvcreate failed rc=$rc"
obs created "$(dmsetup status $dm | cut -d' ' -f4-8)"
wait_until 120 bash -c "[[ \$(lvs --noheadings -o sync_percent $vg/$lv | tr -d ' ') == 100.00 ]]" \
    || die "initial sync did not finish"
obs synced "$(dmsetup status $dm | cut -d' ' -f4-8)"
speed_limits 1000 3000
bounded 120 lvconvert -q -y --stripes 3 $vg/$lv > "$SDIR/lvconvert.log" 2>&1
rc=$?; ((rc == 124)) && hang lvconvert
obs lvconvert "rc=$rc $(tail -1 "$SDIR/lvconvert.log")"
obs after_lvconvert "$(dmsetup status $dm | cut -d' ' -f4-8)"
wait_until 30 bash -c "dmsetup status $dm | grep -qw reshape" \
    && obs reshaping "$(dmsetup status $dm | cut -d' ' -f4-8)"
sleep 2
t0=$(now)
bounded 60 dmsetup suspend $dm
rc=$?; ((rc == 124)) && hang suspend
obs suspend "rc=$rc in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s"
obs suspended_status "$(dmsetup status $dm | cut -d' ' -f4-8)"
sleep 2
bounded 60 dmsetup resume $dm
rc=$?; ((rc == 124)) && hang resume
obs resume "rc=$rc"
speed_limits 1000 200000
if wait_until 180 bash -c "dmsetup status $dm | grep -qw idle && ! dmsetup status $dm | grep -qw reshape"; then
    obs reshape_done "$(dmsetup status $dm | cut -d' ' -f3-8)"
else
    obs reshape_done "no: $(dmsetup status $dm | cut -d' ' -f3-8)"
fi
obs stripes "$(lvs --noheadings -o stripes $vg/$lv | tr -d ' ')"
bounded 60 lvremove -q -y $vg/$lv
rc=$?; ((rc == 124)) && hang lvremove
obs lvremove "rc=$rc"
obs outcome completed
