"""Build hook: the optional C skimmer (mdtrace/_skimc.c).  Everything else is in pyproject.

``optional=True``: without a compiler mdtrace still installs and works, with the pure
Python twin (mdtrace/skim.py) doing the same job more slowly.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mdtrace._skimc", ["mdtrace/_skimc.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Werror"])])
