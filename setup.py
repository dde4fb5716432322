"""Build hook: the man pages and shell completions generated from the click definitions
(mdtrace/docgen.py) into build/generated/, installed under share/.  Everything else is in
pyproject.

The generated files need click at build time: a build without it (pip's isolated build
installs only setuptools) says so and ships none.
"""

import os
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def generated_data_files():
    sys.path.insert(0, str(HERE))
    try:
        from mdtrace.docgen import write_all
    except ImportError as exc:
        print(f"mdtrace: man pages and completions not generated ({exc}); build without "
              "isolation (pip --no-build-isolation) to include them", file=sys.stderr)
        return []
    finally:
        sys.path.remove(str(HERE))
    out = write_all(HERE / "build" / "generated")
    return [(d, [os.path.relpath(f, HERE) for f in files]) for d, files in out]


setup(data_files=generated_data_files())
