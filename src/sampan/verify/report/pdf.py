"""The evaluation report as a PDF (reportlab, the optional extra ``pdf``; imported only when called).

Same content as the HTML: summary, claims vs measured, the test table, then per test its pass rule and
threshold source, verdict, figures, plots (reportlab's own charts) and evidence (truncated; the full
evidence is in results.json). Every string goes through reportlab's paragraph markup escaped.
"""

from __future__ import annotations

import math
from typing import Any

from sampan.errors import ConfigError
from sampan.verify.report._common import (
    claims_table,
    clean,
    duration,
    evidence_json,
    fmt_number,
    fmt_seconds,
    fmt_threshold,
    overall,
    threshold_rows,
)
from sampan.verify.results import Evaluation, Outcome, Plot

__all__ = ["render_pdf"]

_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
_VERDICT_COLOUR = {"pass": "#1b7f4b", "fail": "#b42318", "error": "#a15c07", "skip": "#616e7c"}
_PDF_EVIDENCE = 3000


def _require_reportlab() -> None:
    try:
        import reportlab  # type: ignore[import-untyped]  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("the PDF report needs reportlab: pip install 'sampan[pdf]'") from None


def _esc(text: object) -> str:
    return clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _verdict(verdict: str) -> str:
    return f'<font color="{_VERDICT_COLOUR.get(verdict, "#1f2933")}"><b>{_esc(verdict.upper())}</b></font>'


def _grid(rows: list[list[str]], styles: Any, widths: list[float] | None = None) -> Any:
    from reportlab.lib import colors  # type: ignore[import-untyped]
    from reportlab.platypus import Paragraph, Table, TableStyle  # type: ignore[import-untyped]

    cell = styles["BodyText"].clone("vcell", fontSize=7.5, leading=9)
    data = [[Paragraph(c, cell) for c in row] for row in rows]
    grid = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
    grid.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                              ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f5")),
                              ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return grid


def _chart(plot: Plot) -> Any:
    from reportlab.graphics.charts.barcharts import VerticalBarChart  # type: ignore[import-untyped]
    from reportlab.graphics.charts.lineplots import LinePlot  # type: ignore[import-untyped]
    from reportlab.graphics.shapes import Drawing, String  # type: ignore[import-untyped]
    from reportlab.lib import colors

    drawing = Drawing(480, 200)
    drawing.add(String(10, 186, clean(plot.title)[:90], fontSize=9))
    series = {name: [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
              for name, pts in plot.series.items()}
    series = {name: pts for name, pts in series.items() if pts}
    if not series:
        drawing.add(String(200, 90, "No data", fontSize=9))
        return drawing
    names = list(series)[:len(_PALETTE)]
    if plot.kind == "bar":
        chart = VerticalBarChart()
        chart.data = [[series[n][-1][1] for n in names]]
        chart.categoryAxis.categoryNames = [clean(n)[:16] for n in names]
        chart.categoryAxis.labels.fontSize = 6
        chart.bars[0].fillColor = colors.HexColor(_PALETTE[0])
    else:
        chart = LinePlot()
        chart.data = [series[n] for n in names]
        for i in range(len(names)):
            chart.lines[i].strokeColor = colors.HexColor(_PALETTE[i])
            chart.lines[i].strokeWidth = 1.3
        if plot.kind == "roc":
            for axis in (chart.xValueAxis, chart.yValueAxis):
                axis.valueMin, axis.valueMax, axis.valueStep = 0.0, 1.0, 0.2
    chart.x, chart.y, chart.width, chart.height = 45, 30, 300, 140
    drawing.add(chart)
    for i, name in enumerate(names):  # legend to the right
        drawing.add(String(360, 160 - 12 * i, clean(name)[:24], fontSize=7,
                           fillColor=colors.HexColor(_PALETTE[i])))
    if plot.x_label:
        drawing.add(String(150, 4, clean(plot.x_label)[:60], fontSize=7))
    if plot.y_label:
        drawing.add(String(10, 174, clean(plot.y_label)[:60], fontSize=7))
    return drawing


def _test(o: Outcome, styles: Any) -> list[Any]:
    from reportlab.platypus import Paragraph, Preformatted, Spacer

    out: list[Any] = [Paragraph(f"{_verdict(o.verdict)} {_esc(o.id)} · {_esc(o.title)}", styles["Heading4"])]
    if o.message:
        out.append(Paragraph(_esc(o.message), styles["BodyText"]))
    if o.pass_rule or o.inputs:
        out.append(_grid([["Inputs", "Pass rule"], [_esc(o.inputs or "—"), _esc(o.pass_rule or "—")]], styles))
    thresholds = threshold_rows(o)
    if thresholds:
        out.append(_grid([["Threshold rule", "Value", "Source"],
                          *[[_esc(th.rule), _esc(fmt_threshold(th)), _esc(th.source or "—")] for th in thresholds]],
                         styles))
    if o.figures:
        out.append(_grid([["Figure", "Value"], *[[_esc(k), _esc(fmt_number(v))] for k, v in o.figures.items()]],
                         styles))
    out += [_chart(p) for p in o.plots]
    if o.evidence:
        text = evidence_json(o.evidence)
        if len(text) > _PDF_EVIDENCE:
            text = text[:_PDF_EVIDENCE] + "\n… (full evidence in results.json)"
        small = styles["Code"].clone("vcode", fontSize=6.5, leading=7.5)
        out.append(Preformatted(text, small, maxLineLength=120))
    out.append(Spacer(1, 8))
    return out


def render_pdf(evaluation: Evaluation) -> bytes:
    """The PDF as bytes (the caller writes it atomically)."""
    _require_reportlab()
    from io import BytesIO

    from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
    from reportlab.lib.styles import getSampleStyleSheet  # type: ignore[import-untyped]
    from reportlab.lib.units import mm  # type: ignore[import-untyped]
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    ev, styles = evaluation, getSampleStyleSheet()
    t = ev.target
    name = f"{t.platform or 'unknown platform'} {t.platform_version}".strip()
    counts = ev.counts()
    took = duration(ev)
    story: list[Any] = [
        Paragraph("Sampan · Verification report", styles["Italic"]),
        Paragraph(_esc(name), styles["Title"]),
        Paragraph(f"Target {_esc(t.url)} · profile {_esc(ev.profile)} · {_esc(ev.started)}"
                  + (f" · {_esc(fmt_seconds(took))}" if took is not None else "")
                  + (f" · Benchmark API {_esc(t.api_version)}" if t.api_version else ""), styles["Normal"]),
        Paragraph(f"Overall: <b>{_esc(overall(ev))}</b> — {len(ev.outcomes)} tests: {counts['pass']} passed, "
                  f"{counts['fail']} failed, {counts['skip']} skipped, {counts['error']} errors.", styles["Normal"]),
        Spacer(1, 4 * mm), Paragraph("Claims vs measured", styles["Heading2"]),
    ]
    claims = claims_table(ev)
    if claims:
        story.append(_grid([["Claim", "Claimed in /info", "Tests", "Measured"],
                            *[[_esc(r.claim), _esc(r.claimed),
                               _esc(", ".join(f"{o.id} ({o.verdict})" for o in r.tests) or "—"), _esc(r.measured)]
                              for r in claims]], styles))
    else:
        story.append(Paragraph("The platform made no claims in /info.", styles["Italic"]))
    story += [Paragraph("Tests", styles["Heading2"]),
              _grid([["Id", "Test", "Category", "Verdict", "Time", "Message"],
                     *[[_esc(o.id), _esc(o.title), _esc(o.category), _verdict(o.verdict),
                        _esc(fmt_seconds(o.seconds)), _esc(o.message)] for o in ev.outcomes]], styles,
                    widths=[28 * mm, 38 * mm, 20 * mm, 14 * mm, 14 * mm, 64 * mm])]
    for category, outcomes in ev.by_category().items():
        story.append(Paragraph(f"{category.capitalize()} tests", styles["Heading2"]))
        for o in outcomes:
            story += _test(o, styles)
    if ev.manifest:
        from reportlab.platypus import Preformatted

        story += [Paragraph("Manifest", styles["Heading2"]),
                  Preformatted(evidence_json(ev.manifest)[:20_000], styles["Code"].clone("mcode", fontSize=6.5,
                                                                                         leading=7.5),
                               maxLineLength=120)]
    buffer = BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=clean(f"Verification of {name}"), author="Sampan verify",
                      leftMargin=14 * mm, rightMargin=14 * mm, topMargin=14 * mm,
                      bottomMargin=14 * mm).build(story)
    return buffer.getvalue()
