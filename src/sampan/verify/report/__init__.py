"""Reports of an evaluation (`sampan.verify.results.Evaluation`): HTML, PDF, JUnit XML, and a comparison of two.

All renderers read the same `Evaluation` and say the same things: the summary (platform, profile, verdict
counts, the claims-vs-measured table), then per test its threshold and source, verdict, figures, plots and
evidence. `write_all` writes every format into one folder atomically (a staging folder, then one rename).
"""

from sampan.verify.report._common import overall
from sampan.verify.report.bundle import OUTPUT_FILES, write_all
from sampan.verify.report.compare import render_comparison, write_comparison
from sampan.verify.report.html import render_html
from sampan.verify.report.junit import render_junit

__all__ = ["OUTPUT_FILES", "overall", "render_comparison", "render_html", "render_junit", "write_all",
           "write_comparison"]
