"""Least privilege after attaching (issue 13, row 11): the logic with injected syscalls (no
root needed), and for real in a thread where the tests run as root."""

from __future__ import annotations

import errno
import os
import threading
import urllib.request
from typing import Any

import pytest

from mdtrace import privileges as pv
from mdtrace.frontends.exporter.server import ExporterServer

ALL = (1 << 41) - 1


class FakeSys:
    def __init__(self, euid: int = 0, eff: int = ALL, last: int = 40,
                 fail: str = "") -> None:
        self.euid, self.eff, self.perm, self.last, self.fail = euid, eff, eff, last, fail
        self.calls: list[tuple[Any, ...]] = []

    def geteuid(self) -> int:
        return self.euid

    def cap_last_cap(self) -> int:
        return self.last

    def capget(self) -> tuple[int, int, int]:
        return self.eff, self.perm, 0

    def capset(self, e: int, p: int, i: int) -> None:
        if self.fail == "capset":
            raise OSError(errno.EPERM, "capset: Operation not permitted")
        self.calls.append(("capset", e, p, i))
        self.eff, self.perm = e, p

    def prctl(self, option: int, arg: int = 0, arg3: int = 0) -> None:
        self.calls.append(("prctl", option, arg, arg3))

    def user(self, name: str) -> tuple[int, int] | None:
        return {"nobody": (65534, 65534), "mdtrace": (990, 990)}.get(name)

    def thread_setids(self, uid: int, gid: int) -> None:
        self.calls.append(("setids", uid, gid))


def test_root_keeps_only_bpf_capabilities() -> None:
    fake = FakeSys()
    out = pv.drop_after_attach(True, fake)
    assert out.applied and out.kept == ["CAP_PERFMON", "CAP_BPF"]
    keep = 1 << pv.CAP_BPF | 1 << pv.CAP_PERFMON
    assert ("capset", keep, keep, 0) in fake.calls
    dropped = {c[2] for c in fake.calls if c[:2] == ("prctl", pv.PR_CAPBSET_DROP)}
    assert dropped == set(range(41)) - {pv.CAP_BPF, pv.CAP_PERFMON}
    assert ("prctl", pv.PR_CAP_AMBIENT, pv.PR_CAP_AMBIENT_CLEAR_ALL, 0) in fake.calls
    assert fake.calls[-1] == ("prctl", pv.PR_SET_NO_NEW_PRIVS, 1, 0)


def test_kernel_without_cap_bpf_keeps_sys_admin() -> None:
    fake = FakeSys(last=37, eff=(1 << 38) - 1)
    out = pv.drop_after_attach(True, fake)
    assert out.applied and out.kept == ["CAP_SYS_ADMIN"]
    assert ("capset", 1 << pv.CAP_SYS_ADMIN, 1 << pv.CAP_SYS_ADMIN, 0) in fake.calls


@pytest.mark.parametrize(("fake", "bpf", "why"), [
    (FakeSys(euid=1000, eff=0), True, "not privileged"),
    (FakeSys(), False, "no BPF programs attached"),
])
def test_no_op_where_it_cannot_apply(fake: FakeSys, bpf: bool, why: str) -> None:
    out = pv.drop_after_attach(bpf, fake)
    assert not out.applied and out.reason == why and fake.calls == []


def test_a_refused_drop_is_reported_not_raised() -> None:
    out = pv.drop_after_attach(True, FakeSys(fail="capset"))
    assert not out.applied and "Operation not permitted" in out.reason


def test_confine_thread_with_fake() -> None:
    fake = FakeSys()
    out = pv.confine_thread("mdtrace", fake)
    assert out.applied
    assert ("setids", 990, 990) in fake.calls and ("capset", 0, 0, 0) in fake.calls
    assert fake.calls[0] == ("prctl", pv.PR_SET_NO_NEW_PRIVS, 1, 0)
    assert not pv.confine_thread(sys=FakeSys(euid=1000)).applied


def _thread_status() -> dict[str, str]:
    with open("/proc/thread-self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop anything for real")
def test_real_drops_stay_in_their_thread() -> None:
    got: dict[str, Any] = {}

    def confined() -> None:
        got["out"] = pv.confine_thread()
        got["status"] = _thread_status()

    def dropped() -> None:
        got["drop"] = pv.drop_after_attach(True)
        got["drop_status"] = _thread_status()

    for fn in (confined, dropped):
        th = threading.Thread(target=fn)
        th.start()
        th.join()
    assert got["out"].applied, got["out"]
    assert got["status"]["Uid"].split()[0] == "65534"
    assert int(got["status"]["CapEff"], 16) == 0
    assert got["drop"].applied, got["drop"]
    eff = int(got["drop_status"]["CapEff"], 16)
    assert eff and eff & ~(1 << pv.CAP_BPF | 1 << pv.CAP_PERFMON | 1 << pv.CAP_SYS_ADMIN) == 0
    assert got["drop_status"]["NoNewPrivs"] == "1"
    me = _thread_status()                      # this thread: untouched
    assert me["Uid"].split()[0] == "0" and int(me["CapEff"], 16) != 0


def test_exporter_serving_threads_are_confined() -> None:
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(_thread_status()["Uid"].split()[0])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    calls: list[str] = []
    srv = ExporterServer("127.0.0.1", 0, app,  # type: ignore[arg-type]
                         confine=lambda: calls.append(threading.current_thread().name))
    srv.start()
    try:
        with urllib.request.urlopen(srv.url, timeout=5) as r:
            assert r.read() == b"ok\n"
    finally:
        srv.stop()
    assert "mdtrace-exporter-http" in calls
    assert any(n.startswith("mdtrace-exporter-worker") for n in calls)
    if os.geteuid() == 0:      # the default confine, for real: the app runs as nobody
        srv = ExporterServer("127.0.0.1", 0, app)  # type: ignore[arg-type]
        srv.start()
        try:
            with urllib.request.urlopen(srv.url, timeout=5) as r:
                r.read()
        finally:
            srv.stop()
        assert seen[-1] == "65534" and os.geteuid() == 0
