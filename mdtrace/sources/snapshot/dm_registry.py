"""dm-raid's mddevs in kernel memory, found through device-mapper's registry of named devices.

A dm-raid mddev is never on md's ``all_mddevs``: dm-raid's ``raid_ctr`` sets it up with
``mddev_init`` inside its ``struct raid_set``, and only ``md_alloc`` (md arrays) links a new
mddev into that list (drivers/md/md.c, 5.10 to 7.2).  So kcore.py's walk of ``all_mddevs``
sees no LVM raid LV at all.  dm-ioctl.c keeps every named device in one index: a hash table of
``NUM_BUCKETS`` lists (``_name_buckets``, ``struct hash_cell.name_list``) in 5.10, an rb-tree
(``name_rb_tree``, ``hash_cell.name_node``) in later kernels.  Which one this kernel has is read
from dm_mod's BTF (the member ``hash_cell`` has), not guessed from the release.

From each cell: ``cell->md`` (struct mapped_device) -> ``md->map`` (the live struct dm_table)
-> its ``targets[0 .. num_targets)`` -> a target whose ``type->name`` is "raid" ->
``ti->private`` (struct raid_set) -> ``&rs->md``, the mddev that :func:`kcore.read_mddev`
decodes.  Every read is bounded (cells, targets, tree depth); a bad pointer ends the walk with a
reason, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdtrace.kernel.offsets import BtfSet
from mdtrace.sources.snapshot.memory import BadAddress, Memory

# dm-ioctl.c: #define NUM_BUCKETS 64 (5.10; the hash table the rb-tree replaced)
NUM_BUCKETS = 64
MAX_CELLS = 4096          # named dm devices walked
MAX_TARGETS = 64          # targets per table looked at (an LVM raid LV has one)
MAX_DEPTH = 64            # rb-tree depth (a red-black tree of 4096 nodes is at most ~24 deep)

# (name, module, struct, member): read only by this walker
FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("HASH_CELL_NAME_NODE", "dm_mod", "hash_cell", "name_node"),   # rb-tree index
    ("HASH_CELL_NAME_LIST", "dm_mod", "hash_cell", "name_list"),   # hash buckets (5.10)
    ("HASH_CELL_MD", "dm_mod", "hash_cell", "md"),
    ("MAPPED_DEVICE_MAP", "dm_mod", "mapped_device", "map"),
    ("DM_TABLE_NUM_TARGETS", "dm_mod", "dm_table", "num_targets"),
    ("DM_TABLE_TARGETS", "dm_mod", "dm_table", "targets"),
    ("DM_TARGET_TYPE", "dm_mod", "dm_target", "type"),
    ("DM_TARGET_PRIVATE", "dm_mod", "dm_target", "private"),
    ("TARGET_TYPE_NAME", "dm_mod", "target_type", "name"),
    ("RB_NODE_RIGHT", "vmlinux", "rb_node", "rb_right"),
    ("RB_NODE_LEFT", "vmlinux", "rb_node", "rb_left"),
    ("LIST_HEAD_NEXT", "vmlinux", "list_head", "next"),
    ("RAID_SET_MD", "dm_raid", "raid_set", "md"),
)
COMMON = ("HASH_CELL_MD", "MAPPED_DEVICE_MAP", "DM_TABLE_NUM_TARGETS", "DM_TABLE_TARGETS",
          "DM_TARGET_TYPE", "DM_TARGET_PRIVATE", "TARGET_TYPE_NAME", "RAID_SET_MD")


@dataclass(frozen=True)
class DmLayout:
    off: dict[str, int]
    target_size: int       # sizeof(struct dm_target): the stride of table->targets

    @property
    def index(self) -> str:
        """'tree', 'buckets', or '' (this kernel's dm layout is not known)."""
        if self.target_size <= 0 or not all(k in self.off for k in COMMON):
            return ""
        if "HASH_CELL_NAME_NODE" in self.off and "RB_NODE_LEFT" in self.off:
            return "tree"
        if "HASH_CELL_NAME_LIST" in self.off and "LIST_HEAD_NEXT" in self.off:
            return "buckets"
        return ""

    @property
    def root_symbol(self) -> str:
        return {"tree": "name_rb_tree", "buckets": "_name_buckets"}.get(self.index, "")


def dm_layout(btfs: BtfSet) -> DmLayout:
    off: dict[str, int] = {}
    for name, module, struct_name, member in FIELDS:
        btf = btfs.get(module)
        got = btf.member(struct_name, member) if btf is not None else None
        if got is not None:
            off[name] = got[0]
    dm = btfs.modules.get("dm_mod")
    return DmLayout(off, (dm.struct_size("dm_target") if dm else 0) or 0)


def raid_mddevs(core: Memory, lay: DmLayout, root: int) -> tuple[list[int], str]:
    """The mddev address of every dm-raid target of every named dm device, from the index at
    ``root`` (the address of ``name_rb_tree`` or ``_name_buckets``); and why the walk stopped
    early ('' = all of it)."""
    try:
        cells, stopped = (_tree_cells(core, lay, root) if lay.index == "tree"
                          else _bucket_cells(core, lay, root))
    except BadAddress:
        return [], "dm's name index is not readable"
    out: list[int] = []
    for cell in cells:
        try:
            out += _raid_targets(core, lay, cell)
        except BadAddress:
            stopped = stopped or "a bad pointer under a dm device's table: skipped"
    return out, stopped


def _tree_cells(core: Memory, lay: DmLayout, root: int) -> tuple[list[int], str]:
    """In-order walk of ``struct rb_root`` at ``root`` (container_of via name_node)."""
    o = lay.off
    cells: list[int] = []
    seen: set[int] = set()
    todo = [(core.u64(root), 0)]               # rb_root.rb_node is its first member
    while todo:
        node, depth = todo.pop()
        if not node:
            continue
        if node in seen or depth > MAX_DEPTH:
            return cells, "dm's name tree loops or is too deep (changing under the walk?)"
        if len(cells) >= MAX_CELLS:
            return cells, f"more than {MAX_CELLS} dm devices: stopped there"
        seen.add(node)
        cells.append(node - o["HASH_CELL_NAME_NODE"])
        todo.append((core.u64(node + o["RB_NODE_RIGHT"]), depth + 1))
        todo.append((core.u64(node + o["RB_NODE_LEFT"]), depth + 1))
    return cells, ""


def _bucket_cells(core: Memory, lay: DmLayout, root: int) -> tuple[list[int], str]:
    """Every cell on the ``NUM_BUCKETS`` list heads at ``root`` (container_of via name_list)."""
    o = lay.off
    nxt = o["LIST_HEAD_NEXT"]
    cells: list[int] = []
    for b in range(NUM_BUCKETS):
        head = root + 16 * b                   # struct list_head: two pointers
        node, seen = core.u64(head + nxt), {head}
        while node != head:
            if node in seen or not node:
                return cells, "a dm hash bucket loops (changing under the walk?)"
            if len(cells) >= MAX_CELLS:
                return cells, f"more than {MAX_CELLS} dm devices: stopped there"
            seen.add(node)
            cells.append(node - o["HASH_CELL_NAME_LIST"])
            node = core.u64(node + nxt)
    return cells, ""


def _raid_targets(core: Memory, lay: DmLayout, cell: int) -> list[int]:
    o = lay.off
    md = core.u64(cell + o["HASH_CELL_MD"])
    table = core.u64(md + o["MAPPED_DEVICE_MAP"]) if md else 0
    if not table:
        return []                              # no live table (created, never loaded)
    n = int.from_bytes(core.read(table + o["DM_TABLE_NUM_TARGETS"], 4), "little")
    targets = core.u64(table + o["DM_TABLE_TARGETS"])
    out = []
    for i in range(min(n, MAX_TARGETS)):
        ti = targets + i * lay.target_size
        ttype = core.u64(ti + o["DM_TARGET_TYPE"])
        if ttype and core.cstr(core.u64(ttype + o["TARGET_TYPE_NAME"]), 8) == "raid":
            rs = core.u64(ti + o["DM_TARGET_PRIVATE"])
            if rs:
                out.append(rs + o["RAID_SET_MD"])
    return out


__all__ = ["DmLayout", "dm_layout", "raid_mddevs"]
