"""The model-validation pack (issue 13, item 9): one document per registered model, as plain data + HTML.

A validator reads it top to bottom: what the model is, which data it came from (as the parties released it),
which code built it, how well it ranks and how well its PDs are calibrated, how stable and fair it is, what
it cannot claim, and what each party revealed to build it. `sampan.runtime.validation_pack` fills a
`ValidationPack` from the store; `render_pack_html` renders it here and `sampan.report.pack_pdf` renders the
same content as a PDF, so the two never disagree. Charts reuse `sampan.report.svg` in HTML.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from pathlib import Path

from sampan.errors import ConfigError
from sampan.files import atomic_write_bytes
from sampan.report._style import CSS
from sampan.report.svg import calibration_chart, roc_chart

__all__ = ["PackChart", "PackSection", "PackTable", "ValidationPack", "fmt", "html_tables", "render_pack_html",
           "write_pack_html"]


@dataclass
class PackTable:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class PackChart:
    """A curve: ``kind`` "roc" (fpr, tpr) or "calibration" (mean predicted, observed rate, counts)."""

    kind: str
    title: str
    x: list[float]
    y: list[float]
    counts: list[float] = field(default_factory=list)
    label: str = ""


@dataclass
class PackSection:
    """One heading: a short explanation of why it matters, then findings, tables and charts (plain text)."""

    title: str
    why: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[PackTable] = field(default_factory=list)
    charts: list[PackChart] = field(default_factory=list)


@dataclass
class ValidationPack:
    model: str
    version: int
    generated_at: str
    sections: list[PackSection]

    @property
    def title(self) -> str:
        return f"Model validation pack: {self.model} v{self.version}"


def fmt(value: object, digits: int = 4) -> str:
    """Numbers for a reader: never 'nan' or 'None' (a missing value says so)."""
    if value is None or isinstance(value, bool):
        return "not available" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "not available"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class _TableParser(HTMLParser):
    """Text and tables out of a report section's HTML (for the PDF, which cannot take HTML)."""

    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[str] = []
        self.tables: list[PackTable] = []
        self._text: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._head = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "table":
            self.tables.append(PackTable([], []))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell, self._head = [], tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            table = self.tables[-1]
            if self._head and not table.headers:
                table.headers = self._row
            else:
                table.rows.append(self._row)
            self._row = None
        elif tag == "p":
            text = " ".join("".join(self._text).split())
            if text:
                self.paragraphs.append(text)
            self._text = []

    def handle_data(self, data: str) -> None:
        (self._cell if self._cell is not None else self._text).append(data)


def html_tables(html: str) -> tuple[list[str], list[PackTable]]:
    """(paragraphs, tables) of a section's HTML."""
    parser = _TableParser()
    parser.feed(html)
    parser.close()
    return parser.paragraphs, parser.tables


def _table_html(table: PackTable) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _chart_html(chart: PackChart) -> str:
    if chart.kind == "roc":
        return roc_chart({chart.label or "model": (chart.x, chart.y)}, title=chart.title)
    return calibration_chart(chart.x, chart.y, chart.counts or [1.0] * len(chart.x), title=chart.title)


def _section_html(index: int, section: PackSection) -> str:
    parts = [f'<section id="s{index}"><h2>{index}. {escape(section.title)}</h2>',
             f'<p class="lede">{escape(section.why)}</p>']
    parts += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    parts += [_table_html(t) for t in section.tables]
    if section.charts:
        parts.append('<div class="charts">' + "".join(f'<figure>{_chart_html(c)}</figure>' for c in section.charts)
                     + "</div>")
    return "".join(parts) + "</section>"


def render_pack_html(pack: ValidationPack) -> str:
    """A self-contained page: contents, then every section in order."""
    contents = "".join(f'<li><a href="#s{i}">{escape(s.title)}</a></li>' for i, s in enumerate(pack.sections, 1))
    body = "".join(_section_html(i, s) for i, s in enumerate(pack.sections, 1))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(pack.title)}</title><style>{CSS}</style></head><body><div class=\"page\">"
            f'<header class="top"><div><p class="brand">Sampan</p><h1>{escape(pack.title)}</h1>'
            f'<p class="meta"><span>generated {escape(pack.generated_at)}</span></p></div></header>'
            f"<nav><h2>Contents</h2><ol>{contents}</ol></nav>{body}</div></body></html>")


def write_pack_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write one pack file atomically; a folder that cannot be made (a file in its place) is a clear error."""
    target = Path(path)
    try:
        return atomic_write_bytes(target, data)
    except (FileExistsError, NotADirectoryError, PermissionError, IsADirectoryError) as exc:
        raise ConfigError(f"cannot write the validation pack to '{target}': {exc.strerror or exc} (is --out a "
                          "folder you may write to?)") from None


def write_pack_html(pack: ValidationPack, path: str | os.PathLike[str]) -> Path:
    return write_pack_file(path, render_pack_html(pack).encode("utf-8"))
