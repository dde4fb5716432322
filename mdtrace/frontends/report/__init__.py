"""Post-mortem report front end: :func:`build_report` runs the engine over a trace once into a
:class:`ReportModel`; :func:`render` turns it into text, markdown, html or json."""

from __future__ import annotations

from mdtrace.frontends.report.build import ReportModel, build_report

FORMATS = ("text", "markdown", "html", "json")


def render(model: ReportModel, fmt: str) -> str:
    """Render ``model`` as ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "text":
        from mdtrace.frontends.report import text
        return text.render(model)
    if fmt == "markdown":
        from mdtrace.frontends.report import markdown
        return markdown.render(model)
    if fmt == "html":
        from mdtrace.frontends.report import html
        return html.render(model)
    if fmt == "json":
        from mdtrace.frontends.report import json_
        return json_.render(model)
    raise ValueError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")


__all__ = ["FORMATS", "ReportModel", "build_report", "render"]
