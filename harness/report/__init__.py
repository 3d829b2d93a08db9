"""Reports: the slice table of a run, rendered for the terminal, Markdown, CSV and JSON."""

from __future__ import annotations

from harness.report.build import Report, ReportOptions, build_report
from harness.report.render import print_report, write_report

__all__ = ["Report", "ReportOptions", "build_report", "print_report", "write_report"]
