"""The console watch's "expected hung tasks" switch (vmtest/runner.py): a script that
provokes hung-task reports on purpose (tests/vm/guest/diagnose_hangs.sh) is not stopped as a
kernel failure for them; an oops still is."""

from __future__ import annotations

from vmtest.runner import FAILURE_GRACE_S, Watch, hung_task_reports, kernel_failure

HUNG = ("[  173.255472] INFO: task sh:573 blocked for more than 10 seconds.\n"
        "[  173.256001]       Not tainted 6.1.0-56-amd64 #1 Debian 6.1.192-1\n")
OOPS = "[  200.1] kernel BUG at mm/slub.c:550!\n"


def test_hung_task_lines_fail_a_run_unless_expected() -> None:
    assert kernel_failure(HUNG) == "INFO: task sh:573 blocked for more than 10 seconds."
    assert kernel_failure(HUNG, expect_hung_tasks=True) is None
    assert kernel_failure(HUNG + OOPS, expect_hung_tasks=True) == "kernel BUG at mm/slub.c:550!"
    assert hung_task_reports(HUNG) == ["INFO: task sh:573 blocked for more than 10 seconds."]


def test_watch_collects_expected_hung_tasks_and_still_stops_on_an_oops() -> None:
    w = Watch(timeout_s=1800, expect_hung_tasks=True)
    w.update(10, HUNG, "beat", True)
    assert w.failure == "" and w.hung_tasks == [
        "INFO: task sh:573 blocked for more than 10 seconds."]
    assert w.stop_reason(10 + FAILURE_GRACE_S + 1, 0) == ""
    w.update(20, OOPS, "beat", True)
    assert w.failure.startswith("kernel BUG")
    assert w.stop_reason(20 + FAILURE_GRACE_S + 1, 0).startswith("kernel failure")
    plain = Watch(timeout_s=1800)
    plain.update(10, HUNG, "beat", True)
    assert plain.failure.startswith("INFO: task sh:573") and plain.hung_tasks == []
