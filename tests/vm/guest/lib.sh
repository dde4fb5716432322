# Helpers for guest scenario scripts (sourced).  Each scenario runs in its own bash with
# SCEN (its name) and SDIR ($MDTRACE_OUT/scenarios/$SCEN, writable) set by run_scenarios.sh.
# Observations go to $SDIR/obs.jsonl: {"t": guest uptime s, "k": key, "v": value} per line;
# the host checks them (vmtest/scenarios.py) alongside the mdtrace trace/report.

now() { cut -d' ' -f1 /proc/uptime; }

obs() {  # obs KEY VALUE...  (value recorded as a string)
    local k=$1; shift
    local v="$*"
    v=${v//\\/\\\\}; v=${v//\"/\\\"}
    printf '{"t":%s,"k":"%s","v":"%s"}\n' "$(now)" "$k" "$v" >> "$SDIR/obs.jsonl"
    echo "[$SCEN $(now)] $k = $*"
}

log() { echo "[$SCEN $(now)] $*"; }

die() { obs error "$*"; hang_dump; exit 1; }

# Evidence when something hangs or stalls: md sysfs, blocked tasks and md kernel thread stacks
# ($SDIR/hang_dump.txt), and `echo w > sysrq-trigger` into the kernel log.
hang_dump() {
    local f=$SDIR/hang_dump.txt md p
    {
        echo "== $(now) hang_dump ($SCEN)"
        cat /proc/mdstat
        for md in /sys/block/md*/md; do
            echo "-- $md"
            for a in array_state sync_action sync_completed reshape_position reshape_direction \
                     raid_disks chunk_size degraded suspend_lo suspend_hi sync_speed \
                     stripe_cache_active stripe_cache_size; do
                printf '%s=%s\n' "$a" "$(cat "$md/$a" 2>/dev/null)"
            done
        done
        dmsetup status 2>/dev/null
        for p in $(ps -eo pid=,stat=,comm= | awk '$2 ~ /D/ || $3 ~ /^(md|mdX)/ {print $1}'); do
            echo "-- pid $p $(ps -o stat=,wchan:32=,comm= -p "$p")"
            cat "/proc/$p/stack" 2>/dev/null
        done
    } >> "$f" 2>&1
    echo w > /proc/sysrq-trigger 2>/dev/null
    obs hang_dump "$(grep -c '^-- pid' "$f") task stacks in hang_dump.txt"
}

mdattr() {  # mdattr MD ATTR -> /sys/block/MD/md/ATTR (empty if absent)
    cat "/sys/block/$1/md/$2" 2>/dev/null || true
}

# bounded SECONDS CMD...: run CMD, give up waiting after SECONDS (returns 124 and leaves it
# behind: a task in D state cannot be killed, so timeout(1) would hang with it).
bounded() {
    local limit=$(( $1 * 5 )) i p; shift
    "$@" & p=$!
    for ((i = 0; i < limit; i++)); do
        kill -0 "$p" 2>/dev/null || { wait "$p"; return $?; }
        sleep 0.2
    done
    return 124
}

# wait_until TIMEOUT_S CMD...: poll CMD every 0.2 s; 0 when it succeeds, 1 on timeout
wait_until() {
    local limit=$1; shift
    local end=$(( $(date +%s) + limit ))
    while ! "$@" >/dev/null 2>&1; do
        (( $(date +%s) >= end )) && return 1
        sleep 0.2
    done
}

is_idle() { [[ $(mdattr "$1" sync_action) == idle ]]; }
is_action() { [[ $(mdattr "$1" sync_action) == "$2" ]]; }
reshape_started() {  # reshape position > 0 and numeric
    local p; p=$(mdattr "$1" reshape_position)
    [[ $p =~ ^[0-9]+$ ]] && (( p > 0 ))
}
sync_progressed() {  # sync_completed "N / M" with N >= $2 sectors
    local c; c=$(mdattr "$1" sync_completed)
    [[ $c =~ ^([0-9]+)\ / ]] && (( BASH_REMATCH[1] >= $2 ))
}

speed_limits() {  # speed_limits MIN MAX  (KiB/s, system-wide) - throttles resync/reshape
    echo "$1" > /proc/sys/dev/raid/speed_limit_min
    echo "$2" > /proc/sys/dev/raid/speed_limit_max
}

# Sample the md array's sysfs state every 0.25 s into $SDIR/timeline.txt until killed.
timeline_start() {
    local md=$1
    ( while :; do
        printf '%s %s pos=%s done=%s state=%s degraded=%s ro=%s\n' "$(now)" \
            "$(mdattr "$md" sync_action)" "$(mdattr "$md" reshape_position)" \
            "$(mdattr "$md" sync_completed | tr -d ' ')" "$(mdattr "$md" array_state)" \
            "$(mdattr "$md" degraded)" "$(cat /sys/block/$md/ro 2>/dev/null)"
        sleep 0.25
      done ) >> "$SDIR/timeline.txt" 2>/dev/null &
    TIMELINE_PID=$!
}
timeline_stop() { [[ -n ${TIMELINE_PID:-} ]] && kill "$TIMELINE_PID" 2>/dev/null; wait "$TIMELINE_PID" 2>/dev/null || true; }

# io_probe NAME SECONDS CMD...: run CMD in the background; after SECONDS record its outcome:
# "done rc=N in Xs" or "blocked after Xs" (left running; io_wait NAME reaps it later).
declare -A IO_PID IO_T0
io_start() {
    local name=$1; shift
    IO_T0[$name]=$(now)
    obs "io_${name}_start" "$*"
    ( "$@" > "$SDIR/io_$name.log" 2>&1; echo $? > "$SDIR/io_$name.rc" ) &
    IO_PID[$name]=$!
}
io_check() {  # io_check NAME WAIT_S -> obs io_NAME = done/blocked
    local name=$1 wait_s=$2 end
    end=$(( $(date +%s) + wait_s ))
    while kill -0 "${IO_PID[$name]}" 2>/dev/null && (( $(date +%s) < end )); do sleep 0.2; done
    local dt; dt=$(awk -v a="${IO_T0[$name]}" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    if kill -0 "${IO_PID[$name]}" 2>/dev/null; then
        obs "io_$name" "blocked after ${dt}s"
        # where it waits: process state + wait channel, kernel stack to a file
        local c; c=$(pgrep -P "${IO_PID[$name]}" | head -1)
        if [[ -n $c ]]; then
            sleep 0.3
            obs "io_${name}_state" "$(ps -o stat=,wchan:40= -p "$c" | xargs)"
            cat "/proc/$c/stack" > "$SDIR/io_$name.stack" 2>/dev/null
            obs "io_${name}_stack" "$(grep -oE '(raid5_make_request|md_handle_request|wait_woken|md_submit_bio|schedule)[^ ]*' "$SDIR/io_$name.stack" 2>/dev/null | head -4 | xargs)"
        fi
        return 1
    fi
    wait "${IO_PID[$name]}" 2>/dev/null
    obs "io_$name" "done rc=$(cat "$SDIR/io_$name.rc" 2>/dev/null) in ${dt}s"
    return 0
}

# The disks every scenario may use, wiped before each scenario by run_scenarios.sh.
DISKS=(/dev/vdb /dev/vdc /dev/vdd /dev/vde)

trap 'timeline_stop' EXIT
