"""Real-kernel harness: a Debian guest with md, dm-raid and bcc, booted under qemu.

Python API (see docs/vm.md)::

    from mdtrace.vm import ensure_image, run_script
    img = ensure_image()                       # cached by recipe hash; builds cold in minutes
    res = run_script(img, "6.12", "tests/vm/scenarios/smoke.sh", disks=4)
    res.rc, res.output, res.out_dir            # exit code, combined output, files it wrote
"""

from mdtrace.vm.image import GuestImage, ensure_image, find_image
from mdtrace.vm.recipe import KERNELS, Recipe, cache_root, default_recipe, kernel_release
from mdtrace.vm.runner import RunResult, qemu_problem, run_script

__all__ = [
    "KERNELS", "GuestImage", "Recipe", "RunResult", "cache_root", "default_recipe",
    "ensure_image", "find_image", "kernel_release", "qemu_problem", "run_script",
]
