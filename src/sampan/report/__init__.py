"""Self-contained HTML run reports with SVG plots.

May import: sampan.metrics, sampan.errors, sampan.files (and the standard library).
"""

from sampan.report.content import PartySummary, ReportSection, RoundRecord, RunReport
from sampan.report.html import render_run_report, write_report

__all__ = [
    "PartySummary",
    "ReportSection",
    "RoundRecord",
    "RunReport",
    "render_run_report",
    "write_report",
]
