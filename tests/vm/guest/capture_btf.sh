#!/bin/bash
# Guest: capture BTF blobs, kernel facts and probe-ability of the functions mdtrace cares about
# into $MDTRACE_OUT/btf/<uname -r>/.  kallsyms addresses are zeroed (KASLR: never ship them).
set -euo pipefail
rel=$(uname -r)
dst=$MDTRACE_OUT/btf/$rel
mkdir -p "$dst"
modprobe raid456
modprobe dm-raid
modprobe raid1 || true
uname -r > "$dst/uname_r"
for m in vmlinux md_mod raid456 dm_raid dm_mod raid1; do
    if [[ -e /sys/kernel/btf/$m ]]; then
        cp "/sys/kernel/btf/$m" "$dst/$m.btf"
    else
        echo "$m" >> "$dst/missing_btf"
    fi
done
# the md/dm functions mdtrace probes or whose presence matters per version: name, or name.isra.N etc.
funcs="md_check_recovery md_do_sync md_reap_sync_thread md_register_thread md_unregister_thread
mddev_suspend mddev_resume mddev_suspend_and_lock stop_sync_thread md_frozen_sync_thread
md_unfrozen_sync_thread md_idle_sync_thread raid5_make_request md_handle_request
make_stripe_request raid5_prepare_suspend raid5_start_reshape md_start_sync action_store
__md_stop_writes md_stop md_set_readonly dm_suspend dm_resume raid_message raid_postsuspend
raid_preresume raid_resume raid_presuspend raid_presuspend_undo raid_dtr raid_ctr raid_map
raid_status md_wakeup_thread md_new_event md_error mddev_unlock do_md_run md_run
reshape_request raid5d md_thread"
awk -v want="$funcs" 'BEGIN { n = split(want, w, /[ \n]+/); for (i = 1; i <= n; i++) if (w[i] != "") W[w[i]] = 1 }
{ name = $3; base = name; sub(/\..*/, "", base)
  if (base in W) { printf "0000000000000000 %s %s%s\n", $2, name, (NF > 3 ? " " $4 : ""); seen[base] = 1 } }
END { for (f in W) if (!(f in seen)) print f > "/dev/stderr" }' /proc/kallsyms \
    2> "$dst/kallsyms_missing.txt" | sort -k3 > "$dst/kallsyms.txt"
sort -o "$dst/kallsyms_missing.txt" "$dst/kallsyms_missing.txt"
grep -E '^CONFIG_(KPROBES|KPROBE_EVENTS|BPF_EVENTS|DEBUG_INFO_BTF|DEBUG_INFO_BTF_MODULES|MD_RAID456|MD_RAID1|DM_RAID|BLK_DEV_MD|FUNCTION_TRACER|FPROBE|DYNAMIC_FTRACE)=' \
    "/boot/config-$rel" > "$dst/config.txt" || true
# available_filter_functions says what kprobes/fentry can attach to (inlined ones are absent)
tr=/sys/kernel/tracing; [[ -d $tr/events ]] || mount -t tracefs nodev $tr 2>/dev/null || true
if [[ -r $tr/available_filter_functions ]]; then
    awk -v want="$funcs" 'BEGIN { n = split(want, w, /[ \n]+/); for (i = 1; i <= n; i++) if (w[i] != "") W[w[i]] = 1 }
    { name = $1; base = name; sub(/\..*/, "", base); if (base in W) print }' \
        "$tr/available_filter_functions" | sort > "$dst/traceable.txt"
fi
ls -l "$dst"
wc -l "$dst/kallsyms.txt" "$dst/kallsyms_missing.txt"
