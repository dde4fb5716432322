"""Fast tier: the zoo's variants and their recipe keys (vmtest/zoo/).  Each variant is one
fix's revert: its patch touches drivers/md only, and the builder's key changes with the patch,
the Kbuild or the source version (so a cached build is never reused for another recipe)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from vmtest.zoo import build
from vmtest.zoo.variants import VARIANTS, variant


def test_every_variant_is_one_patch_on_drivers_md() -> None:
    for v in VARIANTS.values():
        text = v.diff()
        files = re.findall(r"^\+\+\+ b/(\S+)", text, re.M)
        assert files and all(f.startswith("drivers/md/") for f in files), v.name
        assert re.search(r"^@@ ", text, re.M), v.name
        assert re.fullmatch(r"[0-9a-f]{12}", v.commit)
        assert v.patch.startswith(f"{v.name}-{v.commit}")


def test_recipe_keys_differ_and_follow_the_recipe(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    keys = {build.recipe_key(v) for v in VARIANTS.values()}
    assert len(keys) == len(VARIANTS)
    v = variant("p3")
    k = build.recipe_key(v)
    assert build.recipe_key(v) == k
    monkeypatch.setattr(build, "KBUILD", build.KBUILD + "# x\n")
    assert build.recipe_key(v) != k
    monkeypatch.undo()
    other = tmp_path / "p3-82ec0ae59d02.patch"
    other.write_text(v.diff() + "\n")
    monkeypatch.setattr("vmtest.zoo.variants.PATCH_DIR", tmp_path)
    assert build.recipe_key(replace(v)) != k


def test_unknown_variant_is_one_line_error() -> None:
    from mdtrace.errors import MdtraceError

    with pytest.raises(MdtraceError, match="unknown zoo variant 'p99'"):
        variant("p99")


def test_patches_apply_to_the_cached_source(tmp_path: Path) -> None:
    src = build.zoo_root() / f"src-{build.SOURCE_VERSION}" / "drivers" / "md"
    if not (src / "md.c").is_file():
        pytest.skip("zoo source not extracted here (python -m vmtest.zoo build)")
    for v in VARIANTS.values():
        tree = tmp_path / v.name / "drivers" / "md"
        tree.mkdir(parents=True)
        (tree / "md.c").write_bytes((src / "md.c").read_bytes())
        for f in ("dm-raid.c", "raid5.c"):
            (tree / f).write_bytes((src / f).read_bytes())
        proc = subprocess.run(["patch", "-p1", "--dry-run", "--forward", "-i",
                               str(v.patch_path)], cwd=tmp_path / v.name,
                              capture_output=True, text=True)
        assert proc.returncode == 0, (v.name, proc.stdout, proc.stderr)
