"""Keep what a boot the kernel itself failed in saw, before the next boot overwrites it."""

from __future__ import annotations

import shutil
from pathlib import Path


def keep_failed_boot(out: Path, results: Path, kept: Path) -> None:
    """``results`` (the guest script's directory, if it got that far) becomes ``kept``, and the
    boot's console.log goes with it: a kernel that failed while booting (a TCG int3 oops on
    7.2, 2026-12-04) leaves nothing else, and the next boot rewrites ``out``/console.log."""
    shutil.rmtree(kept, ignore_errors=True)
    if results.exists():
        results.rename(kept)
    kept.mkdir(parents=True, exist_ok=True)
    console = out / "console.log"
    if console.exists():
        shutil.copy2(console, kept / "console.log")
