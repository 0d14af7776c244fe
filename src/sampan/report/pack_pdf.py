"""The model-validation pack as a PDF (reportlab, the optional extra ``pdf``; imported only here, when called).

Same `ValidationPack` as the HTML (`sampan.report.pack`): numbered headings, the "why it matters" line,
findings, tables and line charts (ROC, calibration) drawn with reportlab's own graphics, so the two formats
say the same thing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sampan.errors import ConfigError
from sampan.report.pack import PackChart, PackTable, ValidationPack, write_pack_file

__all__ = ["write_pack_pdf"]


def _require_reportlab() -> None:
    try:
        import reportlab  # type: ignore[import-untyped]  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("the PDF validation pack needs reportlab: pip install 'sampan[pdf]'") from None


def _chart(chart: PackChart) -> Any:
    from reportlab.graphics.charts.lineplots import LinePlot  # type: ignore[import-untyped]
    from reportlab.graphics.shapes import Drawing, String  # type: ignore[import-untyped]
    from reportlab.lib import colors  # type: ignore[import-untyped]

    drawing = Drawing(260, 230)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 40, 35, 200, 160
    points = [(float(x), float(y)) for x, y in zip(chart.x, chart.y, strict=False)]
    plot.data = [points or [(0.0, 0.0)], [(0.0, 0.0), (1.0, 1.0)]]
    plot.lines[0].strokeColor, plot.lines[0].strokeWidth = colors.HexColor("#0072B2"), 1.5
    plot.lines[1].strokeColor, plot.lines[1].strokeDashArray = colors.grey, (2, 2)
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.valueMin, axis.valueMax, axis.valueStep = 0.0, 1.0, 0.2
    drawing.add(plot)
    drawing.add(String(40, 210, chart.title, fontSize=9))
    x_label = "False positive rate" if chart.kind == "roc" else "Mean predicted PD"
    y_label = "True positive rate" if chart.kind == "roc" else "Observed bad rate"
    drawing.add(String(90, 8, x_label, fontSize=7))
    drawing.add(String(2, 200, y_label, fontSize=7))
    return drawing


def _table(table: PackTable, styles: Any) -> list[Any]:
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle  # type: ignore[import-untyped]

    cell = styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
    head = styles["BodyText"].clone("head", fontSize=7, leading=8.5, fontName="Helvetica-Bold")
    rows = ([[Paragraph(_esc(h), head) for h in table.headers]] if table.headers else [])
    rows += [[Paragraph(_esc(c), cell) for c in row] for row in table.rows]
    if not rows:
        return []
    out: list[Any] = [Paragraph(_esc(table.caption), styles["Italic"])] if table.caption else []
    grid = Table(rows, repeatRows=1 if table.headers else 0, hAlign="LEFT")
    grid.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                              ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f5") if table.headers
                               else colors.white),
                              ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [*out, grid]


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_pack_pdf(pack: ValidationPack, path: str | os.PathLike[str]) -> Path:
    """Render ``pack`` to ``path`` (written atomically: nothing half-written)."""
    _require_reportlab()
    from io import BytesIO

    from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
    from reportlab.lib.styles import getSampleStyleSheet  # type: ignore[import-untyped]
    from reportlab.lib.units import mm  # type: ignore[import-untyped]
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer
    from reportlab.platypus.flowables import KeepTogether  # type: ignore[import-untyped]

    styles = getSampleStyleSheet()
    story: list[Any] = [Paragraph(_esc(pack.title), styles["Title"]),
                        Paragraph(f"Generated {_esc(pack.generated_at)}", styles["Normal"]), Spacer(1, 6 * mm)]
    for index, section in enumerate(pack.sections, 1):
        story.append(Paragraph(f"{index}. {_esc(section.title)}", styles["Heading2"]))
        story.append(Paragraph(_esc(section.why), styles["Italic"]))
        story += [Paragraph(_esc(p), styles["BodyText"]) for p in section.paragraphs]
        for table in section.tables:
            story += [*_table(table, styles), Spacer(1, 3 * mm)]
        if section.charts:
            story.append(KeepTogether([_chart(c) for c in section.charts]))
    buffer = BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=pack.title, author="Sampan", leftMargin=16 * mm,
                      rightMargin=16 * mm, topMargin=16 * mm, bottomMargin=16 * mm).build(story)
    return write_pack_file(path, buffer.getvalue())
