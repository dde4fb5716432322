"""Test-wide settings.

Hypothesis: no per-example deadline.  Its 200 ms default is a timing check inside unit tests
(speed belongs in bench/): with two guests booting beside the fast tier an example of
test_trace_reader's fuzz took longer and failed a run (2026-12-04)."""

from hypothesis import settings

settings.register_profile("mdtrace", deadline=None)
settings.load_profile("mdtrace")
