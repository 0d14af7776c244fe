"""The downloadable report files: the online summary (verdicts and messages) and the full report (with evidence).

Why filter instead of a second renderer: `sampan.verify.report` renders any `Evaluation`, and renders nothing for
an empty evidence, plot, figure or manifest. The summary is the same evaluation with those emptied, so the
summary and the full report can never disagree on a verdict, and what the full report adds (per-test evidence,
measured figures, plots, the manifest with seeds and drawn columns) is exactly what the release step guards.
Both HTML variants get one more section: the questionnaire's claims against the measured verdicts.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Sequence
from pathlib import Path

from sampan.errors import ConfigError
from sampan.verify.results import Evaluation
from sampan.web.errors import Conflict, Invalid
from sampan.web.portal.claims import ClaimCheck

__all__ = ["FORMATS", "summary_of", "render_report"]

FORMATS = {"html": ("text/html; charset=utf-8", "html"), "pdf": ("application/pdf", "pdf"),
           "json": ("application/json", "json"), "junit": ("application/xml", "xml")}
_FULL_FILES = {"html": "report.html", "pdf": "report.pdf", "json": "results.json", "junit": "junit.xml"}


def summary_of(evaluation: Evaluation) -> Evaluation:
    """The evaluation without per-test evidence, figures and plots, and without the manifest."""
    outcomes = [dataclasses.replace(o, evidence={}, figures={}, plots=[]) for o in evaluation.outcomes]
    return dataclasses.replace(evaluation, outcomes=outcomes, manifest={})


def claims_section(checks: Sequence[ClaimCheck]) -> str:
    """An HTML section (escaped) listing each claim's mark, for both report variants."""
    if not checks:
        return ""
    rows = "".join(f"<tr><td>{html.escape(c.test_id)}</td><td>{html.escape(c.title)}</td>"
                   f"<td>{'yes' if c.claimed else 'no'}</td><td>{html.escape(c.measured or 'not run')}</td>"
                   f"<td>{html.escape(c.status)}{' (' + html.escape(c.note) + ')' if c.note else ''}</td></tr>"
                   for c in checks)
    return ('<section id="questionnaire-claims"><h2>Questionnaire claims vs measured</h2>'
            '<p class="lede">What the vendor claimed in the portal\'s questionnaire, against the verdicts.</p>'
            '<div class="table-wrap"><table><thead><tr><th>Test</th><th>Title</th><th>Claimed</th>'
            f"<th>Measured</th><th>Mark</th></tr></thead><tbody>{rows}</tbody></table></div></section>")


def _with_claims(document: str, checks: Sequence[ClaimCheck]) -> str:
    section = claims_section(checks)
    at = document.find("<section")
    if at < 0:
        at = document.find("<footer")
    return document if at < 0 or not section else document[:at] + section + document[at:]


def _render(evaluation: Evaluation, fmt: str, checks: Sequence[ClaimCheck]) -> bytes:
    if fmt == "html":
        from sampan.verify.report.html import render_html

        return _with_claims(render_html(evaluation), checks).encode()
    if fmt == "junit":
        from sampan.verify.report.junit import render_junit

        return render_junit(evaluation).encode()
    if fmt == "json":
        data = evaluation.to_dict()
        data["questionnaire_claims"] = [c.to_dict() for c in checks]
        return (json.dumps(data, indent=2, allow_nan=False) + "\n").encode()
    from sampan.verify.report.pdf import render_pdf

    try:
        return render_pdf(evaluation)
    except ConfigError as exc:
        raise Conflict(f"PDF reports are not available here: {exc}", "fmt") from None


def render_report(evaluation: Evaluation, fmt: str, *, full: bool, results_dir: Path | None,
                  checks: Sequence[ClaimCheck], name: str) -> tuple[bytes, str, str]:
    """(bytes, media type, file name). The full variant uses the runner's files where they exist (HTML with the
    claims section added), the summary is rendered from the filtered evaluation."""
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}", "fmt")
    media, ext = FORMATS[fmt]
    filename = f"{name}-{'full' if full else 'summary'}.{ext}"
    if full:
        stored = results_dir / _FULL_FILES[fmt] if results_dir is not None else None
        if stored is not None and stored.is_file() and fmt in ("pdf", "junit"):
            return stored.read_bytes(), media, filename
        if stored is not None and stored.is_file() and fmt == "html":
            return _with_claims(stored.read_text(encoding="utf-8"), checks).encode(), media, filename
        return _render(evaluation, fmt, checks), media, filename
    return _render(summary_of(evaluation), fmt, checks), media, filename
