# Start/stop `mdtrace record` around a workload in the guest (sourced by run_scenarios.sh and
# bench/vm_fio_guest.sh).  Readiness: the recorder says so (a line matching
# recording|attached|ready on stdout/stderr), or the kernel shows its kprobe on
# md_check_recovery (/sys/kernel/debug/kprobes/list) or a BPF program named after it; then
# 1.5 s more for the remaining probes.  At most RECORD_READY_TIMEOUT (60) s.

record_available() {
    [[ ${MDTRACE_NO_RECORD:-0} != 1 ]] && mdtrace record --help >/dev/null 2>&1
}

_probes_attached() {
    [[ -d /sys/kernel/debug/kprobes ]] || mount -t debugfs none /sys/kernel/debug 2>/dev/null
    grep -q 'md_check_recovery' /sys/kernel/debug/kprobes/list 2>/dev/null && return 0
    bpftool prog show 2>/dev/null | grep -q 'md_check_recov' && return 0
    return 1
}

# record_start TRACE LOG [extra args...] -> REC_PID (0 if it died), REC_READY_S
record_start() {
    local trace=$1 log=$2; shift 2
    local t0 i limit=$(( ${RECORD_READY_TIMEOUT:-60} * 5 ))
    t0=$(cut -d' ' -f1 /proc/uptime)
    rm -f "$trace"    # record refuses to overwrite (issue 13); the harness owns these paths
    # shellcheck disable=SC2086
    mdtrace record -o "$trace" ${MDTRACE_RECORD_ARGS:-} "$@" > "$log" 2>&1 &
    REC_PID=$!
    for ((i = 0; i < limit; i++)); do
        kill -0 "$REC_PID" 2>/dev/null || break
        grep -qiE 'recording|attached|ready' "$log" 2>/dev/null && break
        _probes_attached && break
        sleep 0.2
    done
    sleep 1.5
    REC_READY_S=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')
    if ! kill -0 "$REC_PID" 2>/dev/null; then
        wait "$REC_PID" 2>/dev/null
        echo "record: mdtrace record exited early (rc $?): $(tail -2 "$log" | tr '\n' ' ')" >&2
        REC_PID=0
    fi
}

# record_stop: SIGINT, up to 30 s to flush and exit, then TERM/KILL.  -> REC_RC
record_stop() {
    local i
    REC_RC=
    ((${REC_PID:-0} > 0)) || return 0
    local t0; t0=$(cut -d' ' -f1 /proc/uptime)
    echo "record: stopping mdtrace record (pid $REC_PID) at $t0"
    kill -INT "$REC_PID" 2>/dev/null
    for ((i = 0; i < 150; i++)); do kill -0 "$REC_PID" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$REC_PID" 2>/dev/null; then
        echo "record: mdtrace record did not stop on SIGINT within 30 s; SIGTERM" >&2
        ps -o pid,stat,wchan:32,pcpu,comm -p "$REC_PID" >&2
        cat "/proc/$REC_PID/stack" >&2 2>/dev/null
        kill -TERM "$REC_PID" 2>/dev/null; sleep 3; kill -KILL "$REC_PID" 2>/dev/null
        for ((i = 0; i < 50; i++)); do kill -0 "$REC_PID" 2>/dev/null || break; sleep 0.2; done
    fi
    if kill -0 "$REC_PID" 2>/dev/null; then
        echo "record: mdtrace record survives SIGKILL (stuck in the kernel); leaving it" >&2
        REC_RC=137
    else
        wait "$REC_PID" 2>/dev/null
        REC_RC=$?
    fi
    echo "record: stopped rc=$REC_RC after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }') s"
    REC_PID=0
}

# One recorder for the whole boot (one bcc compile per boot, not per scenario: 60-130 s each
# under TCG), its trace cut per scenario with SIGHUP (mdtrace record reopens -o: the renamed
# file is complete once it prints "reopened").  The current file lives on the guest's own disk.
REC_DIR=/var/tmp/mdtrace-rec

# rec_boot_start LOG -> REC_PID (0 if it died), REC_READY_S
rec_boot_start() {
    local RECORD_READY_TIMEOUT=${BOOT_RECORD_READY_TIMEOUT:-240} i
    REC_LOG=$1
    mkdir -p "$REC_DIR"; rm -f "$REC_DIR"/*.jsonl.gz
    record_start "$REC_DIR/current.jsonl.gz" "$REC_LOG"
    for ((i = 0; i < 150; i++)); do   # attached: the file follows at once
        [[ -e $REC_DIR/current.jsonl.gz ]] && break
        ((REC_PID > 0)) && kill -0 "$REC_PID" 2>/dev/null || break
        sleep 0.2
    done
}

# rec_rotate DEST: the events since the last rotation into DEST ('' = drop them), a new file
# started.  At most 30 s; 1 when the recorder is gone or did not answer.
rec_rotate() {
    local dest=$1 n i
    ((${REC_PID:-0} > 0)) && kill -0 "$REC_PID" 2>/dev/null || return 1
    n=$(grep -c 'mdtrace: reopened' "$REC_LOG")
    mv "$REC_DIR/current.jsonl.gz" "$REC_DIR/done.jsonl.gz" || return 1
    kill -HUP "$REC_PID"
    for ((i = 0; i < 150; i++)); do
        (( $(grep -c 'mdtrace: reopened' "$REC_LOG") > n )) && break
        kill -0 "$REC_PID" 2>/dev/null || break
        sleep 0.2
    done
    (( $(grep -c 'mdtrace: reopened' "$REC_LOG") > n )) || return 1
    [[ -n $dest ]] && cp "$REC_DIR/done.jsonl.gz" "$dest"
    rm -f "$REC_DIR/done.jsonl.gz"
}
