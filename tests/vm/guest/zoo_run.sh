#!/bin/bash
# Zoo guest driver (vmtest/zoo/run.py): load the variant's md_mod/raid456/dm_raid in place of
# the stock modules, prove which ones are loaded ($MDTRACE_OUT/zoo_loaded.txt), then run the
# named zoo scenarios (tests/vm/guest/zoo_scen_NAME.sh) with the project's driver
# (run_scenarios.sh: one boot recorder, bounded steps, report per scenario).
#   env: ZOO_VARIANT (stock | p1 | p2 | p3 ...); the host copies the variant's .ko files to
#        $MDTRACE_OUT/zoo_modules/ before the boot.  SCEN_TIMEOUT as in run_scenarios.sh.
set -u
out=${MDTRACE_OUT:?}
src=/mnt/src/tests/vm/guest
variant=${ZOO_VARIANT:-stock}
# mdtrace judges the hangs here, not the kernel's watchdog (whose first "blocked for more than"
# line would also make the host stop the boot: vmtest/runner.py KERNEL_FAILURE)
echo 0 > /proc/sys/kernel/hung_task_timeout_secs
modprobe -a async_raid6_recov async_pq async_xor async_memcpy async_tx raid6_pq libcrc32c dm-mod
if [[ $variant != stock ]]; then
    # udev/mdadm may have loaded the stock md modules at boot: out with them (no array yet)
    for m in dm_raid raid456 raid10 raid1 raid0 linear md_mod; do
        [[ -d /sys/module/$m ]] || continue
        rmmod "$m" && echo "zoo: unloaded stock $m" || { echo "zoo: rmmod $m failed"; exit 3; }
    done
    for m in md-mod raid456 dm-raid; do
        if ! insmod "$out/zoo_modules/$m.ko"; then
            echo "zoo: insmod $m.ko failed"; dmesg | tail -5; exit 3
        fi
    done
fi
modprobe raid456; modprobe dm-raid; modprobe raid1
# Proof of what is loaded: the marker parameter exists only in zoo builds; out-of-tree modules
# taint O (and E: unsigned); the stock ones come from /lib/modules and taint nothing.
bad=0
for m in md_mod raid456 dm_raid; do
    loaded=$(cat /sys/module/$m/parameters/zoo_variant 2>/dev/null || echo stock)
    printf '%s variant=%s taint=%s btf=%s stock_file=%s\n' "$m" "$loaded" \
        "$(cat /sys/module/$m/taint 2>/dev/null)" \
        "$([[ -e /sys/kernel/btf/$m ]] && echo yes || echo no)" "$(modinfo -n $m 2>/dev/null)"
    [[ $loaded == "$variant" ]] || bad=1
done > "$out/zoo_loaded.txt"
cat "$out/zoo_loaded.txt"
if ((bad)); then echo "zoo: loaded modules are not variant $variant"; exit 4; fi
echo "zoo: variant $variant loaded on $(uname -r)"
g=/tmp/zoo-guest
mkdir -p "$g/scenarios"
cp "$src"/run_scenarios.sh "$src"/lib.sh "$src"/record.sh "$src"/capture_btf.sh "$g/"
for s in "$@"; do
    cp "$src/zoo_scen_$s.sh" "$g/scenarios/$s.sh" || { echo "zoo: no scenario $s"; exit 5; }
done
CAPTURE_BTF=0 bash "$g/run_scenarios.sh" "$@"
