"""`mdtrace diagnose` on hangs that already exist, on the 6.1 and 6.12 guest kernels (issue 11).

tests/vm/guest/diagnose_hangs.sh creates each hang FIRST and runs `mdtrace diagnose` only
afterwards, then applies the remedy and diagnoses again: healthy arrays (idle, resyncing,
reshaping freely); `echo idle > sync_action` blocked in the sync thread's stop (the resync IO
queued on a suspended dm-linear member); an lvm raid5 LV reshaping, `dmsetup suspend`ed with a
write queued; a read-only reshape with a write and a read across its position (where 6.12.117's
raid5d double free may strike on `--readwrite`: then F11 is checked).  hung_task_timeout_secs
is 10 s in the guest (the host expects the hung-task reports: run_script(expect_hung_tasks=True)).
The stop and lvm hangs are diagnosed a second time with /proc/kcore masked (/dev/null bind-mounted
over it in a private mount namespace, as container runtimes do): the kernel state then comes
from the BPF probe fallback, and the answer must be the kcore one's.
One boot per kernel; a boot the kernel itself crashed (a panic, no exit code) is run once more.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from vmtest.recipe import KERNELS, tier_kernels

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("MDTRACE_VM_OUT", ROOT / "out" / "vm")) / "diagnose"
SCRIPT = ROOT / "tests/vm/guest/diagnose_hangs.sh"
BOOTS = 2                # a boot the kernel itself crashed is run again once
DIAG_TARGET_S = 10.0     # issue 11: start to answer under TCG (printed; asserted with margin)
DIAG_LIMIT_S = 30.0


class Guest:
    def __init__(self, rel: str, d: Path, res: Any) -> None:
        self.rel, self.d, self.res = rel, d, res
        self.obs: dict[str, str] = {}
        for line in (d / "obs.txt").read_text().splitlines() if (d / "obs.txt").exists() else []:
            k, _, v = line.partition(" ")
            self.obs.setdefault(k, v)

    def diag(self, name: str) -> dict[str, Any]:
        p = self.d / f"{name}.json"
        assert p.exists(), (name, self.obs.get(f"diag_{name}"),
                            (self.d / f"{name}.err").read_text()[-1500:]
                            if (self.d / f"{name}.err").exists() else "")
        return json.loads(p.read_text())

    def rc(self, name: str) -> int:
        v = self.obs.get(f"diag_{name}", "")
        assert v.startswith("rc="), (name, v)
        return int(v.split()[0][3:])

    def took(self, name: str) -> float:
        return float(self.obs[f"diag_{name}"].split(" in ")[1].split("s")[0])


def active(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f.get("active", True)]


def codes(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((f["code"], f["array"]) for f in active(doc))


def boot(kernel: str):  # -> RunResult | None (None: the kernel failed in every boot)
    """A guest job (conftest.py: runs in the kernel's lane)."""
    from failed_boot import keep_failed_boot
    from vm_wheel import wheel_into

    from vmtest import image_for, run_script

    rel = KERNELS[kernel]
    out = OUT / rel
    d = out / "diagnose"
    # mdtrace as installed (bytecode compiled in the guest, as pip does): the answer time
    # measured is an installed mdtrace's, not the shared tree's compile-every-import one
    wheel_into(out / "wheel")
    for boot in range(1, BOOTS + 1):
        res = run_script(image_for(kernel), kernel, str(SCRIPT), disks=14, disk_mb=256,
                         timeout_s=1800, out_dir=str(out), expect_hung_tasks=True)
        print(f"\nmdtrace vm diagnose: {res.summary()}; {len(res.hung_tasks)} hung-task "
              "reports (expected)", file=sys.stderr)
        if res.rc is not None or not res.kernel_failure:
            return res
        # the kernel crashed before the script could finish (6.12.117's raid5d double free
        # can panic the guest): a known kernel bug (docs/kernels.md); that boot is kept
        kept = out / f"diagnose-kernel-failure-boot{boot}"
        keep_failed_boot(out, d, kept)
        print(f"NOTE {rel}: kernel failure in diagnose boot {boot} ({res.kernel_failure}); "
              f"kept in {kept}", file=sys.stderr)
    return None


GUEST_JOB = ("guest", boot)


@pytest.fixture(scope="module", params=tier_kernels())
def guest(request: pytest.FixtureRequest, guest_lanes) -> Guest:
    from vmtest.scenarios import tier_problem

    why = tier_problem(request.param)
    if why:
        msg = f"!! diagnose vm tests SKIPPED (real kernel NOT exercised): {why}"
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    rel = KERNELS[request.param]
    d = OUT / rel / "diagnose"
    res = guest_lanes.result(__name__, request.param)
    if res is None:
        msg = (f"!! diagnose vm tests on {rel} SKIPPED: the kernel failed in all {BOOTS} boots "
               f"(a known {rel} bug, docs/kernels.md): diagnose NOT checked on this kernel")
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    g = Guest(rel, d, res)
    for k, v in sorted(g.obs.items()):
        if k.startswith(("diag_", "stop_", "lvm_", "ro_", "kernel_oops", "healthy")):
            print(f"  {rel} {k}: {v}", file=sys.stderr)
    assert res.rc == 0 and not res.wedged, res.summary() + "\n" + res.output[-3000:]
    assert "error" not in g.obs, g.obs["error"]
    return g


def test_healthy_arrays_give_no_finding(guest: Guest) -> None:
    """md1 resyncing, md2 idle, md3 reshaping freely: exit 0, no finding, the three arrays."""
    doc = guest.diag("healthy")
    assert guest.rc("healthy") == 0, codes(doc)
    assert active(doc) == []
    names = set(doc["arrays"])
    assert {"md1", "md2", "md3"} <= names, names


def test_diagnose_answers_within_the_target(guest: Guest) -> None:
    # the *_bpf runs compile the kcore-masked fallback's probe: timed apart (test below)
    times = {k[5:]: guest.took(k[5:]) for k in guest.obs
             if k.startswith("diag_") and not k.endswith("_bpf")}
    print(f"\n  {guest.rel} diagnose start-to-answer (s): {times}; target {DIAG_TARGET_S} s: "
          f"{'met' if max(times.values()) <= DIAG_TARGET_S else 'NOT met'}", file=sys.stderr)
    # the median: a single run can take 50 s when 6.12's busy-retried read holds one of the
    # two vCPUs on a host loaded by other guests (measured; docs/diagnose.md)
    assert times and statistics.median(times.values()) <= DIAG_LIMIT_S, times


def _task(doc: dict[str, Any], pid: int) -> dict[str, Any]:
    t = [b for b in doc["blocked_tasks"] if b["pid"] == pid or b["tid"] == pid]
    assert t, (pid, [(b["pid"], b["comm"]) for b in doc["blocked_tasks"]])
    return t[0]


def _pid(v: str) -> int:
    return int(v.split("pid=")[1].split()[0])


def test_echo_idle_blocked_in_the_stop_is_f12_then_clean(guest: Guest) -> None:
    """md4 raid1 on dm-linear legs, resyncing; dleg1 suspended; `echo idle` (sh) blocks in the
    stop: F12 names md4, sh with its pid and blocked time, md4_resync, the suspended member,
    and the remedy `dmsetup resume dleg1`; after it the echo returns and diagnose is clean."""
    o = guest.obs
    assert o.get("stop_blocked", "").startswith("yes"), o.get("stop_blocked")
    doc = guest.diag("stop_hung")
    assert guest.rc("stop_hung") == 1
    assert codes(doc) == [("F12", "md4")], codes(doc)
    f12 = active(doc)[0]
    pid = _pid(o["stop_blocked"])
    assert f"sh (pid {pid}," in f12["explanation"], f12["explanation"]
    assert "md4_resync" in f12["explanation"]
    assert "dleg1 is a suspended dm device" in f12["explanation"], f12["explanation"]
    assert "`dmsetup resume dleg1`" in f12["remedy"], f12["remedy"]
    sh = _task(doc, pid)
    assert sh["state"] == "D" and sh["wait"] == "sync_stop" and sh["array"] == "md4", sh
    assert sh["blocked_s"] is not None and sh["blocked_s"] > 0, sh
    # the kernel's own hung-task report of the same task, for the side-by-side
    assert f"task sh:{pid} blocked for more than" in o.get("stop_hung_task", ""), o
    assert o.get("stop_echo_done", "").startswith("rc=0"), o.get("stop_echo_done")
    assert guest.rc("stop_after") == 0, codes(guest.diag("stop_after"))


def test_lvm_lv_suspended_with_a_write_queued_is_f15_by_its_lvm_name(guest: Guest) -> None:
    """lvd/r5 reshaping (lvconvert --stripes 3), `dmsetup suspend lvd-r5`, a direct write
    queued: F15 on the LV (named lvd-r5, never a _rimage/_rmeta sub-LV), dd with its pid,
    remedy `dmsetup resume lvd-r5`; after it the write completes and diagnose is clean."""
    o = guest.obs
    assert o.get("lvm_dd", "").startswith("blocked"), o.get("lvm_dd")
    doc = guest.diag("lvm_hung")
    assert guest.rc("lvm_hung") == 1
    found = active(doc)
    assert [f["code"] for f in found] == ["F15"], codes(doc)
    f15 = found[0]
    assert f15["title"] == "IO parked on suspended lvd-r5", f15["title"]
    assert "`dmsetup resume lvd-r5`" in f15["remedy"], f15["remedy"]
    pid = _pid(o["lvm_dd"])
    assert f"dd (pid {pid}," in f15["explanation"], f15["explanation"]
    arrays = doc["arrays"]
    assert [a["dm_name"] for a in arrays.values()] == ["lvd-r5"], arrays.keys()
    ks = next(iter(arrays.values()))["kernel_state"]
    # the LV's own mddev, read from /proc/kcore through dm's name index (dm_registry.py)
    assert ks.get("read") and ks["source"] == "/proc/kcore" and ks["suspended"] == 1, ks
    assert not any("rimage" in json.dumps(b) or "rmeta" in json.dumps(b)
                   for b in doc["blocked_tasks"])
    assert o.get("lvm_dd_done", "").startswith("rc=0"), o.get("lvm_dd_done")
    assert guest.rc("lvm_after") == 0, codes(guest.diag("lvm_after"))


def test_read_only_reshape_write_refused_read_is_f7_then_clean(guest: Guest) -> None:
    """md5 reshaping, `mdadm --readonly` mid-reshape.  A direct write across the position is
    refused at once (EPERM: blkdev_write_iter's bdev_read_only check; md_set_readonly set the
    disk read-only), so it cannot hang.  A direct read across it: 6.1 sleeps in
    raid5_make_request (D): F7 read_only naming dd, remedy --readwrite, then clean.  6.12.117:
    the read meets the reshape window and raid5d dies in the double free (418b3e64e445 is
    missing; docs/kernels.md), seen so far at once: then F11 + F7 (md_thread_dead), reboot."""
    o = guest.obs
    assert "Operation not permitted" in o.get("ro_write", ""), o.get("ro_write")
    if "kernel_oops" in o:
        test_the_612_raid5d_oops_is_f11_reboot(guest)
        return
    doc = guest.diag("ro_hung")
    found = {f["code"]: f for f in active(doc)}
    print(f"\n  {guest.rel} read-only reshape: read {o.get('ro_read')}; diagnose "
          f"{codes(doc)}", file=sys.stderr)
    assert o.get("ro_read", "").startswith("blocked"), o
    # 6.1 sleeps (D, raid5_make_request); 6.9+ busy-retries (R): seen through the kernel
    # log's refusals and the device dd holds open (sources/snapshot requeue_series)
    assert ("state=D" if guest.rel.startswith("6.1.") else "state=") in o["ro_read"], o
    assert set(found) == {"F7"}, codes(doc)
    assert "read_only" in found["F7"]["title"] and "--readwrite" in found["F7"]["remedy"]
    dd = _task(doc, _pid(o["ro_read"]))
    assert dd["wait"] == "reshape_io" and dd["array"] == "md5", dd
    # 6.12.117 ends the retried read with ENOMEM once the reshape moves (docs/kernels.md)
    assert o.get("ro_read_done", "").startswith(
        "rc=0" if guest.rel.startswith("6.1.") else "rc="), o.get("ro_read_done")
    assert guest.rc("ro_after") == 0, codes(guest.diag("ro_after"))


def test_the_612_raid5d_oops_is_f11_reboot(guest: Guest) -> None:
    """Where the kernel oopsed (6.12.117's raid5d double free: random, docs/kernels.md), the
    diagnose run after it: F11 for md5 naming the dead md5_raid5 and the BUG, remedy reboot,
    and the stranded read's F7 says md_thread_dead (reboot), not --readwrite.  The remedy
    (a reboot) cannot be applied inside the boot: no second diagnose."""
    o = guest.obs
    if "kernel_oops" not in o:
        pytest.skip(f"{guest.rel}: no kernel oops in this boot (random on 6.12.117; 6.1 has "
                    "no such bug)")
    print(f"\nNOTE {guest.rel}: kernel bug reproduced: {o['kernel_oops']} "
          f"({o.get('kernel_oops_task')})", file=sys.stderr)
    doc = guest.diag("oops")
    assert guest.rc("oops") == 1
    found = {f["code"]: f for f in active(doc)}
    assert "F11" in found and found["F11"]["array"] == "md5", codes(doc)
    f11 = found["F11"]
    assert "md5_raid5" in f11["explanation"] and "kernel BUG at mm/slub.c:550" in \
        f11["explanation"], f11["explanation"]
    assert f11["remedy"].startswith("reboot"), f11["remedy"]
    assert set(found) <= {"F7", "F11"}, codes(doc)
    if "F7" in found:
        assert "md_thread_dead" in found["F7"]["title"], found["F7"]["title"]
        assert found["F7"]["remedy"].startswith("reboot"), found["F7"]["remedy"]


def test_lvm_suspend_draining_a_write_stuck_on_the_frozen_reshape_is_f9(guest: Guest) -> None:
    """Before 6.9 only (41425f96d7aa): the LV's reshape frozen by `dmsetup message ... frozen`,
    a direct write across the position asleep in raid5_make_request, then `dmsetup suspend`
    waiting for it to drain (D, in __dm_suspend's synchronize_srcu): F9, the chain dd ->
    reshape -> dmsetup -> dd, on the LV.  Its remedy, applied: `dmsetup message lvd-r5 0 idle`
    (the suspend then completes), `dmsetup resume lvd-r5`; then the write ends, clean."""
    o = guest.obs
    if "chain_skipped" in o:   # loud: this boot did not exercise the chain
        pytest.skip(f"!! {guest.rel}: chain NOT exercised: {o['chain_skipped']}")
    if "chain_suspend" not in o:
        pytest.skip(f"{guest.rel}: the chain needs `dmsetup message frozen` and a sleeping "
                    "raid5_make_request (before 6.9)")
    print(f"\n  {guest.rel} chain: {o.get('chain_dd')}; suspend {o['chain_suspend']}; "
          f"idle {o.get('chain_idle')}; suspend {o.get('chain_suspend_done')}; dd "
          f"{o.get('chain_dd_done')}", file=sys.stderr)
    assert o["chain_suspend"].startswith("blocked"), o["chain_suspend"]
    doc = guest.diag("chain_hung")
    found = {f["code"]: f for f in active(doc)}
    assert "F9" in found, codes(doc)
    f9 = found["F9"]
    assert f9["array"] == "dm-6" or "lvd-r5" in f9["explanation"], f9
    assert f"dd/{_pid(o['chain_dd'])} " in f9["explanation"], f9["explanation"]
    assert "dmsetup" in f9["explanation"], f9["explanation"]
    assert "`dmsetup message lvd-r5 0 idle`" in f9["remedy"], f9["remedy"]
    assert o.get("chain_suspend_done", "").startswith("rc=0"), o.get("chain_suspend_done")
    assert o.get("chain_dd_done", "").startswith("rc=0"), o.get("chain_dd_done")
    assert guest.rc("chain_after") == 0, codes(guest.diag("chain_after"))


# the kernel's words that stand still while the array hangs (curr_resync and the counters may
# move between the two runs a minute apart: printed, not compared)
STABLE = ("recovery", "recovery_raw", "flags", "sb_flags", "ro", "suspended", "sync_thread",
          "level", "reshape_position", "resync_max_sectors")


@pytest.mark.parametrize("name,array", [("stop_hung", "md4"), ("lvm_hung", "dm-")])
def test_kcore_masked_the_bpf_probe_gives_the_same_answer(guest: Guest, name: str,
                                                          array: str) -> None:
    """/proc/kcore masked: the note names why kcore was not read, kernel_state comes from
    the BPF probe (array_state_show for md4, raid_status for the lvm LV), the findings and
    the kernel's words equal the kcore run's."""
    if f"diag_{name}" not in guest.obs:
        pytest.skip(f"{guest.rel}: the {name} hang was not created in this boot")
    ref, fb = guest.diag(name), guest.diag(f"{name}_bpf")
    took = guest.took(f"{name}_bpf")
    print(f"\n  {guest.rel} {name} with /proc/kcore masked: rc {guest.rc(f'{name}_bpf')} in "
          f"{took:.1f} s (kcore run {guest.took(name):.1f} s); "
          f"{guest.obs.get(f'timings_{name}_bpf')}", file=sys.stderr)
    assert guest.rc(f"{name}_bpf") == guest.rc(name)
    assert codes(fb) == codes(ref), (codes(fb), codes(ref))
    assert [f["title"] for f in active(fb)] == [f["title"] for f in active(ref)]
    assert any("/proc/kcore: masked" in n and "bpf probe" in n for n in fb["notes"]), fb["notes"]
    names = [n for n in ref["arrays"] if n.startswith(array)]
    assert names, ref["arrays"].keys()
    for n in names:
        k, b = ref["arrays"][n]["kernel_state"], fb["arrays"][n]["kernel_state"]
        assert b.get("read") and b["source"].startswith("bpf probe"), b
        # dm-raid's mddev is never on all_mddevs (raid_ctr -> mddev_init): kcore finds it
        # through dm's name index (sources/snapshot/dm_registry.py)
        assert k.get("read") and k["source"] == "/proc/kcore", k
        print(f"  {guest.rel} {n}: kcore {k['recovery']} {k['flags']} curr_resync "
              f"{k['curr_resync']} active_io {k['active_io']}; bpf {b['recovery']} "
              f"{b['flags']} curr_resync {b['curr_resync']} active_io {b['active_io']}",
              file=sys.stderr)
        assert {f: b[f] for f in STABLE} == {f: k[f] for f in STABLE}, (n, k, b)


def test_module_symbols_without_kallsyms_are_kallsyms_own(guest: Guest) -> None:
    """md_mod's all_mddevs and dm's name index from the modules' own .ko files (ELF symtab +
    /sys/module/<mod>/sections, build-id checked: modsyms.py) equal /proc/kallsyms' addresses
    in this kernel, and every diagnose of the boot took that route (kallsyms never read)."""
    got = guest.obs.get("modsyms", "")
    print(f"\n  {guest.rel} modsyms: {got}", file=sys.stderr)
    assert "all_mddevs=same" in got, got
    assert "name_rb_tree=same" in got or "_name_buckets=same" in got, got
    assert "differ" not in got and "none" not in got, got
    timed = {k: v for k, v in guest.obs.items() if k.startswith("timings_")}
    assert timed, guest.obs.keys()
    for k, v in timed.items():
        assert "kernel_state.module_symtab" in v and "kernel_state.kallsyms" not in v, (k, v)
