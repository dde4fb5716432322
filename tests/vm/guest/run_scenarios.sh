#!/bin/bash
# Guest driver: run the named scenarios (default: all in scenarios/) one after another in this
# boot, each under `mdtrace record` when that command exists, then decode each trace with
# `mdtrace report --format json` (and `mdtrace replay --json`).  Results per scenario in
# $MDTRACE_OUT/scenarios/<name>/: result.json, obs.jsonl, timeline.txt, trace.jsonl.gz,
# report.json, replay.json, record.log, log.txt.
#   env: SCEN_TIMEOUT (s per scenario, default 300), MDTRACE_RECORD_ARGS (extra record args),
#        MDTRACE_NO_RECORD=1 (md side only)
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
# fresh BTF/kallsyms capture, compared on the host with the committed tests/data/btf/
if [[ ${CAPTURE_BTF:-1} == 1 ]]; then
    bash "$here/capture_btf.sh" > "$out/capture_btf.log" 2>&1 || echo "run_scenarios: capture_btf failed"
fi

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

cleanup_disks() {
    local prev=${1:-start} md
    pkill -x fio 2>/dev/null; pkill -x dd 2>/dev/null
    for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" {print $1}'); do
        dmsetup resume "$d" 2>/dev/null
    done
    vgchange -an -q 2>/dev/null >/dev/null
    for vg in $(vgs --noheadings -o vg_name 2>/dev/null); do vgremove -ff -y "$vg" >/dev/null 2>&1; done
    dmsetup remove_all --force 2>/dev/null
    for md in /dev/md[0-9]* /dev/md/*; do
        [[ -b $md ]] || continue
        run_bounded 60 mdadm --stop "$md" >/dev/null 2>&1
        [[ $? == 124 ]] && wedged "$prev" "mdadm --stop $md blocked > 60 s"
    done
    for d in /dev/vd[b-z]; do
        [[ -b $d ]] || continue
        mdadm --zero-superblock "$d" >/dev/null 2>&1
        wipefs -a -q "$d" >/dev/null 2>&1
        dd if=/dev/zero of="$d" bs=1M count=4 oflag=direct status=none 2>/dev/null
    done
    echo 1000 > /proc/sys/dev/raid/speed_limit_min
    echo 200000 > /proc/sys/dev/raid/speed_limit_max
    udevadm settle -t 10 2>/dev/null || true
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
    if [[ -n $WEDGED ]]; then
        printf '{"name": "%s", "kernel": "%s", "rc": 125, "time_s": 0, "recorded": false, "record_attempted": false, "skipped": "guest wedged after scenario %s"}\n' \
            "$name" "$(uname -r)" "$WEDGED" > "$sdir/result.json"
        echo "== scenario $name: SKIPPED, guest wedged after $WEDGED"
        continue
    fi
    echo "== scenario $name ($(uname -r))"
    REC_PID=0
    if ((can_record)); then
        record_start "$sdir/trace.jsonl.gz" "$sdir/record.log"
        echo "record_ready_s $REC_READY_S" >> "$sdir/record.meta"
    fi
    t0=$(cut -d' ' -f1 /proc/uptime)
    SCEN=$name SDIR=$sdir LIB=$here/lib.sh timeout -k 10 "${SCEN_TIMEOUT:-300}" \
        bash -c 'source "$LIB"; source "$0"' "$script" > "$sdir/log.txt" 2>&1
    rc=$?
    t1=$(cut -d' ' -f1 /proc/uptime)
    if ((can_record)); then
        record_stop
        echo "record_rc $REC_RC" >> "$sdir/record.meta"
    fi
    sed "s/^/  /" "$sdir/log.txt"
    recorded=false
    if [[ -s $sdir/trace.jsonl.gz ]]; then
        recorded=true
        mdtrace report --format json "$sdir/trace.jsonl.gz" > "$sdir/report.json" 2> "$sdir/report.err"
        echo "report_rc $?" >> "$sdir/record.meta"
        mdtrace replay --json "$sdir/trace.jsonl.gz" > "$sdir/replay.json" 2> "$sdir/replay.err"
        echo "replay_rc $?" >> "$sdir/record.meta"
    fi
    dur=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    printf '{"name": "%s", "kernel": "%s", "rc": %d, "time_s": %s, "t0": %s, "t1": %s, "recorded": %s, "record_attempted": %s}\n' \
        "$name" "$(uname -r)" "$rc" "$dur" "$t0" "$t1" "$recorded" "$( ((can_record)) && echo true || echo false)" > "$sdir/result.json"
    echo "== scenario $name: rc=$rc in ${dur}s recorded=$recorded"
done
cleanup_disks "$prev"
dmesg > "$out/dmesg.txt"
exit 0
