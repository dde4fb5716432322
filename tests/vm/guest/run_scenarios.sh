#!/bin/bash
# Guest driver: run the named scenarios (default: all in scenarios/) one after another in this
# boot, each under `mdtrace record` when that command exists (one recorder for the boot, its
# trace cut per scenario: record.sh rec_rotate), then decode each trace with
# `mdtrace report --format json` (and `mdtrace replay --json`).  Results per scenario in
# $MDTRACE_OUT/scenarios/<name>/: result.json, obs.jsonl, timeline.txt, trace.jsonl.gz,
# report.json, replay.json, record.log, log.txt.
#   env: SCEN_TIMEOUT (s per scenario, default 480: 7.2's lvm reshape passed 300 s beside a
#        live guest, 2026-12-04; 5.10 112 s), MDTRACE_RECORD_ARGS (extra record args),
#        MDTRACE_NO_RECORD=1 (md side only), CAPTURE_BTF=0, FAIL_SETTLE_S (10),
#        MDTRACE_VM_INJECT_WEDGE=NAME (test only: wedge this driver at NAME, once per out dir)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# job_script.sh is a copy in the out share: find the tree via /mnt/src
[[ -f $here/lib.sh ]] || here=/mnt/src/tests/vm/guest
out=${MDTRACE_OUT:?}
mkdir -p "$out/scenarios"
modprobe raid456; modprobe dm-raid; modprobe raid1
names=("$@")
if ((${#names[@]} == 0)); then
    for f in "$here"/scenarios/*.sh; do names+=("$(basename "$f" .sh)"); done
fi
source "$here/record.sh"
can_record=0
record_available && can_record=1
echo "run_scenarios: kernel $(uname -r), record=$can_record, scenarios: ${names[*]}"
# Every wait below is bounded, and the driver says where it is in $out/heartbeat: the host
# (vmtest/runner.py) stops a guest whose heartbeat stands still for minutes, or that
# logged a kernel oops/BUG and did not finish soon after, and reruns the rest in a fresh boot.
beat() { echo "$(cut -d' ' -f1 /proc/uptime) $*" > "$out/heartbeat"; }

# run_bounded SECONDS CMD...: like timeout(1), but never waits for an unkillable (D state)
# command: after SECONDS it leaves it behind and returns 124.
run_bounded() {
    local limit=$(( $1 * 5 )) i p; shift
    "$@" & p=$!
    for ((i = 0; i < limit; i++)); do
        kill -0 "$p" 2>/dev/null || { wait "$p"; return $?; }
        sleep 0.2
    done
    return 124
}

# Kernel reports that mean the kernel itself failed (the same list as the host's console
# watch, vmtest/runner.py KERNEL_FAILURE).  Counted before each scenario; a new one during
# it ends the scenario (after FAIL_SETTLE_S, so the recorder sees the aftermath) and the boot.
FAIL_RE='kernel BUG at|BUG: |Oops: |general protection fault|Kernel panic - not syncing|INFO: task .* blocked for more than|rcu: INFO: rcu_[a-z]+ (self-)?detected stall'
fail_count() { dmesg 2>/dev/null | grep -cE "$FAIL_RE"; }

# fresh BTF/kallsyms capture, compared on the host with the committed tests/data/btf/
if [[ ${CAPTURE_BTF:-1} == 1 ]]; then
    beat capture_btf
    run_bounded 180 bash "$here/capture_btf.sh" > "$out/capture_btf.log" 2>&1 || echo "run_scenarios: capture_btf failed"
fi

# A scenario can leave the kernel unable to stop an array (the hang class mdtrace diagnoses).
# Then nothing after it can use the disks: record the evidence once and skip the rest.
WEDGED=""
wedged() {
    [[ -n $WEDGED ]] && return
    WEDGED=$1
    {
        echo "== wedged after scenario $1: $2"
        cat /proc/mdstat
        for p in $(ps -eo pid=,stat= | awk '$2 ~ /D/ {print $1}') $(pgrep -x 'md[0-9]*_(raid5|resync|reshape)'); do
            echo "-- pid $p $(ps -o stat=,wchan:32=,comm= -p "$p")"
            cat "/proc/$p/stack" 2>/dev/null
        done
    } > "$out/wedged.txt" 2>&1
    echo w > /proc/sysrq-trigger 2>/dev/null
    echo "run_scenarios: WEDGED after $1: $2 (evidence in wedged.txt)"
}

# cleanup_step PREV LABEL CMD...: one bounded cleanup command; blocked > 60 s = wedged
cleanup_step() {
    local prev=$1 label=$2; shift 2
    [[ -n $WEDGED ]] && return 1
    beat "cleanup after $prev: $label"
    run_bounded 60 "$@" >/dev/null 2>&1
    [[ $? == 124 ]] && { wedged "$prev" "$label blocked > 60 s"; return 1; }
    return 0
}

cleanup_disks() {
    local prev=${1:-start} md d
    [[ -n $WEDGED ]] && return
    pkill -x fio 2>/dev/null; pkill -x dd 2>/dev/null
    for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" {print $1}'); do
        cleanup_step "$prev" "dmsetup resume $d" dmsetup resume "$d" || return
    done
    cleanup_step "$prev" "vgchange -an" vgchange -an -q || return
    for vg in $(vgs --noheadings -o vg_name 2>/dev/null); do
        cleanup_step "$prev" "vgremove $vg" vgremove -ff -y "$vg" || return
    done
    cleanup_step "$prev" "dmsetup remove_all" dmsetup remove_all --force || return
    for md in /dev/md[0-9]* /dev/md/*; do
        [[ -b $md ]] || continue
        cleanup_step "$prev" "mdadm --stop $md" mdadm --stop "$md" || return
    done
    for d in /dev/vd[b-z]; do
        [[ -b $d ]] || continue
        cleanup_step "$prev" "wipe $d" sh -c "mdadm --zero-superblock $d; wipefs -a -q $d; dd if=/dev/zero of=$d bs=1M count=4 oflag=direct status=none" || return
    done
    echo 1000 > /proc/sys/dev/raid/speed_limit_min
    echo 200000 > /proc/sys/dev/raid/speed_limit_max
    udevadm settle -t 10 2>/dev/null || true
}

# run_scenario_bounded SDIR SCRIPT: the scenario in its own session, killed (the whole process
# group) after SCEN_TIMEOUT or FAIL_SETTLE_S after a new kernel failure report; never waits
# for what a kill leaves in D state.  -> SCEN_RC (124: timed out, 125: kernel failure)
run_scenario_bounded() {
    local sdir=$1 script=$2 base p end kill_at=0 line
    base=$(fail_count)
    SCEN=$name SDIR=$sdir LIB=$here/lib.sh setsid bash -c 'source "$LIB"; source "$0"' "$script" > "$sdir/log.txt" 2>&1 &
    p=$!
    end=$(( $(date +%s) + ${SCEN_TIMEOUT:-480} ))
    SCEN_RC=
    while kill -0 "$p" 2>/dev/null; do
        if ((kill_at == 0)) && (( $(fail_count) > base )); then
            line=$(dmesg | grep -E "$FAIL_RE" | sed -n "$((base + 1))p")
            KFAIL_LINE=$line
            KFAIL_TASK=$(dmesg | grep -A4 -F -- "$line" | grep -oE 'Comm: [^ ]+' | head -1 | cut -d' ' -f2)
            SDIR=$sdir SCEN=$name bash -c 'source "$0"; obs kernel_failure "$1"; [[ -n $2 ]] && obs kernel_failure_task "$2"' "$here/lib.sh" "$line" "$KFAIL_TASK"
            echo "run_scenarios: KERNEL FAILURE during $name: $line${KFAIL_TASK:+ (task $KFAIL_TASK)}"
            kill_at=$(( $(date +%s) + ${FAIL_SETTLE_S:-10} ))
        fi
        if ((kill_at > 0 && $(date +%s) >= kill_at)) || (( $(date +%s) >= end )); then
            [[ $kill_at == 0 ]] && SCEN_RC=124 || SCEN_RC=125
            kill -KILL -- -"$p" 2>/dev/null
            sleep 1
            break
        fi
        sleep 1
    done
    if [[ -z $SCEN_RC ]]; then
        wait "$p"; SCEN_RC=$?
        if ((kill_at > 0)); then SCEN_RC=125; fi
    fi
}

# one recorder for the boot (record.sh rec_boot_start), cut per scenario by rec_rotate
rec_ok=0
rec_ensure() {  # a live boot recorder, started (again) when there is none
    ((can_record)) || return 1
    if ((${REC_PID:-0} > 0)) && kill -0 "$REC_PID" 2>/dev/null; then return 0; fi
    beat "recorder start"
    rec_boot_start "$out/record.log"
    echo "run_scenarios: mdtrace record ready after ${REC_READY_S} s (pid $REC_PID)"
    ((${REC_PID:-0} > 0))
}

prev=start
for name in "${names[@]}"; do
    script=$here/scenarios/$name.sh
    sdir=$out/scenarios/$name
    rm -rf "$sdir"; mkdir -p "$sdir"
    if [[ ! -f $script ]]; then
        echo "{\"name\": \"$name\", \"rc\": 127, \"error\": \"no such scenario\"}" > "$sdir/result.json"
        continue
    fi
    cleanup_disks "$prev"
    prev=$name
    KFAIL_LINE=""
    if [[ -n $WEDGED ]]; then
        printf '{"name": "%s", "kernel": "%s", "rc": 125, "time_s": 0, "recorded": false, "record_attempted": false, "skipped": "guest wedged after scenario %s"}\n' \
            "$name" "$(uname -r)" "$WEDGED" > "$sdir/result.json"
        echo "== scenario $name: SKIPPED, guest wedged after $WEDGED"
        continue
    fi
    echo "== scenario $name ($(uname -r))"
    if [[ ${MDTRACE_VM_INJECT_WEDGE:-} == "$name" && ! -e $out/inject_done ]]; then
        # the harness's own test (tests/vm/test_vm_wedge.py): a kernel-failure line, then this
        # driver blocks for good, as if stuck in the kernel; only the host can end the boot
        touch "$out/inject_done"
        beat "$name: injected wedge"
        echo "kernel BUG at mdtrace/inject.c:1! (injected by the vm tier's wedge test)" > /dev/kmsg
        while :; do sleep 3600; done
    fi
    rec_ok=0
    if ((can_record)); then
        if rec_ensure; then
            beat "$name: record rotate (start)"
            rec_rotate "" && rec_ok=1    # the scenario's trace starts here
        fi
        echo "record_ok_at_start $rec_ok" >> "$sdir/record.meta"
    fi
    t0=$(cut -d' ' -f1 /proc/uptime)
    beat "$name: scenario"
    run_scenario_bounded "$sdir" "$script"
    rc=$SCEN_RC
    t1=$(cut -d' ' -f1 /proc/uptime)
    if ((rec_ok)); then
        beat "$name: record rotate (end)"
        rec_rotate "$sdir/trace.jsonl.gz"
        echo "record_rotate_rc $?" >> "$sdir/record.meta"
    fi
    sed "s/^/  /" "$sdir/log.txt"
    recorded=false
    if [[ -s $sdir/trace.jsonl.gz ]]; then
        recorded=true
        beat "$name: report"
        run_bounded 120 sh -c 'mdtrace report --format json "$1" > "$2/report.json" 2> "$2/report.err"' _ "$sdir/trace.jsonl.gz" "$sdir"
        echo "report_rc $?" >> "$sdir/record.meta"
        if [[ -z $KFAIL_LINE ]]; then   # after a kernel failure the host decodes it
            beat "$name: replay"
            run_bounded 120 sh -c 'mdtrace replay --json "$1" > "$2/replay.json" 2> "$2/replay.err"' _ "$sdir/trace.jsonl.gz" "$sdir"
            echo "replay_rc $?" >> "$sdir/record.meta"
        fi
    fi
    dur=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    printf '{"name": "%s", "kernel": "%s", "rc": %d, "time_s": %s, "t0": %s, "t1": %s, "recorded": %s, "record_attempted": %s}\n' \
        "$name" "$(uname -r)" "$rc" "$dur" "$t0" "$t1" "$recorded" "$( ((can_record)) && echo true || echo false)" > "$sdir/result.json"
    echo "== scenario $name: rc=$rc in ${dur}s recorded=$recorded"
    if [[ -n $KFAIL_LINE ]]; then
        wedged "$name" "kernel failure: $KFAIL_LINE"
    fi
done
cleanup_disks "$prev"
if ((${REC_PID:-0} > 0)); then
    beat "record stop"
    record_stop
    echo "run_scenarios: boot recorder stopped rc=$REC_RC"
fi
beat done
dmesg > "$out/dmesg.txt"
exit 0
