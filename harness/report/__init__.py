"""Reports: the slice table of a run, rendered for the terminal, Markdown, CSV and JSON."""

from __future__ import annotations

from harness.report.build import Report, ReportOptions, build_report
from harness.report.render import print_report, write_report


def render_html(report) -> str:
    """The self-contained HTML report (imported lazily: most runs never render HTML)."""
    from harness.report.html import render_html as render

    return render(report)


def write_card(report, out_dir, *, labels_source: str = "not stated"):
    """card.md and card.html: the performance section of a service card."""
    from harness.report.card import write_card as write

    return write(report, out_dir, labels_source=labels_source)


__all__ = ["Report", "ReportOptions", "build_report", "print_report", "render_html", "write_card", "write_report"]
