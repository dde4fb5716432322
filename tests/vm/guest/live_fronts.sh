#!/bin/bash
# The live front ends on a real kernel (issue 17), from the wheel the host built: `mdtrace run`,
# `mdtrace exporter` (scraped every second) and `mdtrace top` (in tmux) attach BEFORE a raid5
# reshape is frozen and a write crosses its position; each must show F7 live, and it must end
# after the remedy (`echo idle`).  Then each stops (run: SIGINT, exporter: SIGTERM, top: `q`)
# and nothing of ours may stay in the kernel, not even after a SIGKILL (the recorder's watcher
# removes its tracefs events); a 1-page ring stopped for 4 s must lose events, and say so.
# Results: $MDTRACE_OUT/live/ (obs.txt "key value" lines, logs, scrapes, screens).
set -u
out=$MDTRACE_OUT/live
rm -rf "$out"; mkdir -p "$out"
now() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[live $(now)] $*"; }
obs() { local k=$1; shift; printf '%s %s\n' "$k" "$*" >> "$out/obs.txt"; log "$k = $*"; }
cpu_top() {  # who has the CPUs now (a writer spinning in md's retry loop takes one: 6.9+)
    cat /proc/loadavg; ps -eo pid,stat,pcpu,time,comm --sort=-pcpu 2>/dev/null | head -12
}
timed() {  # timed NAME CMD... > stdout: runs CMD, obs NAME_cost "wall= user= sys=" (CPU share)
    local name=$1; shift
    python3 - "$out/$name.cost" "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[2:])
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    fh.write(f"rc={rc} wall={time.monotonic() - t:.1f}s user={ru.ru_utime:.1f}s "
             f"sys={ru.ru_stime:.1f}s\n")
sys.exit(rc)
PY
}
wait_for() {  # wait_for SECONDS CMD...: poll every 0.2 s
    local end=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do (( $(date +%s) >= end )) && return 1; sleep 0.1; done
}
modprobe raid456
[[ -d /sys/kernel/debug/kprobes ]] || mount -t debugfs none /sys/kernel/debug 2>/dev/null
[[ -f /sys/kernel/tracing/kprobe_events ]] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null

# mdtrace from the host-built wheel, not the shared tree (a packaging slip fails here)
whl=$(ls "$MDTRACE_OUT"/wheel/mdtrace-*.whl 2>/dev/null | head -1)
[[ -n $whl ]] || { obs error "no wheel in the out share"; exit 1; }
inst=/opt/mdtrace-wheel
rm -rf "$inst"; python3 -m zipfile -e "$whl" "$inst"
# with its bytecode compiled, as pip installs it (diagnose_hangs.sh does the same): without, the
# agent's PYTHONDONTWRITEBYTECODE made every start compile mdtrace, textual, rich, click afresh
# (7.2 guest: a diagnose used 67 s of CPU, `top` twice what `run` used; 2026-12-04)
t_cc=$(now)
python3 -m compileall -q "$inst" /opt/mdtrace-deps > /dev/null 2>&1
unset PYTHONDONTWRITEBYTECODE
cd /
export PYTHONPATH=$inst:/opt/mdtrace-deps TERM=screen
printf '#!/bin/sh\nexec python3 -c %s "$@"\n' \
    "'import sys; sys.argv[0] = \"mdtrace\"; from mdtrace.cli import main; main()'" \
    > /usr/local/bin/mdtw
chmod +x /usr/local/bin/mdtw
obs installed_from "$(python3 -c 'import mdtrace; print(mdtrace.__file__)')"
obs bytecode_compiled_s "$(awk -v a="$t_cc" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"

# BPF programs and links that were there before mdtrace ran are not ours (sid's systemd attaches
# its own: `links=1` on 7.2, 2026-12-03): leftovers counts only ids outside this baseline
PROG_RE=': (kprobe|perf_event|tracing) ' LINK_RE=': (perf_event|kprobe_multi|tracing) '
bpf_ids() { bpftool "$1" show 2>/dev/null | grep -E "$2" | cut -d: -f1 | sort; }
base_progs=$(bpf_ids prog "$PROG_RE") base_links=$(bpf_ids link "$LINK_RE")
{ bpftool prog show; bpftool link show; } > "$out/bpf_before.txt" 2>&1
obs bpf_baseline "progs=$(grep -c . <<< "$base_progs") links=$(grep -c . <<< "$base_links")"
new_ids() { comm -13 <(echo "$2") <(bpf_ids "$1" "$3") | grep -c .; }
leftovers() {  # kprobe_events of bcc, kprobes/list entries, kprobe/perf BPF progs, links: ours
    local ke kl pr li
    ke=$(grep -c '_bcc_' /sys/kernel/tracing/kprobe_events 2>/dev/null)
    kl=$(grep -cE 'md_|raid5_|raid_|dm_suspend|dm_resume|mddev_|mutex_lock' /sys/kernel/debug/kprobes/list 2>/dev/null)
    pr=$(new_ids prog "$base_progs" "$PROG_RE")
    li=$(new_ids link "$base_links" "$LINK_RE")
    echo "kprobe_events=${ke:-0} kprobes_list=${kl:-0} progs=${pr:-0} links=${li:-0}"
}
clean_now() { [[ "$(leftovers)" == "kprobe_events=0 kprobes_list=0 progs=0 links=0" ]]; }
obs leftovers_before "$(leftovers)"

D=(/dev/vdb /dev/vdc /dev/vdd /dev/vde)
for d in "${D[@]}"; do wipefs -aq "$d"; done
mdadm --create /dev/md0 --run --level=5 --raid-devices=3 --size=64M --assume-clean \
    "${D[@]:0:3}" > "$out/mdadm.log" 2>&1 || { obs error "mdadm --create failed"; exit 1; }
mdadm /dev/md0 --add "${D[3]}" >> "$out/mdadm.log" 2>&1

# -- the three front ends, attached before anything hangs ------------------------------------
t_start=$(now)
mdtw run --threshold io_wait_s=5 --interval 0.5 > "$out/run.out" 2> "$out/run.err" &
RUN=$!
mdtw exporter --threshold io_wait_s=5 --listen 127.0.0.1:10820 > "$out/exp.out" 2> "$out/exp.err" &
EXP=$!
tmux new-session -d -s top -x 200 -y 50 \
    "sh -c 'echo \$\$ > $out/top.pid; exec mdtw top'; echo \$? > $out/top.rc"
tmux set-option -t top remain-on-exit on
pane() { tmux capture-pane -p -t top 2>/dev/null; }
attached() {
    grep -q 'running (bcc source' "$out/run.err" && grep -q 'exporter serving' "$out/exp.err" &&
        pane | grep -q 'mode bcc'
}
# three compiles at once under TCG: 394-417 s here with two guests running (ci19), 488 s on
# CI's slower machine (2026-12-03): 900 s
if ! wait_for 900 attached; then
    obs error "front ends not attached in 900 s"
    pane > "$out/top_attach.txt"; tail -3 "$out/run.err" "$out/exp.err"
fi
obs attached_after_s "$(awk -v a="$t_start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"

python3 - "$out" <<'PY' &
# scrape the exporter every second: F7/F11 active counts per scrape, two full scrapes kept
import os, sys, time, urllib.request
out = sys.argv[1]
first = seen7 = False
while not os.path.exists(os.path.join(out, "stop_scrape")):
    t = float(open("/proc/uptime").read().split()[0])
    try:
        body = urllib.request.urlopen("http://127.0.0.1:10820/metrics", timeout=5).read().decode()
    except Exception as exc:  # noqa: BLE001
        with open(os.path.join(out, "scrape_errors.txt"), "a") as fh:
            fh.write(f"{t:.1f} {exc}\n")
        time.sleep(1)
        continue
    val = {c: 0 for c in ("F7", "F11")}
    for ln in body.splitlines():
        for c in val:
            if ln.startswith(f'mdtrace_findings_active{{code="{c}"}}'):
                val[c] = int(float(ln.split()[-1]))
    with open(os.path.join(out, "scrapes.txt"), "a") as fh:
        fh.write(f"{t:.1f} F7={val['F7']} F11={val['F11']}\n")
    if not first:
        open(os.path.join(out, "scrape_first.txt"), "w").write(body)
        first = True
    if val["F7"] and not seen7:
        open(os.path.join(out, "scrape_f7.txt"), "w").write(body)
        seen7 = True
    time.sleep(1)
PY
SCRAPER=$!

# -- the hang: a frozen reshape, a write across its position ---------------------------------
echo 1000 > /proc/sys/dev/raid/speed_limit_min; echo 2000 > /proc/sys/dev/raid/speed_limit_max
MDADM_NO_SYSTEMCTL=1 mdadm --grow /dev/md0 --raid-devices=4 >> "$out/mdadm.log" 2>&1
wait_for 60 sh -c '[ "$(cat /sys/block/md0/md/reshape_position)" -gt 0 ] 2>/dev/null'
wait_for 60 sh -c 'c=$(cut -d" " -f1 /sys/block/md0/md/sync_completed); [ "$c" -ge 8192 ] 2>/dev/null'
echo frozen > /sys/block/md0/md/sync_action
sleep 1
pos=$(cat /sys/block/md0/md/reshape_position)
obs frozen "$(cat /sys/block/md0/md/sync_action) pos=$pos"
start_mb=$(( pos / 2048 > 4 ? pos / 2048 - 4 : 0 ))
t_io=$(date +%s.%N)
# 4 KiB writes (one stripe each), not 1 MiB: 6.12.117's raid5d double free needs one bio
# spread over stripes on both sides of the window (docs/kernels.md; fixed by 418b3e64e445 in
# 7.1); with it every 6.12 boot of this test could end in that oops.  The scenarios keep 1 MiB.
dd if=/dev/urandom of=/dev/md0 bs=4k seek=$(( start_mb * 256 )) count=2048 oflag=direct \
    status=none 2> "$out/dd.err" &
DD=$!
# the IO's own start: dd's first MiBs land behind the reshape position and complete; the write
# across it is the request that waits.  Its start is when dd's written bytes (wchar) last grew,
# sampled every 0.05 s, once they have stood still for 1 s (every 4 KiB write passes through
# raid5_make_request, so its stack no longer tells the blocked one: ci18's 1 MiB test did).
# One python3 samples it, then watches run.out for the F7 line: an awk and a date per sample,
# a grep per poll, took a vCPU from the front ends being measured and saw run's line up to
# 24 s late (7.2 guest, load 13, 2026-12-04).  Each time is written "wall uptime".
python3 - "$DD" "$out" <<'PY'
import re, sys, time
pid, out = sys.argv[1], sys.argv[2]
def stamp(name, wall):
    up = float(open("/proc/uptime").read().split()[0]) - (time.time() - wall)
    with open(f"{out}/{name}", "w") as fh:
        fh.write(f"{wall:.3f} {up:.3f}\n")
last = t_last = None
for _ in range(2400):
    try:
        with open(f"/proc/{pid}/io") as fh:
            w = next(ln for ln in fh if ln.startswith("wchar:")).split()[1]
    except (OSError, StopIteration):
        break
    now = time.time()
    if w != last:
        last, t_last = w, now
    elif now - t_last >= 1.0:
        stamp("t_blk", t_last)
        break
    time.sleep(0.05)
raised = re.compile(r" F7 md0 .* RAISED")
end = time.time() + 60
while time.time() < end:
    try:
        if raised.search(open(f"{out}/run.out").read()):
            stamp("t_f7", time.time())
            with open("/dev/kmsg", "w") as fh:   # the same moment on the printk clock
                fh.write("mdtrace-live: F7 line seen\n")
            break
    except OSError:
        pass
    time.sleep(0.05)
PY
t_blk=$(cut -d' ' -f1 "$out/t_blk" 2>/dev/null)
cpu_top > "$out/cpu_blocked.txt"
if [[ -f $out/t_f7 ]]; then
    t_f7=$(cut -d' ' -f1 "$out/t_f7")
    obs f7_run_latency_s "$(awk -v a="$t_io" -v b="$t_f7" 'BEGIN { printf "%.2f", b - a }')"
    [[ -n $t_blk ]] && obs f7_run_latency_from_block_s \
        "$(awk -v a="$t_blk" -v b="$t_f7" 'BEGIN { printf "%.2f", b - a }')"
    # 6.9+ logs its first refusal (raid5.c make_stripe_request, pr_err_ratelimited): the
    # blocked IO's exact start, compared on the printk clock with the watcher's mark (printk's
    # local_clock and /proc/uptime need not agree under TCG)
    ktime() { dmesg | grep -m1 -F "$1" | sed -E 's/^\[ *([0-9.]+)\].*/\1/'; }
    ref=$(ktime "io across reshape position") mark=$(ktime "mdtrace-live: F7 line seen")
    [[ -n $ref && -n $mark ]] && obs f7_run_latency_from_refusal_s \
        "$(awk -v a="$ref" -v b="$mark" 'BEGIN { printf "%.2f", b - a }')"
else
    obs f7_run_latency_s none
fi
wait_for 30 grep -q 'F7=1' "$out/scrapes.txt" && obs f7_scraped yes
if wait_for 30 sh -c "tmux capture-pane -p -t top | grep -q F7"; then
    sleep 1.5; obs f7_top yes
fi
pane > "$out/top_f7.txt"
# the one-shot diagnosis of the hang as it stands (no BPF; issue 11), and the real stacks
cat "/proc/$DD/stack" > "$out/dd.stack" 2>/dev/null
cat "/proc/$DD/stat" > "$out/dd.stat" 2>/dev/null
cpu_top > "$out/cpu_diagnose.txt"
t0=$(date +%s.%N)
MDTRACE_TIMINGS=1 timed diagnose_hung mdtw diagnose --format json > "$out/diagnose_hung.json" 2> "$out/diagnose_hung.err"
obs diagnose_hung "rc=$? in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s"
obs diagnose_hung_cost "$(cat "$out/diagnose_hung.cost")"

# -- the remedy ---------------------------------------------------------------------------------
echo idle > /sys/block/md0/md/sync_action
echo 200000 > /proc/sys/dev/raid/speed_limit_max
obs after_idle "$(cat /sys/block/md0/md/sync_action)"
# an oops (6.12.117's raid5d double free on the unfreeze) leaves 120 s before the host stops
# the guest (vmtest/runner.py Watch): from it on every wait below is short
oopsed() { dmesg | grep -qE 'kernel BUG at|Oops: |general protection fault'; }
if wait_for 60 sh -c "! kill -0 $DD || dmesg | grep -qE 'kernel BUG at|Oops: |general protection fault'" &&
        ! kill -0 "$DD" 2>/dev/null; then
    wait "$DD"; obs io_done "rc=$?"
else
    obs io_done blocked
fi
if oopsed; then
    obs kernel_oops "$(dmesg | grep -m1 -E 'kernel BUG at|Oops: |general protection fault')"
    wait_for 30 grep -q ' F11 md0 .* RAISED' "$out/run.out" && obs f11_run yes
    wait_for 30 grep -q 'F11=1' "$out/scrapes.txt" && obs f11_scraped yes
else
    wait_for 30 grep -q ' F7 md0 .* CLEARED' "$out/run.out" && obs f7_run_cleared yes
    wait_for 30 sh -c "tail -1 $out/scrapes.txt | grep -q 'F7=0'" && obs f7_scrape_zero yes
fi
touch "$out/stop_scrape"; sleep 1.5; kill "$SCRAPER" 2>/dev/null
# bound: the diagnose during the hang took 48.5 s on a loaded 2-core host (CI 2026-12-02,
# three live front ends attached); 3.3-6 s on a quiet one; 7.2 beside another guest 408 s, of
# it 244 s start-up without bytecode (now compiled above), /proc/kallsyms 95 s (2026-12-04)
cpu_top > "$out/cpu_after.txt"
MDTRACE_TIMINGS=1 timed diagnose_after timeout 400 mdtw diagnose --format json > "$out/diagnose_after.json" \
    2> "$out/diagnose_after.err"
obs diagnose_after "rc=$?"
obs diagnose_after_cost "$(cat "$out/diagnose_after.cost")"

# -- lvm: a raid5 LV reshaped (lvconvert --stripes) and suspended, the front ends still attached:
# the LV is one array named by its LVM name, its hidden sub-LVs are never arrays or series
V=(/dev/vdj /dev/vdk /dev/vdl /dev/vdm)
if ! oopsed && command -v lvcreate >/dev/null; then
    for d in "${V[@]}"; do wipefs -aq "$d"; done
    echo 200000 > /proc/sys/dev/raid/speed_limit_max
    pvcreate -q -y "${V[@]}" >/dev/null 2>&1 && vgcreate -q lvv "${V[@]}" >/dev/null 2>&1 &&
        lvcreate -q -y --type raid5 -i 2 -L 64M -n r5 lvv "${V[@]:0:3}" >/dev/null 2>&1
    wait_for 120 sh -c '[ "$(lvs --noheadings -o sync_percent lvv/r5 | tr -d " ")" = 100.00 ]'
    lvconvert -q -y --stripes 3 lvv/r5 > "$out/lvm_lvconvert.log" 2>&1 && obs lvm_lvconvert ok
    timeout 60 dmsetup suspend lvv-r5 && sleep 2 && timeout 60 dmsetup resume lvv-r5 && obs lvm_suspend_resume ok
    wait_for 180 sh -c 'dmsetup status lvv-r5 | grep -qw idle'
    obs lvm_done "$(dmsetup status lvv-r5 | cut -d' ' -f3-8)"
    obs lvm_disk "$(basename "$(readlink -f /dev/mapper/lvv-r5)")"
    sleep 3
    python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:10820/metrics", timeout=10).read().decode())' \
        > "$out/lvm_scrape.txt" 2>&1
    pane > "$out/top_lvm.txt"
    lvremove -q -y lvv/r5 >/dev/null 2>&1; vgremove -q -y lvv >/dev/null 2>&1
    pvremove -q -y "${V[@]}" >/dev/null 2>&1
else
    obs lvm "skipped: kernel oopsed or no lvm2"
fi

# -- stopping: run SIGINT, exporter SIGTERM, top `q` ---------------------------------------------
stopped() {  # stopped PID SECONDS -> STOPPED="rc=N after Xs" / "still running ..."
    local p=$1 t0 rc; t0=$(now)
    if wait_for "$2" sh -c "! kill -0 $p"; then
        wait "$p" 2>/dev/null; rc=$?
        STOPPED="rc=$rc after $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s"
    else
        STOPPED="still running after $2 s"
    fi
}
kill -INT "$RUN"; stopped "$RUN" 60; obs run_sigint "$STOPPED"
kill -TERM "$EXP"; stopped "$EXP" 60; obs exporter_sigterm "$STOPPED"
tmux send-keys -t top q
wait_for 60 test -f "$out/top.rc" && obs top_q "rc=$(cat "$out/top.rc")"
obs top_alternate_after "$(tmux display -p -t top '#{alternate_on}' 2>/dev/null)"
pane > "$out/top_after.txt"
tmux kill-server 2>/dev/null
sleep 1
obs leftovers_after_stop "$(leftovers)"

# after a kernel oops the host stops the guest 120 s later (vmtest/runner.py Watch): the
# parts below need more (two compiles), and the kernel is broken anyway
if oopsed; then
    obs late "skipped: the kernel oopsed"; obs burst "skipped: the kernel oopsed"
    mdadm --stop /dev/md0 > /dev/null 2>&1 &
    obs done yes
    exit 0
fi

# -- late start (issue 11): the hang first, then `run` and `exporter`; both SIGKILLed after ----
# md2 on its own disks: a raid5 reshape frozen, a write across its position, blocked before
# any mdtrace runs.  The start-up snapshot must show F7 before the probes compile (6.1: dd
# sleeps in raid5_make_request; 6.9+ busy-retries it, seen only once the probes attach).
L=(/dev/vdf /dev/vdg /dev/vdh /dev/vdi)
for d in "${L[@]}"; do wipefs -aq "$d"; done
echo 1000 > /proc/sys/dev/raid/speed_limit_min; echo 2000 > /proc/sys/dev/raid/speed_limit_max
mdadm --create /dev/md2 --run --level=5 --raid-devices=3 --size=64M --assume-clean \
    "${L[@]:0:3}" >> "$out/mdadm.log" 2>&1 && mdadm /dev/md2 --add "${L[3]}" >> "$out/mdadm.log" 2>&1
MDADM_NO_SYSTEMCTL=1 mdadm --grow /dev/md2 --raid-devices=4 >> "$out/mdadm.log" 2>&1
wait_for 60 sh -c 'c=$(cut -d" " -f1 /sys/block/md2/md/sync_completed); [ "$c" -ge 8192 ] 2>/dev/null'
echo frozen > /sys/block/md2/md/sync_action; sleep 1
pos=$(cat /sys/block/md2/md/reshape_position)
dd if=/dev/urandom of=/dev/md2 bs=4k seek=$(( (pos / 2048 > 4 ? pos / 2048 - 4 : 0) * 256 )) \
    count=2048 oflag=direct status=none 2> "$out/late_dd.err" &   # 4 KiB: see md0's write
LDD=$!
sleep 8            # blocked 8 s before mdtrace starts
obs late_hang "$(cat /sys/block/md2/md/sync_action) pos=$pos dd=$(cut -d' ' -f3 /proc/$LDD/stat 2>/dev/null)"
t_late=$(date +%s.%N)
mdtw run --threshold io_wait_s=5 --interval 0.5 > "$out/late_run.out" 2> "$out/late_run.err" &
LRUN=$!
if wait_for 720 grep -q ' F7 md2 .* RAISED' "$out/late_run.out"; then
    obs late_f7_after_s "$(awk -v a="$t_late" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
    obs late_snapshot_line "$(grep -m1 'start-up snapshot' "$out/late_run.err")"
else
    obs late_f7_after_s none
fi
# the exporter once run has answered (measured alone, as an engineer would start it)
mdtw exporter --threshold io_wait_s=5 --listen 127.0.0.1:10821 > "$out/late_exp.out" \
    2> "$out/late_exp.err" &
LEXP=$!
if wait_for 720 grep -q 'exporter serving' "$out/late_exp.err"; then
    # the first scrape (6.1: F7 from the start-up snapshot), then every 0.5 s up to 30 s (6.9+:
    # the busy-retried write is seen only once the exporter's own probes report it)
    t_serve=$(date +%s.%N)
    for ((i = 0; i < 60; i++)); do
        body=$(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:10821/metrics", timeout=10).read().decode())' 2>&1)
        ((i == 0)) && printf '%s\n' "$body" > "$out/late_scrape_first.txt"
        if grep -q '^mdtrace_findings_active{code="F7"} [1-9]' <<< "$body"; then
            ((i == 0)) && obs late_first_scrape_f7 yes
            obs late_scrape_f7_after_s "$(awk -v a="$t_serve" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
            break
        fi
        sleep 0.5
    done
fi
wait_for 720 grep -q 'running (bcc source' "$out/late_run.err" && \
    obs late_attached_after_s "$(awk -v a="$t_late" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
obs leftovers_while_recording "$(leftovers)"
echo idle > /sys/block/md2/md/sync_action; echo 200000 > /proc/sys/dev/raid/speed_limit_max
if wait_for 60 sh -c "! kill -0 $LDD"; then wait "$LDD"; obs late_io_done "rc=$?"; else obs late_io_done blocked; fi
wait_for 30 grep -q ' F7 md2 .* CLEARED' "$out/late_run.out" && obs late_f7_cleared yes

# -- SIGKILL of both: their watchers (mdtrace/kernel/reaper.py) remove what they left ----------
kill -KILL "$LRUN" "$LEXP"; wait "$LRUN" "$LEXP" 2>/dev/null; t_kill=$(now)
wait_for 30 clean_now || true
obs sigkill_clean_after_s "$(awk -v a="$t_kill" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
obs leftovers_after_sigkill "$(leftovers)"
mdtw doctor --json > "$out/doctor.json" 2>&1
obs doctor_stale "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print([c["detail"] for c in d["checks"] if c["name"] == "stale_probes"][0])' "$out/doctor.json" 2>&1 | head -c 300)"
timeout 60 mdadm --stop /dev/md2 > /dev/null 2>&1

# -- forced ring-buffer loss: a 1-page ring, the recorder stopped 4 s during a raid1 resync ------
if dmesg | grep -qE 'kernel BUG at|Oops: |general protection fault'; then
    obs burst "skipped: the kernel oopsed (md0 cannot be stopped)"
else
    timeout 60 mdadm --stop /dev/md0 > /dev/null 2>&1
    for d in "${D[@]:0:2}"; do mdadm --zero-superblock "$d" 2>/dev/null; wipefs -aq "$d"; done
    echo 1000 > /proc/sys/dev/raid/speed_limit_max
    mdadm --create /dev/md1 --run --level=1 --raid-devices=2 --size=64M "${D[@]:0:2}" \
        >> "$out/mdadm.log" 2>&1
    mdtw record -o "$out/burst.jsonl.gz" --ringbuf-pages 1 --duration 40 \
        > "$out/burst_record.log" 2>&1 &
    BR=$!
    if wait_for 480 grep -q 'recording to' "$out/burst_record.log"; then
        # stopped, it reads nothing: 40 idle/check rounds make the daemon run, reap and
        # restart the sync (hundreds of events) into a ring that holds ~17
        sleep 3; kill -STOP "$BR"
        for ((i = 0; i < 40; i++)); do
            echo idle > /sys/block/md1/md/sync_action 2>/dev/null
            echo check > /sys/block/md1/md/sync_action 2>/dev/null
        done
        sleep 1; kill -CONT "$BR"
        wait "$BR"; obs burst "rc=$? $(grep -o 'stopped: .*' "$out/burst_record.log")"
    else
        kill "$BR" 2>/dev/null; obs burst "recorder not attached in 480 s"
    fi
    timeout 60 mdadm --stop /dev/md1 > /dev/null 2>&1
fi
obs leftovers_after_next "$(leftovers)"
mdadm --stop /dev/md0 > /dev/null 2>&1 &
obs done yes
exit 0
