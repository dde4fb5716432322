"""Helpers for the @pytest.mark.bcc tests: skip cleanly (with a reason) without bcc/headers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

GUEST_RELEASE = "6.12.117+deb12-amd64"


def bcc_or_skip():  # noqa: ANN201 - returns the bcc module
    try:
        import bcc
    except ImportError as exc:
        pytest.skip(f"bcc not importable ({exc}): run scripts/setup-bcc.sh + bootstrap.sh")
    if os.geteuid() != 0:
        pytest.skip("bcc tests need root (bpf syscall)")
    return bcc


def headers_env_or_skip(release: str = GUEST_RELEASE) -> dict[str, str]:
    from mdtrace.errors import EnvironmentProblem
    from mdtrace.kernel.headers import bcc_env_for

    if not Path(f"/lib/modules/{release}/build").is_dir():
        pytest.skip(f"linux-headers-{release} not installed (scripts/install-system-deps.sh)")
    try:
        return bcc_env_for(release)
    except EnvironmentProblem as exc:
        pytest.skip(str(exc))


@contextmanager
def env(extra: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
