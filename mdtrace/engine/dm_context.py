"""dm devices that are not raid targets: context of the LV they belong to, never arrays.

lvm suspends and resumes every dm device of an LV around a table change: the raid LV itself
(``vg-lv``, a dm-raid target whose mddev the md probes see) and its hidden sub-LVs
(``vg-lv_rimage_0``, ``vg-lv_rmeta_0``, ...: linear targets underneath).  dm core's
dm_suspend/dm_resume probes cannot tell them apart, but the md probes can: only a raid
target's dm device ever carries an mddev.  So a dm device is an array only once an md event
names it; until then (and for the sub-LVs, always) it is kept here, and shown under the
raid LV whose dm name prefixes its own.  A device kept here that turns out to be a raid
target (its dm_suspend arrived before the first md event of a new table) hands its suspend
state to the array (:func:`adopt`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mdtrace.events import Event

DM_CORE_KINDS = frozenset({"dm_suspend_enter", "dm_suspend_exit",
                           "dm_resume_enter", "dm_resume_exit"})


@dataclass
class DmDevice:
    name: str                      # kernel disk name, dm-3
    dm_name: str = ""              # dm (LVM) name, vg-lv_rimage_0
    suspended: bool = False
    suspending: dict[int, Event] = field(default_factory=dict)  # tid -> its dm_suspend entry
    last_ns: int = 0
    events: int = 0


def apply(dev: DmDevice, ev: Event) -> None:
    """One dm core event: dm_suspend entered / returned (rc 0: suspended), dm_resume returned."""
    dev.events += 1
    dev.last_ns = max(dev.last_ns, ev.ts)
    if ev.dm_name:
        dev.dm_name = ev.dm_name
    if ev.kind == "dm_suspend_enter":
        dev.suspending[ev.tid] = ev
    elif ev.kind == "dm_suspend_exit":
        dev.suspending.pop(ev.tid, None)
        if not ev.args.get("rc"):
            dev.suspended = True
    elif ev.kind == "dm_resume_exit" and not ev.args.get("rc"):
        dev.suspended = False


def owner(dm_name: str, lv_names: list[str]) -> str:
    """The raid LV (dm name) a sub-LV belongs to: the longest ``lv`` with ``lv + '_'`` a prefix
    of ``dm_name`` (lvm names hidden sub-LVs ``<lv>_rimage_N``, ``<lv>_rmeta_N``, ...); ''."""
    best = ""
    for lv in lv_names:
        if lv and dm_name.startswith(lv + "_") and len(lv) > len(best):
            best = lv
    return best


@dataclass(frozen=True)
class DmMemberView:
    """A sub-LV (or any non-raid dm device) as shown under its raid LV."""

    name: str
    dm_name: str
    suspended: bool
    suspending: tuple[str, ...] = ()     # "comm (tid)" inside dm_suspend right now
    owner: str = ""                       # the raid LV's dm name, '' when none matches

    def label(self) -> str:
        state = "suspended" if self.suspended else "active"
        if self.suspending:
            state = "suspending by " + ", ".join(self.suspending)
        return f"{self.dm_name or self.name} ({state})"


def views(devices: dict[str, DmDevice], lv_names: list[str]) -> list[DmMemberView]:
    return [DmMemberView(name=d.name, dm_name=d.dm_name, suspended=d.suspended,
                         suspending=tuple(f"{e.comm or '?'} ({t})"
                                          for t, e in sorted(d.suspending.items())),
                         owner=owner(d.dm_name, lv_names))
            for d in sorted(devices.values(), key=lambda d: d.dm_name or d.name)]


def summary(members: list[DmMemberView]) -> str:
    """One line for a raid LV's sub-LVs: how many, and the ones not simply active."""
    odd = [m.label() for m in members if m.suspended or m.suspending]
    head = f"{len(members)} sub-LV{'s' if len(members) != 1 else ''}"
    return head + (": " + ", ".join(odd) if odd else ", all active")
