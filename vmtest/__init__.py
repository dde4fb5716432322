"""The real-kernel test harness: a Debian guest with md, dm-raid and bcc, booted under qemu.

Not shipped in the mdtrace wheel (issue 15: the harness is not the product, as drgn keeps its
vmtest beside what it ships); run from a checkout: ``python -m vmtest`` (docs/vm.md),
``make vm``, ``pytest -m vm``.  Python API::

    from vmtest import ensure_image, run_script
    img = image_for("6.12")                    # cached by recipe hash; builds cold in minutes
    res = run_script(img, "6.12", "tests/vm/guest/smoke.sh", disks=4)
    res.rc, res.output, res.out_dir            # exit code, combined output, files it wrote
"""

from vmtest.image import GuestImage, ensure_image, find_image, image_for
from vmtest.recipe import (
    KERNELS,
    Recipe,
    cache_root,
    default_recipe,
    kernel_release,
    tier_kernels,
)
from vmtest.runner import RunResult, qemu_problem, run_script

__all__ = [
    "KERNELS", "GuestImage", "Recipe", "RunResult", "cache_root", "default_recipe",
    "ensure_image", "find_image", "image_for", "kernel_release", "qemu_problem", "run_script",
    "tier_kernels",
]
