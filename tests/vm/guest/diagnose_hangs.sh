#!/bin/bash
# `mdtrace diagnose` on hangs that already exist (issue 11): each hang is created FIRST on the
# real kernel, mdtrace starts only afterwards; then the remedy, then a second diagnose.
#   healthy  md1 raid1 resyncing, md2 raid5 idle, md3 raid5 reshaping freely: no finding
#   stop     md4 raid1 on two dm-linear legs, resyncing; one leg `dmsetup suspend`ed, so the
#            resync IO queued on it never completes and md_do_sync cannot return; then
#            `echo idle > sync_action` blocks in the stop (6.1 kthread_stop, 6.7+
#            stop_sync_thread); remedy: `dmsetup resume` of the leg
#   lvm      an lvm raid5 LV reshaping (lvconvert --stripes 3), `dmsetup suspend` of the LV,
#            a direct write queued on it; remedy `dmsetup resume`
#   ro       raid5 reshape, `mdadm --readonly` mid-reshape; a direct write across the position
#            (what the kernel does with it is observed), a direct read across it (6.1: sleeps
#            in raid5_make_request); remedy `mdadm --readwrite` (6.12.117: may trigger the
#            raid5d double free, docs/kernels.md: then `oops` is diagnosed, F11, reboot)
# The stop hang (md: array_state_show) and the lvm hang (dm-raid: raid_status) are diagnosed
# twice: as usual (the kernel state from /proc/kcore), then with /proc/kcore masked the way
# container runtimes mask it (/dev/null bind-mounted over it, in a private mount namespace):
# the kernel state then comes from the BPF probe fallback (NAME_bpf.json; same answer).
# hung_task_timeout_secs is set to HUNG_S (10) so the kernel's own hung-task reports can be put
# side by side with diagnose's answer (docs/diagnose.md); the host expects them
# (run_script(expect_hung_tasks=True)).
# Results: $MDTRACE_OUT/diagnose/: obs.txt ("key value"), NAME.json / NAME.txt / NAME.err per
# diagnose, NAME.stacks (real /proc/PID/stack texts), dmesg.txt.
set -u
out=$MDTRACE_OUT/diagnose
rm -rf "$out"; mkdir -p "$out"
HUNG_S=${HUNG_S:-10}
now() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[diag $(now)] $*"; }
obs() { local k=$1; shift; printf '%s %s\n' "$k" "$*" >> "$out/obs.txt"; log "$k = $*"; }
beat() { echo "$(now) $*" > "$MDTRACE_OUT/heartbeat"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
wait_for() {  # wait_for SECONDS CMD...: poll every 0.2 s
    local end=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do (( $(date +%s) >= end )) && return 1; sleep 0.2; done
}
# bounded SECONDS CMD...: run CMD in the background, stop waiting after SECONDS (124; a task
# in D state cannot be killed, timeout(1) would hang with it)
bounded() {
    local limit=$(( $1 * 5 )) i p; shift
    "$@" & p=$!
    for ((i = 0; i < limit; i++)); do
        kill -0 "$p" 2>/dev/null || { wait "$p"; return $?; }
        sleep 0.2
    done
    return 124
}
oopsed() { dmesg | grep -qE 'kernel BUG at|Oops: |general protection fault'; }
speed() { echo "$1" > /proc/sys/dev/raid/speed_limit_min; echo "$2" > /proc/sys/dev/raid/speed_limit_max; }
# asleep_in_raid5 PID: PID's stack is in raid5_make_request and its written bytes stood still
# for 3 s (passing through it on the way to the window is not asleep in it)
asleep_in_raid5() {
    local w1 w2
    grep -qs raid5_make_request "/proc/$1/stack" || return 1
    w1=$(awk '/^wchar/ { print $2 }' "/proc/$1/io" 2>/dev/null); sleep 3
    w2=$(awk '/^wchar/ { print $2 }' "/proc/$1/io" 2>/dev/null)
    [[ -n $w1 && $w1 == "$w2" ]] && grep -qs raid5_make_request "/proc/$1/stack"
}
mdattr() { cat "/sys/block/$1/md/$2" 2>/dev/null; }
done_ge() { local c; c=$(mdattr "$1" sync_completed | cut -d' ' -f1); [[ $c =~ ^[0-9]+$ ]] && (( c >= $2 )); }

# diag NAME [FORMAT]: one `mdtrace diagnose`, timed from its start to its answer
diag() {
    local name=$1 fmt=${2:-json} t0 rc ext
    ext=$([[ $fmt == json ]] && echo json || echo txt)
    beat "diagnose $name"
    t0=$(now)
    MDTRACE_TIMINGS=1 bounded 120 $MDT diagnose --format "$fmt" -o "$out/$name.$ext" 2> "$out/$name.err"
    rc=$?
    obs "diag_$name" "rc=$rc in $(since "$t0")s at $(now)"
    obs "timings_$name" "$(grep -o 'start-up .*' "$out/$name.err")"
    return 0
}
# diag_masked NAME: the same diagnose with /proc/kcore masked (a private mount namespace:
# nothing outside it changes); one bcc compile, 60-130 s under TCG: a longer bound
diag_masked() {
    local name=$1 t0 rc
    beat "diagnose $name (kcore masked)"
    t0=$(now)
    MDTRACE_TIMINGS=1 bounded 400 unshare -m --propagation private sh -c \
        'mount --bind /dev/null /proc/kcore && exec "$@"' sh \
        $MDT diagnose --format json -o "$out/$name.json" 2> "$out/$name.err"
    rc=$?
    obs "diag_$name" "rc=$rc in $(since "$t0")s at $(now)"
    obs "timings_$name" "$(grep -o 'start-up .*' "$out/$name.err")"
    return 0
}
# stacks NAME: every task in D state or with md/dm frames: comm, state, wchan, /proc/PID/stack
# (one python3: a shell loop forks per task, ~30 s under TCG)
stacks() {
    python3 - "$out/$1.stacks" <<'PY'
import glob, re, sys
md = re.compile(r"\[(md_mod|raid456|raid1|raid10|dm_mod|dm_raid)\]")
with open(sys.argv[1], "a") as out:
    for t in sorted(glob.glob("/proc/[0-9]*/task/[0-9]*"), key=lambda p: int(p.rsplit("/", 1)[1])):
        try:
            st = open(t + "/stat").read().rpartition(")")[2].split()[0]
            stack = open(t + "/stack").read()
            comm, wchan = open(t + "/comm").read().strip(), open(t + "/wchan").read().strip()
        except OSError:
            continue
        if st == "D" or md.search(stack):
            out.write(f"== tid {t.rsplit('/', 1)[1]} comm {comm} state {st} wchan {wchan}\n{stack}")
PY
}

# mdtrace as an engineer has it: installed from the host-built wheel with its bytecode compiled
# (pip's default); without one, the shared tree (every import compiled afresh: slower)
whl=$(ls "$MDTRACE_OUT"/wheel/mdtrace-*.whl 2>/dev/null | head -1)
cd /              # not the shared tree's mdtrace/ (python puts the cwd first on sys.path)
if [[ -n $whl ]]; then
    inst=/opt/mdtrace-wheel
    rm -rf "$inst"; python3 -m zipfile -e "$whl" "$inst"
    python3 -m compileall -q "$inst" /opt/mdtrace-deps > /dev/null 2>&1
    unset PYTHONDONTWRITEBYTECODE
    export PYTHONPATH=$inst:/opt/mdtrace-deps
    printf '#!/bin/sh\nexec python3 -c %s "$@"\n' \
        "'import sys; sys.argv[0] = \"mdtrace\"; from mdtrace.cli import main; main()'" \
        > /usr/local/bin/mdtw
    chmod +x /usr/local/bin/mdtw
    MDT=mdtw
else
    MDT=mdtrace
fi
modprobe raid456; modprobe raid1; modprobe dm-raid
echo "$HUNG_S" > /proc/sys/kernel/hung_task_timeout_secs
echo -1 > /proc/sys/kernel/hung_task_warnings 2>/dev/null
echo 0 > /proc/sys/kernel/hung_task_panic 2>/dev/null
obs kernel "$(uname -r)"
obs installed_from "$(python3 -c 'import mdtrace; print(mdtrace.__file__)' 2>&1)"
obs hung_task "timeout $(cat /proc/sys/kernel/hung_task_timeout_secs) s"
D=(/dev/vd{b..o})
for d in "${D[@]}"; do wipefs -aq "$d" 2>/dev/null; done

# -- healthy: idle, resyncing, reshaping freely ---------------------------------------------------
beat healthy
speed 1000 2000
mdadm --create /dev/md1 --run --level=1 --raid-devices=2 --size=64M "${D[0]}" "${D[1]}" > "$out/mdadm.log" 2>&1
mdadm --create /dev/md2 --run --level=5 --raid-devices=3 --size=64M --assume-clean "${D[@]:2:3}" >> "$out/mdadm.log" 2>&1
mdadm --create /dev/md3 --run --level=5 --raid-devices=3 --size=64M --assume-clean "${D[@]:5:3}" >> "$out/mdadm.log" 2>&1
mdadm /dev/md3 --add "${D[8]}" >> "$out/mdadm.log" 2>&1
mdadm --grow /dev/md3 --raid-devices=4 >> "$out/mdadm.log" 2>&1
wait_for 60 sh -c '[ "$(cat /sys/block/md3/md/sync_action)" = reshape ] && [ "$(cat /sys/block/md1/md/sync_action)" = resync ]'
sleep 2
obs healthy_state "md1=$(mdattr md1 sync_action) md2=$(mdattr md2 sync_action) md3=$(mdattr md3 sync_action) pos=$(mdattr md3 reshape_position)"
diag healthy
obs healthy_after "md3=$(mdattr md3 sync_action) $(mdattr md3 sync_completed)"
for m in md1 md2 md3; do bounded 60 mdadm --stop /dev/$m > /dev/null 2>&1 || obs error "mdadm --stop $m blocked"; done
for d in "${D[@]:0:9}"; do mdadm --zero-superblock "$d" 2>/dev/null; wipefs -aq "$d" 2>/dev/null; done

# -- stop: `echo idle` blocked in the sync thread's stop -------------------------------------------
beat stop
sz=$(blockdev --getsz "${D[0]}")
dmsetup create dleg0 --table "0 $sz linear ${D[0]} 0" && dmsetup create dleg1 --table "0 $sz linear ${D[1]} 0"
mdadm --create /dev/md4 --run --level=1 --raid-devices=2 --size=64M /dev/mapper/dleg0 /dev/mapper/dleg1 >> "$out/mdadm.log" 2>&1
wait_for 60 done_ge md4 4096
t=$(now); bounded 30 dmsetup suspend dleg1; obs stop_leg_suspend "rc=$? in $(since "$t")s"
sleep 2
obs stop_state "$(mdattr md4 sync_action) $(mdattr md4 sync_completed)"
t_stop=$(now)
sh -c 'echo idle > /sys/block/md4/md/sync_action' 2> "$out/stop_echo.err" &
ECHO=$!
sleep 2
if kill -0 "$ECHO" 2>/dev/null; then
    obs stop_blocked "yes pid=$ECHO at $t_stop state=$(awk '{ sub(/^.*\) /, ""); print $1 }' /proc/$ECHO/stat)"
    diag stop_hung
    diag_masked stop_hung_bpf
    stacks stop
    # the kernel's own report of the same hang (hung_task_timeout_secs = HUNG_S)
    if wait_for $(( HUNG_S * 3 + 10 )) sh -c "dmesg | grep -q 'task sh:$ECHO blocked for more than'"; then
        obs stop_hung_task "$(dmesg | grep -m1 "task sh:$ECHO blocked for more than") seen at $(now)"
    else
        obs stop_hung_task "none within $(( HUNG_S * 3 + 10 )) s"
    fi
    # the remedy: resume the leg; the queued resync IO completes, md_do_sync returns
    t=$(now); bounded 30 dmsetup resume dleg1; obs stop_remedy "dmsetup resume dleg1 rc=$?"
    if wait_for 30 sh -c "! kill -0 $ECHO"; then wait "$ECHO"; obs stop_echo_done "rc=$? $(since "$t")s after the resume"; else obs stop_echo_done blocked; fi
    obs stop_after_state "$(mdattr md4 sync_action)"
    diag stop_after
else
    wait "$ECHO"; obs stop_blocked "no: echo idle returned rc=$?"
    bounded 30 dmsetup resume dleg1
fi
bounded 60 mdadm --stop /dev/md4 > /dev/null 2>&1 || obs error "mdadm --stop md4 blocked"
dmsetup remove dleg0; dmsetup remove dleg1
for d in "${D[@]:0:2}"; do wipefs -aq "$d" 2>/dev/null; done

# -- lvm: an lvm raid5 LV reshaping, suspended with a write queued ----------------------------------
beat lvm
V=("${D[@]:9:4}")
speed 1000 200000
# 32 MiB: the initial sync is most of this part's time under TCG (--nosync would skip it, but
# lvm2 refuses to add images to an LV_NOTSYNCED raid LV: "Can't add image to out-of-sync RAID LV")
pvcreate -q -y "${V[@]}" > "$out/lvm.log" 2>&1 && vgcreate -q lvd "${V[@]}" >> "$out/lvm.log" 2>&1 &&
    lvcreate -q -y --type raid5 -i 2 -L 32M -n r5 lvd "${V[@]:0:3}" >> "$out/lvm.log" 2>&1
wait_for 150 sh -c '[ "$(lvs --noheadings -o sync_percent lvd/r5 | tr -d " ")" = 100.00 ]'
obs lvm_synced "$(lvs --noheadings -o sync_percent lvd/r5 | tr -d ' ')"
speed 500 1000
bounded 120 lvconvert -q -y --stripes 3 lvd/r5 >> "$out/lvm.log" 2>&1; obs lvm_lvconvert "rc=$?"
wait_for 60 sh -c 'dmsetup status lvd-r5 | grep -qw reshape'
sleep 1
obs lvm_state "$(dmsetup status lvd-r5 | cut -d' ' -f3-)"
t=$(now); bounded 60 dmsetup suspend lvd-r5; obs lvm_suspend "rc=$? in $(since "$t")s"
obs lvm_suspended "$(dmsetup info -c --noheadings -o suspended lvd-r5) $(dmsetup status lvd-r5 | cut -d' ' -f3-)"
t_lvm=$(now)
dd if=/dev/zero of=/dev/mapper/lvd-r5 bs=64k count=16 oflag=direct status=none 2> "$out/lvm_dd.err" &
LDD=$!
sleep 3
if kill -0 "$LDD" 2>/dev/null; then
    obs lvm_dd "blocked pid=$LDD since $t_lvm state=$(awk '{ sub(/^.*\) /, ""); print $1 }' /proc/$LDD/stat)"
    diag lvm_hung
    diag_masked lvm_hung_bpf
    stacks lvm
    # the reshape must still be running for the chain below, and still short of its end: 16 MiB
    # per leg at 200 KB/s ended during lvm_after's diagnose on a slow host (CI); at 40 KB/s it
    # takes 400 s, and lvm_dd's bio (in the window below the position) passes at the next
    # 10 s checkpoint (raid5 reshape_request's reshape_checkpoint)
    speed 20 40
    t=$(now); bounded 60 dmsetup resume lvd-r5; obs lvm_remedy "dmsetup resume lvd-r5 rc=$?"
    if wait_for 30 sh -c "! kill -0 $LDD"; then wait "$LDD"; obs lvm_dd_done "rc=$? $(since "$t")s after the resume"; else obs lvm_dd_done blocked; fi
    sleep 1
    obs lvm_after_state "$(dmsetup status lvd-r5 | cut -d' ' -f3-)"
    diag lvm_after
else
    wait "$LDD"; obs lvm_dd "not blocked: rc=$?"
    bounded 60 dmsetup resume lvd-r5
fi

# -- chain (before 6.9 only): the 41425f96d7aa deadlock, created first -------------------------
# the LV's reshape frozen (`dmsetup message ... frozen`: 6.9+ answers EINVAL), a direct write
# across its position sleeping in raid5_make_request, then `dmsetup suspend` of the LV waiting
# for that write to drain: F9.  Remedy: `dmsetup message ... idle`, then `dmsetup resume`
IFS=. read -r kmaj kmin _ <<< "$(uname -r)"
obs chain_precondition "kernel $kmaj.$kmin, $(dmsetup status lvd-r5 | cut -d' ' -f6-8)"
# sync ratio done/total per leg (dm-raid status field 7): the chain needs the position short of
# the first 32 MiB (below); a reshape already past it is said, and the test skips loudly
read -r cdone ctotal <<< "$(dmsetup status lvd-r5 | awk '{ split($7, r, "/"); print r[1], r[2] }')"
pre69=$(( kmaj < 6 || (kmaj == 6 && kmin < 9) ))
if (( pre69 )) && [[ $cdone =~ ^[0-9]+$ && $ctotal =~ ^[0-9]+$ ]] && (( ctotal > 0 && cdone * 10 >= ctotal * 6 )); then
    obs chain_skipped "the reshape stood at $cdone/$ctotal: past the first 32 MiB the write covers"
elif (( pre69 )) && dmsetup status lvd-r5 | grep -qw reshape; then
    beat chain
    bounded 30 dmsetup message lvd-r5 0 frozen; obs chain_frozen "rc=$? $(dmsetup status lvd-r5 | cut -d' ' -f6-8)"
    t_chain=$(now)
    # the LV's first 32 MiB (its size before the grow: dm-raid's raid_map requeues bios past
    # mddev->array_sectors while a reshape grows it, and dd ends ENOSPC there, measured); the bio
    # that sleeps is the first in the window between reshape_safe and reshape_progress, so the
    # position (per-leg sync ratio x 3 new data legs) must be below 32 MiB: 2/3 of the ratio
    dd if=/dev/zero of=/dev/mapper/lvd-r5 bs=1M count=32 oflag=direct status=none 2> "$out/chain_dd.err" &
    CDD=$!
    wait_for 60 asleep_in_raid5 "$CDD"
    obs chain_dd "pid=$CDD $(awk '{ sub(/^.*\) /, ""); print $1 }' /proc/$CDD/stat 2>/dev/null) $(grep -o 'raid5_make_request' /proc/$CDD/stack 2>/dev/null | head -1) wrote=$(awk '/^wchar/ { print $2 }' /proc/$CDD/io 2>/dev/null) of $(blockdev --getsize64 /dev/mapper/lvd-r5)"
    dmsetup suspend lvd-r5 2> "$out/chain_suspend.err" &
    CSU=$!
    sleep 4
    if kill -0 "$CSU" 2>/dev/null; then
        obs chain_suspend "blocked pid=$CSU since $(since "$t_chain")s after the write"
        diag chain_hung
        stacks chain
        # the remedy (measured on 6.1): the suspend is stuck in synchronize_srcu (D, not
        # interruptible: dd sleeps inside dm's map under the SRCU read lock), but dm-raid's
        # message needs no suspend lock: `idle` clears FROZEN, the reshape moves, dd's bio
        # passes, the suspend completes; dd's next bio is then queued until `dmsetup resume`
        t=$(now); speed 1000 200000
        bounded 30 dmsetup message lvd-r5 0 idle; obs chain_idle "rc=$?"
        if wait_for 60 sh -c "! kill -0 $CSU"; then wait "$CSU"; obs chain_suspend_done "rc=$? $(since "$t")s after the idle message, $(dmsetup info -c --noheadings -o suspended lvd-r5)"; else obs chain_suspend_done blocked; fi
        bounded 30 dmsetup resume lvd-r5; obs chain_resume "rc=$?"
        if wait_for 60 sh -c "! kill -0 $CDD"; then wait "$CDD"; obs chain_dd_done "rc=$? $(since "$t")s after the idle message"; else obs chain_dd_done blocked; fi
        diag chain_after
    else
        wait "$CSU"; obs chain_suspend "returned rc=$?"
        bounded 30 dmsetup resume lvd-r5; bounded 30 dmsetup message lvd-r5 0 idle
        wait_for 60 sh -c "! kill -0 $CDD"
    fi
fi
speed 1000 200000
wait_for 120 sh -c 'dmsetup status lvd-r5 | grep -qw idle'
bounded 60 lvremove -q -y lvd/r5 > /dev/null 2>&1; bounded 30 vgremove -q -y lvd > /dev/null 2>&1
bounded 30 pvremove -q -y "${V[@]}" > /dev/null 2>&1

# -- the kallsyms-free symbol route (modsyms.py) against /proc/kallsyms, in this kernel --------
obs modsyms "$(python3 - <<'PY'
import time
from pathlib import Path
from mdtrace.sources.snapshot.kcore import kallsyms_address
from mdtrace.sources.snapshot.modsyms import module_symbol
rel = Path("/proc/sys/kernel/osrelease").read_text().strip()
t0 = time.monotonic(); ksyms = Path("/proc/kallsyms").read_text(errors="replace")
t_ks = time.monotonic() - t0
out = []
for sym, mod in (("all_mddevs", "md_mod"), ("name_rb_tree", "dm_mod"), ("_name_buckets", "dm_mod")):
    ks = kallsyms_address(ksyms, sym, mod)
    if ks is None:          # not this kernel's symbol (5.10: buckets; later: the tree)
        continue
    t0 = time.monotonic()
    m = module_symbol(mod, sym, sys_root=Path("/sys"), lib_root=Path("/lib/modules"), release=rel)
    out.append(f"{sym}=" + ("none" if m is None else "same" if m == ks else "differ")
               + f" in {time.monotonic() - t0:.3f}s")
print("; ".join(out) + f"; kallsyms read in {t_ks:.3f}s")
PY
)"

# -- ro: a read-only reshape with a write and a read across its position ----------------------------
# last: on 6.12.117 the remedy can trigger the raid5d double free (docs/kernels.md)
beat ro
R=("${D[@]:2:4}")
for d in "${R[@]}"; do wipefs -aq "$d" 2>/dev/null; done
speed 1000 2000
mdadm --create /dev/md5 --run --level=5 --raid-devices=3 --size=64M --assume-clean "${R[@]:0:3}" >> "$out/mdadm.log" 2>&1
mdadm /dev/md5 --add "${R[3]}" >> "$out/mdadm.log" 2>&1
mdadm --grow /dev/md5 --raid-devices=4 >> "$out/mdadm.log" 2>&1
wait_for 60 done_ge md5 8192
for try in 1 2 3 4 5; do  # udev's probe after the grow: EBUSY (scenarios/readonly_reshape.sh)
    udevadm settle -t 10 2>/dev/null || true
    rc=0; bounded 30 mdadm --readonly /dev/md5 > "$out/ro_readonly.err" 2>&1 || rc=$?
    [[ $rc == 0 ]] && break; sleep 0.5
done
obs ro_readonly "rc=$rc tries=$try"
sleep 1
pos=$(mdattr md5 reshape_position)
obs ro_state "$(mdattr md5 array_state) $(mdattr md5 sync_action) pos=$pos ro=$(cat /sys/block/md5/ro)"
start_mb=$(( pos / 2048 > 4 ? pos / 2048 - 4 : 0 ))
# the write across the position: what does the kernel do with it?
t=$(now)
dd if=/dev/zero of=/dev/md5 bs=1M seek=$start_mb count=8 oflag=direct status=none 2> "$out/ro_write.err" &
WDD=$!
if wait_for 5 sh -c "! kill -0 $WDD"; then
    wait "$WDD"; obs ro_write "rc=$? in $(since "$t")s: $(head -c 200 "$out/ro_write.err")"
else
    obs ro_write "blocked pid=$WDD since $t"
fi
t_ro=$(now)
dd if=/dev/md5 of=/dev/null bs=1M skip=$start_mb count=8 iflag=direct status=none 2> "$out/ro_read.err" &
RDD=$!
sleep 3
if kill -0 "$RDD" 2>/dev/null; then
    obs ro_read "blocked pid=$RDD since $t_ro state=$(awk '{ sub(/^.*\) /, ""); print $1 }' /proc/$RDD/stat)"
else
    wait "$RDD"; obs ro_read "rc=$? in $(since "$t_ro")s"
fi
# 6.12.117's raid5d double free (docs/kernels.md) can strike as soon as the read meets the
# window: the host stops the guest FAILURE_GRACE_S (120 s) after it, so the oops is diagnosed
# at once and nothing else is tried
oops_exit() {
    obs kernel_oops "$(dmesg | grep -m1 -E 'kernel BUG at|Oops: |general protection fault')"
    obs kernel_oops_task "$(dmesg | grep -m1 -oE 'Comm: [^ ]+')"
    diag oops
    stacks oops
    dmesg > "$out/dmesg.txt"
    obs done yes
    exit 0
}
oopsed && oops_exit
diag ro_hung
stacks ro
oopsed && oops_exit
beat ro_remedy
t=$(now); bounded 30 mdadm --readwrite /dev/md5; obs ro_remedy "mdadm --readwrite rc=$?"
speed 1000 200000
# an oops (6.12.117) leaves FAILURE_GRACE_S (120 s) before the host stops the guest
if wait_for 40 sh -c "! kill -0 $RDD && ! kill -0 $WDD || dmesg | grep -qE 'kernel BUG at|Oops: |general protection fault'" &&
        ! kill -0 "$RDD" 2>/dev/null; then
    wait "$RDD"; obs ro_read_done "rc=$? $(since "$t")s after the remedy"
else
    obs ro_read_done blocked
fi
oopsed && oops_exit
wait_for 120 sh -c '[ "$(cat /sys/block/md5/md/sync_action)" = idle ]'
obs ro_after_state "$(mdattr md5 sync_action) $(mdattr md5 array_state)"
diag ro_after
bounded 60 mdadm --stop /dev/md5 > /dev/null 2>&1 || obs error "mdadm --stop md5 blocked"
dmesg > "$out/dmesg.txt"
obs done yes
exit 0
