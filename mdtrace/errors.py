"""User-facing errors: every one prints as a single line (what, where, what to do), exit 2."""

from __future__ import annotations


class MdtraceError(Exception):
    """Base for errors caused by input or environment, not by a bug in mdtrace."""

    exit_code = 2


class EnvironmentProblem(MdtraceError):
    """Missing bcc, BTF, headers, md module, privileges, ... (see ``mdtrace doctor``)."""
