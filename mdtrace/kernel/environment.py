"""What `mdtrace doctor` checks: can live md tracing work on this machine, and if not, why.

Each check is a small function returning a :class:`Check` (ok / problem, plain words, what to
do).  Paths are parameters so tests can point them at fake trees.  No check raises.

Advice is checked before it is given: ``modprobe X`` only when X's module file is in
/lib/modules/<release> (else: built in, or not there at all), ``apt-get install P`` only when
the package manager knows P (:func:`package_known`; tests pass a package list file).
"""

from __future__ import annotations

import gzip
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mdtrace.kernel.headers import headers_problem
from mdtrace.kernel.offsets import find_blob

CAP_BPF = 39
CAP_SYS_ADMIN = 21


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = True   # a failed blocking check makes live md tracing impossible

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Paths:
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    boot: Path = Path("/boot")
    release: str = field(default_factory=platform.release)
    lib_modules: Path = Path("/lib/modules")
    # one package name a line (tests); None: ask apt-cache
    package_list: Path | None = None
    # answers of package_known for this run (apt-cache takes ~1 s a question)
    known: dict[str, bool | None] = field(default_factory=dict, repr=False, compare=False)
    # module BTF made from DWARF (mdtrace.kernel.dwarf_btf), for kernels that build none
    btf_cache: Path = Path("/var/cache/mdtrace/btf")


# -- checked advice --------------------------------------------------------------------------


def module_file(paths: Paths, mod: str) -> str:
    """'module' (a loadable .ko in /lib/modules/<release>, per modules.dep), 'builtin'
    (modules.builtin) or '' (neither: modprobe would fail).  Names compare with - and _ alike,
    as modprobe does (md_mod is md-mod.ko)."""
    base = paths.lib_modules / paths.release
    want = mod.replace("-", "_")

    def listed(name: str) -> bool:
        for line in (_read(base / name) or "").splitlines():
            path = line.split(":", 1)[0].strip()
            stem = path.rsplit("/", 1)[-1].split(".ko", 1)[0]
            if stem.replace("-", "_") == want:
                return True
        return False

    if listed("modules.dep"):
        return "module"
    if listed("modules.builtin"):
        return "builtin"
    return ""


def modprobe_advice(paths: Paths, *mods: str) -> str:
    """``modprobe`` for the modules that exist as files for this kernel; plain words for the
    rest (built in: nothing to load; absent: this kernel has no such driver)."""
    loadable = [m for m in mods if module_file(paths, m) == "module"]
    absent = [m for m in mods if module_file(paths, m) == ""]
    parts = []
    if loadable:
        parts.append(f"modprobe {' '.join(loadable)}")
    if absent:
        where = paths.lib_modules / paths.release
        have = "" if (where / "modules.dep").is_file() else ", no modules.dep there"
        pkg = next((p for p in (f"linux-modules-extra-{paths.release}",
                                f"linux-image-{paths.release}")
                    if package_known(paths, p)), "")
        todo = f"apt-get install {pkg}" if pkg else \
            "boot a kernel built with md (CONFIG_BLK_DEV_MD, CONFIG_MD_RAID456, CONFIG_DM_RAID)"
        parts.append(f"kernel {paths.release} has no {'/'.join(absent)} module ({where}"
                     f"{have}): {todo}")
    return "; ".join(parts) or f"{'/'.join(mods)} built in: nothing to load"


def package_known(paths: Paths, name: str) -> bool | None:
    """Does the package manager know package ``name``?  None when it cannot be asked."""
    if name not in paths.known:
        paths.known[name] = _ask_package(paths, name)
    return paths.known[name]


def _ask_package(paths: Paths, name: str) -> bool | None:
    if paths.package_list is not None:
        text = _read(paths.package_list)
        return None if text is None else name in {ln.strip() for ln in text.splitlines()}
    if shutil.which("apt-cache") is None:
        return None
    try:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", name],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.returncode == 0 and "Package:" in r.stdout


def _read(p: Path) -> str | None:
    try:
        return p.read_text()
    except OSError:
        return None


def check_privileges(paths: Paths) -> Check:
    status = _read(paths.proc / "self" / "status") or ""
    eff = 0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            eff = int(line.split()[1], 16)
    has = bool(eff & (1 << CAP_SYS_ADMIN)) or bool(eff & (1 << CAP_BPF))
    if os.geteuid() == 0 or has:
        return Check("privileges", True, "running with root / CAP_BPF+CAP_PERFMON")
    return Check("privileges", False, "not root and no CAP_BPF/CAP_SYS_ADMIN",
                 "run as root (sudo mdtrace ...)")


def check_unprivileged_bpf(paths: Paths) -> Check:
    v = (_read(paths.proc / "sys/kernel/unprivileged_bpf_disabled") or "").strip()
    return Check("unprivileged_bpf", True,
                 f"kernel.unprivileged_bpf_disabled={v or '?'} (mdtrace needs root anyway)",
                 blocking=False)


def check_bcc() -> Check:
    try:
        import bcc  # noqa: F401, PLC0415
    except ImportError:
        return Check("bcc", False, "bcc (python3-bpfcc) is not importable from this Python",
                     "run scripts/setup-bcc.sh, then scripts/bootstrap.sh (venv symlink)")
    except Exception as exc:  # noqa: BLE001 - libbcc.so missing raises OSError etc.
        return Check("bcc", False, f"bcc import failed: {exc}", "reinstall libbpfcc")
    return Check("bcc", True, "bcc importable")


def check_headers(paths: Paths) -> Check:
    why = headers_problem(paths.release)
    if why is None:
        return Check("kernel_headers", True, f"kernel headers for {paths.release} found")
    pkg = f"linux-headers-{paths.release}"
    known = package_known(paths, pkg)
    if known is False:
        build = paths.lib_modules / paths.release / "build"
        return Check("kernel_headers", False,
                     f"no kernel headers for {paths.release} ({build} missing), and no "
                     f"package {pkg} exists here (a self-built or vendor kernel?)",
                     f"install the headers that came with this kernel's build at {build} "
                     "(its source tree after `make modules_prepare`), or boot a "
                     "distribution kernel")
    fix = f"apt-get install {pkg}"
    if known is None:
        fix += " (the package manager could not be asked whether it exists)"
    return Check("kernel_headers", False, why, fix)


def check_btf(paths: Paths, module: str) -> Check:
    p = paths.sys / "kernel" / "btf" / module
    if p.is_file():
        return Check(f"btf_{module}", True, f"{p} present")
    if module == "vmlinux":
        return Check("btf_vmlinux", False, f"{p} missing: kernel built without "
                     "CONFIG_DEBUG_INFO_BTF", "use a distribution kernel with BTF")
    made = find_blob(paths.btf_cache / paths.release, module)
    if made is not None:
        return Check(f"btf_{module}", True, f"{p} missing (this kernel builds no module BTF); "
                     f"using {made}, made from the -dbg package's DWARF by pahole")
    cfg = _config(paths)
    if cfg.get("CONFIG_DEBUG_INFO_BTF") == "y" and \
            cfg.get("CONFIG_DEBUG_INFO_BTF_MODULES") != "y":
        return no_module_btf(paths, module)
    return Check(f"btf_{module}", False, f"{p} missing: module {module} not loaded or "
                 "kernel without CONFIG_DEBUG_INFO_BTF_MODULES",
                 modprobe_advice(paths, module) if module != "md_mod"
                 else modprobe_advice(paths, "md_mod", "raid456"))


def no_module_btf(paths: Paths, module: str) -> Check:
    """The kernel has vmlinux BTF but never builds module BTF (5.10 and older: the option
    CONFIG_DEBUG_INFO_BTF_MODULES came in 5.11).  md's struct layout is then only in the DWARF
    of the debug package; pahole turns it into the split BTF mdtrace reads."""
    rel = paths.release
    dbg = f"linux-image-{rel}-dbg"
    pkgs = [x for x in (dbg, "dwarves") if package_known(paths, x) is not False]
    detail = (f"no BTF for {module}: this kernel builds none for modules "
              "(CONFIG_DEBUG_INFO_BTF_MODULES is not set or not in its config: module BTF "
              "came with Linux 5.11), and md's struct layout is in no header package")
    if dbg in pkgs:
        fix = (f"apt-get install {' '.join(pkgs)}; then python3 -m mdtrace.kernel.dwarf_btf "
               f"(pahole makes the md/dm module BTF from the DWARF into "
               f"{paths.btf_cache / rel}, where mdtrace finds it)")
    else:
        fix = (f"no {dbg} package here: get this kernel's debug info (vmlinux/module DWARF "
               "from its build), then python3 -m mdtrace.kernel.dwarf_btf --debug-root DIR; "
               "or boot a 5.11+ kernel with CONFIG_DEBUG_INFO_BTF_MODULES=y")
    return Check(f"btf_{module}", False, detail, fix)


def check_modules(paths: Paths) -> list[Check]:
    loaded = set()
    for line in (_read(paths.proc / "modules") or "").splitlines():
        if line:
            loaded.add(line.split()[0])
    builtin = _builtin_md(paths)
    out = []
    for mod, blocking in (("md_mod", True), ("raid456", False), ("dm_raid", False)):
        present = mod in loaded or (paths.sys / "module" / mod).is_dir() or (
            mod == "md_mod" and builtin)
        if present:
            out.append(Check(f"module_{mod}", True, f"{mod} loaded", blocking=blocking))
        else:
            what = {"md_mod": "no md driver in this kernel (md_mod not loaded, no "
                              "/proc/mdstat): nothing to trace",
                    "raid456": "raid456 not loaded: no raid4/5/6 reshape/IO probes",
                    "dm_raid": "dm_raid not loaded: no dm-raid (LVM raid) probes"}[mod]
            out.append(Check(f"module_{mod}", False, what, modprobe_advice(paths, mod),
                             blocking=blocking))
    return out


def _builtin_md(paths: Paths) -> bool:
    return (paths.proc / "mdstat").exists()


def _config(paths: Paths) -> dict[str, str]:
    text = None
    cfg = paths.proc / "config.gz"
    if cfg.is_file():
        try:
            text = gzip.decompress(cfg.read_bytes()).decode()
        except OSError:
            text = None
    if text is None:
        text = _read(paths.boot / f"config-{paths.release}")
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
    return out


def check_kprobes(paths: Paths) -> Check:
    cfg = _config(paths)
    dbg = paths.sys / "kernel" / "debug" / "kprobes"
    tr = [paths.sys / "kernel" / "tracing" / "kprobe_events",
          paths.sys / "kernel" / "debug" / "tracing" / "kprobe_events"]
    if cfg.get("CONFIG_KPROBES") == "y" or dbg.is_dir() or any(p.exists() for p in tr):
        enabled = _read(dbg / "enabled")
        if enabled is not None and enabled.strip() == "0":
            return Check("kprobes", False, "kprobes are disabled (debug/kprobes/enabled = 0)",
                         "echo 1 > /sys/kernel/debug/kprobes/enabled")
        return Check("kprobes", True, "kprobes available (CONFIG_KPROBES=y)")
    if cfg:
        return Check("kprobes", False, "kernel built without CONFIG_KPROBES: md functions "
                     "cannot be probed", "use a kernel with CONFIG_KPROBES=y and "
                     "CONFIG_KPROBE_EVENTS=y")
    return Check("kprobes", False, "no kprobe support found (no /sys/kernel/debug/kprobes, "
                 "no kprobe_events, kernel config not readable)",
                 "mount debugfs/tracefs; use a kernel with CONFIG_KPROBES=y")


def check_tracefs(paths: Paths) -> Check:
    for p in (paths.sys / "kernel" / "tracing", paths.sys / "kernel" / "debug" / "tracing"):
        if (p / "available_filter_functions").exists() or (p / "events").is_dir():
            return Check("tracefs", True, f"tracefs at {p}", blocking=False)
    return Check("tracefs", False, "tracefs not mounted (probe-ability of functions cannot be "
                 "checked)", "mount -t tracefs nodev /sys/kernel/tracing", blocking=False)


def check_lockdown(paths: Paths) -> Check:
    v = _read(paths.sys / "kernel" / "security" / "lockdown")
    if v is None:
        return Check("lockdown", True, "no lockdown LSM", blocking=False)
    cur = v[v.find("[") + 1:v.find("]")] if "[" in v else v.strip()
    if cur == "confidentiality":
        return Check("lockdown", False, "kernel lockdown=confidentiality forbids reading "
                     "kernel memory from BPF", "boot with lockdown=none or integrity")
    return Check("lockdown", True, f"lockdown={cur}", blocking=False)


def check_md_functions(paths: Paths) -> Check:
    from mdtrace.kernel.probes import Symbols, make_plan, wanted_functions

    syms = Symbols.read(paths.proc / "kallsyms", wanted=wanted_functions())
    if syms.addresses_hidden:
        return Check("md_functions", False, "no md functions in /proc/kallsyms (md not "
                     "loaded, or kallsyms hidden from this user)",
                     modprobe_advice(paths, "raid456", "dm_raid") + "; run as root")
    plan = make_plan(syms, locks=True)
    miss = plan.required_missing()
    if miss:
        return Check("md_functions", False, "; ".join(p.reason for p in miss),
                     modprobe_advice(paths, "md_mod", "raid456"))
    from mdtrace.kernel.probes import absent_by_design

    gone = plan.missing()
    others = [p for p in gone if not absent_by_design(p.spec.func, paths.release)]
    expected = [p for p in gone if absent_by_design(p.spec.func, paths.release)]
    detail = f"{len(plan.attachable())} of {len(plan.probes)} probe points attachable"
    if others:
        detail += "; missing: " + ", ".join(p.spec.func for p in others)
    if expected:
        detail += "; not in this kernel, as expected: " + ", ".join(
            f"{p.spec.func} ({absent_by_design(p.spec.func, paths.release)} only)"
            for p in expected)
    return Check("md_functions", True, detail)


def check_attach_method() -> Check:
    from mdtrace.kernel.probes import FENTRY_NOTE

    return Check("attach_method", True, FENTRY_NOTE, blocking=False)


def check_stale_probes(paths: Paths) -> Check:
    """kprobe events a killed mdtrace (or other bcc tool) left in tracefs: harmless but they
    keep firing; mdtrace removes them when it attaches (mdtrace.kernel.tracefs)."""
    from mdtrace.kernel.tracefs import find_stale

    f, stale = find_stale(paths.sys)
    if f is None:
        return Check("stale_probes", True, "kprobe_events not readable (not root or no "
                     "tracefs): stale probes not checked", blocking=False)
    if stale:
        more = f" (+{len(stale) - 3} more)" if len(stale) > 3 else ""
        return Check("stale_probes", False, f"{len(stale)} kprobe event(s) of dead bcc "
                     f"processes in {f}: {', '.join(stale[:3])}{more}",
                     "mdtrace record/run remove them when they start; or echo "
                     f"'-:{stale[0]}' >> {f}", blocking=False)
    return Check("stale_probes", True, "no stale bcc kprobe events", blocking=False)


def run_checks(paths: Paths | None = None) -> list[Check]:
    paths = paths or Paths()
    checks = [check_privileges(paths), check_bcc(), check_headers(paths),
              check_btf(paths, "vmlinux"), *check_modules(paths), check_btf(paths, "md_mod"),
              check_kprobes(paths), check_md_functions(paths), check_tracefs(paths),
              check_lockdown(paths), check_unprivileged_bpf(paths), check_attach_method(),
              check_stale_probes(paths)]
    return checks


def live_possible(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.blocking)
