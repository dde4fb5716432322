"""Raw ring-buffer record -> Event: kinds, args, canonical flags, and no raw pointer out."""

from __future__ import annotations

import msgspec

from mdtrace.kernel.flags import RECOVERY_6_11, RECOVERY_PRE_6_11, FlagTable, Recovery
from mdtrace.pointers import PointerHasher
from mdtrace.sources.bcc_decode import RAW, RAW_SIZE, RawDecoder, sync_action

MDDEV = 0xFFFF8881_2345_6000
CALLER = 0xFFFFFFFF_C040_1234


def raw(kind: int, recovery: int = 0, a=(0, 0, 0, 0), name=b"md0", s=b"", is_dm=0,
        reshape=(1 << 64) - 1) -> bytes:
    return RAW.pack(123, MDDEV, recovery, 0, reshape, 0, 0, *a, kind, 1, 100, 101, 0, 0, 5,
                    1, 1, is_dm, 0, b"md0_raid5", name, b"253:0", s)


def _dec(table: FlagTable) -> RawDecoder:
    syms = {CALLER: "md_check_recovery", 0xFFFFFFFF_C0400000: "md_do_sync"}
    return RawDecoder(table, PointerHasher(b"x" * 16), ksym=lambda a: syms.get(a, ""),
                      dm_names=lambda d: {"dm-3": "vg-lv"}.get(d, ""))


def test_size_matches_c_struct() -> None:
    assert RAW_SIZE == 216


def test_reap_decodes_owner_and_caller() -> None:
    t = FlagTable.from_enums(RECOVERY_6_11, {})
    ev = _dec(t).decode(raw(5, recovery=1 << 3 | 1 << 1, a=(1, 1, CALLER, 0)))
    assert ev.kind == "reap" and ev.array == "md0"
    assert ev.args == {"mutex_owned": True, "mutex_locked": True, "caller": "md_check_recovery"}
    assert ev.state.rec == Recovery.DONE | Recovery.RUNNING
    assert ev.state.reshape_pos is None and ev.state.sync_thread


def test_same_flags_different_kernels() -> None:
    old = _dec(FlagTable.from_enums(RECOVERY_PRE_6_11, {})).decode(raw(2, recovery=1 << 4))
    new = _dec(FlagTable.from_enums(RECOVERY_6_11, {})).decode(raw(2, recovery=1 << 3))
    assert old.state.rec == new.state.rec == Recovery.DONE


def test_register_sync_thread_and_unknown_caller() -> None:
    ev = _dec(FlagTable.from_enums(RECOVERY_6_11, {})).decode(
        raw(6, a=(0xFFFFFFFF_C0400000, 0xFFFFFFFF_DEAD0000, 0, 0), s=b"resync"))
    assert ev.args["sync"] is True and ev.args["name"] == "resync"
    assert ev.args["caller"] == "?"          # unknown address is never printed as a number


def test_io_wait_and_dm_names() -> None:
    prog_safe = (4096).to_bytes(8, "little") + (8192).to_bytes(8, "little")
    ev = _dec(FlagTable.for_release("6.12")).decode(
        raw(9, a=(2048, 8 | 1 << 32, 7_000_000_000, 1 | 1 << 1 | 12 << 8), s=prog_safe,
            name=b"dm-3", is_dm=1))
    assert ev.kind == "io_wait" and ev.array == "dm-3" and ev.dm_name == "vg-lv"
    assert ev.args["rw"] == "W" and ev.args["mode"] == "requeue" and ev.args["retries"] == 12
    assert ev.args["done"] is True and ev.args["wait_ns"] == 7_000_000_000
    assert (ev.args["reshape_progress"], ev.args["reshape_safe"]) == (4096, 8192)


def test_no_raw_pointer_in_encoded_events() -> None:
    dec = _dec(FlagTable.for_release("6.12"))
    out = b""
    # pointer-carrying args per kind (others are sizes/sectors/counters, not addresses)
    ptr_args = {5: (1, 1, CALLER, 0), 6: (CALLER, CALLER, 0, 0), 7: (CALLER, CALLER, 0, 0),
                8: (0, CALLER, 1, 0), 18: (MDDEV, 1, 1, 0)}
    for kind in range(1, 21):
        ev = dec.decode(raw(kind, a=ptr_args.get(kind, (0, 0, 0, 0))))
        assert ev is not None
        out += msgspec.json.encode(ev)
    for ptr in (MDDEV, CALLER):
        assert str(ptr).encode() not in out and f"{ptr:x}".encode() not in out
    assert dec.decode(raw(77)) is None and dec.unknown == 1


def test_sync_action_names() -> None:
    assert sync_action(Recovery.SYNC | Recovery.RUNNING) == "resync"
    assert sync_action(Recovery.SYNC | Recovery.CHECK | Recovery.REQUESTED) == "check"
    assert sync_action(Recovery.SYNC | Recovery.REQUESTED) == "repair"
    assert sync_action(Recovery.RECOVER) == "recover"
    assert sync_action(Recovery.RESHAPE | Recovery.SYNC) == "reshape"
