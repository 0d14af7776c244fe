"""Building blocks for the hand-written SVG charts: escaping, scales, ticks, legends, frames.

Kept free of any chart logic so each chart function in `svg.py` reads as layout only.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Okabe–Ito: distinguishable with the common colour-vision deficiencies (yellow left out: too pale).
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
DASHES: tuple[str, ...] = ("", "6 3", "2 3", "8 3 2 3")  # after a full colour cycle, vary the dash
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
AXIS = "#9aa5b1"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
MAX_POINTS = 500

Point = tuple[float, float]


def esc(text: object) -> str:
    """Escape for both text nodes and attribute values."""
    return html.escape(str(text), quote=True)


def text_width(text: str, size: float) -> float:
    """Rough rendered width of proportional sans-serif text; good enough for layout."""
    return len(text) * size * 0.56


def fit_text(text: str, max_width: float, size: float) -> str:
    """Truncate with an ellipsis so a label never overflows its slot."""
    if text_width(text, size) <= max_width:
        return text
    keep = max(1, int(max_width / (size * 0.56)) - 1)
    return text[:keep] + "…"


def style(index: int) -> tuple[str, str]:
    """(colour, dash pattern) of the index-th series."""
    return PALETTE[index % len(PALETTE)], DASHES[(index // len(PALETTE)) % len(DASHES)]


def clean_points(points: Sequence[Sequence[float]]) -> list[Point]:
    """Keep finite (x, y) pairs only: NaN from a failed round must not break the drawing."""
    out: list[Point] = []
    for pair in points:
        x, y = float(pair[0]), float(pair[1])
        if math.isfinite(x) and math.isfinite(y):
            out.append((x, y))
    return out


def downsample(points: list[Point], max_points: int = MAX_POINTS) -> list[Point]:
    """Evenly thin a long curve, keeping both ends, so reports stay small."""
    if len(points) <= max_points:
        return points
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


def nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        if multiple * magnitude >= raw * (1 - 1e-9):
            return multiple * magnitude
    return 10.0 * magnitude


def padded_range(lo: float, hi: float) -> tuple[float, float]:
    """A non-empty range around the data; constant series get room above and below."""
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 if lo != 0 else 1.0
    return lo - pad, hi + pad


def nice_range(lo: float, hi: float, target: int = 5) -> tuple[float, float, list[float]]:
    """Extend [lo, hi] to round tick values and return (lo, hi, ticks)."""
    lo, hi = padded_range(lo, hi)
    step = nice_step(hi - lo, target)
    lo = math.floor(lo / step + 1e-9) * step
    hi = math.ceil(hi / step - 1e-9) * step
    return lo, hi, ticks_in(lo, hi, step)


def ticks_in(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def fixed_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Ticks inside a caller-fixed range."""
    return ticks_in(lo, hi, nice_step(hi - lo, target))


def _decimals(step: float) -> int:
    """Decimals needed to print multiples of `step` exactly (0.25 needs 2, 0.2 needs 1, 5 needs 0)."""
    if step <= 0:
        return 2
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    while decimals < 10 and abs(round(step * 10**decimals) - step * 10**decimals) > 1e-6:
        decimals += 1
    return decimals


def fmt_tick(value: float, ticks: Sequence[float]) -> str:
    """Tick label with just enough decimals to tell neighbouring ticks apart; k/M/B for big axes."""
    if abs(value) < 1e-12:
        return "0"
    span = max(abs(t) for t in ticks) if ticks else abs(value)
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value)
    if span >= 10_000:
        for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if span >= div:
                return f"{value / div:.{_decimals(step / div)}f}{suffix}"
    return f"{value:,.{_decimals(step)}f}"


def fmt_value(value: float) -> str:
    """Compact number for bar labels and tooltips."""
    if not math.isfinite(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.1f}B"
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.1f}k"
    if value == int(value):
        return f"{int(value):,}"
    if magnitude >= 100:
        return f"{value:,.1f}"
    return f"{value:.3g}" if magnitude < 0.001 else f"{value:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Scale:
    """Linear map from data units to pixels."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


@dataclass(frozen=True)
class LegendItem:
    label: str
    colour: str
    dash: str = ""
    kind: str = "line"  # "line" or "box"
    width: float = 2.0


LegendRow = list[tuple[LegendItem, str, float]]


def legend_rows(items: Sequence[LegendItem], max_width: float, size: float = 12) -> list[LegendRow]:
    """Flow legend entries into rows of (item, fitted label, x offset) that fit `max_width`."""
    rows: list[LegendRow] = [[]]
    x = 0.0
    for item in items:
        label = fit_text(item.label, min(max_width - 30, 260), size)
        item_width = 26 + text_width(label, size) + 18
        if rows[-1] and x + item_width > max_width:
            rows.append([])
            x = 0.0
        rows[-1].append((item, label, x))
        x += item_width
    return rows if rows[0] else []


def render_legend(rows: list[LegendRow], left: float, top: float) -> str:
    parts = []
    for r, row in enumerate(rows):
        y = top + r * 20
        for item, label, x in row:
            x0 = left + x
            if item.kind == "box":
                parts.append(f'<rect x="{x0:.1f}" y="{y - 5:.1f}" width="12" height="10" rx="2" fill="{item.colour}"/>')
                text_x = x0 + 18
            else:
                dash = f' stroke-dasharray="{item.dash}"' if item.dash else ""
                parts.append(
                    f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x0 + 20:.1f}" y2="{y:.1f}" stroke="{item.colour}" '
                    f'stroke-width="{item.width:g}"{dash}/>'
                )
                text_x = x0 + 26
            full = f"<title>{esc(item.label)}</title>" if label != item.label else ""
            parts.append(
                f'<text x="{text_x:.1f}" y="{y + 4:.1f}" font-size="12" fill="{INK}">{full}{esc(label)}</text>'
            )
    return "".join(parts)


def svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(title)}" font-family="{FONT}" class="chart">'
        f"<title>{esc(title)}</title>"
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="16" y="26" font-size="15" font-weight="600" fill="{INK}">'
        f"{esc(fit_text(title, width - 32, 15))}</text>"
    )


def no_data(width: int, height: int, title: str, note: str = "No data") -> str:
    """A placeholder chart, so a missing series is visible in the report rather than a crash."""
    return (
        svg_open(width, height, title)
        + f'<rect x="16" y="44" width="{width - 32}" height="{height - 60}" rx="6" fill="#f5f7fa" '
        f'stroke="{GRID}"/>'
        f'<text x="{width / 2:.1f}" y="{(height + 28) / 2:.1f}" font-size="13" fill="{MUTED}" '
        f'text-anchor="middle">{esc(note)}</text></svg>'
    )


def clip_id(*parts: object) -> str:
    """Deterministic id for a clipPath: ids share one namespace across every SVG in an HTML page."""
    digest = hashlib.sha1(repr(parts).encode("utf-8", "replace")).hexdigest()[:10]
    return f"clip-{digest}"


def axes(
    x: Scale, y: Scale, x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str,
    *, height: int, tick_label_y: float | None = None,
) -> str:
    """Grid lines, tick labels, axis lines and axis titles for a plot area.

    `tick_label_y` moves the x tick labels lower, below a strip drawn under the plot.
    """
    parts = []
    left, right, top, bottom = x.start, x.end, y.end, y.start
    for t in y_ticks:
        py = y(t)
        parts.append(f'<line x1="{left:.1f}" y1="{py:.1f}" x2="{right:.1f}" y2="{py:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 8:.1f}" y="{py + 4:.1f}" font-size="11" fill="{MUTED}" text-anchor="end">'
            f"{esc(fmt_tick(t, y_ticks))}</text>"
        )
    label_y = bottom + 17 if tick_label_y is None else tick_label_y
    for t in x_ticks:
        px = x(t)
        parts.append(
            f'<line x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{bottom:.1f}" stroke="{GRID}" stroke-opacity="0.6"/>'
        )
        parts.append(f'<line x1="{px:.1f}" y1="{bottom:.1f}" x2="{px:.1f}" y2="{bottom + 4:.1f}" stroke="{AXIS}"/>')
        parts.append(
            f'<text x="{px:.1f}" y="{label_y:.1f}" font-size="11" fill="{MUTED}" text-anchor="middle">'
            f"{esc(fmt_tick(t, x_ticks))}</text>"
        )
    parts.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" stroke="{AXIS}"/>')
    parts.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" stroke="{AXIS}"/>')
    if x_label:
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="{height - 10:.1f}" font-size="12" fill="{INK}" '
            f'text-anchor="middle">{esc(fit_text(x_label, right - left, 12))}</text>'
        )
    if y_label:
        cy = (top + bottom) / 2
        parts.append(
            f'<text x="16" y="{cy:.1f}" font-size="12" fill="{INK}" text-anchor="middle" '
            f'transform="rotate(-90 16 {cy:.1f})">{esc(fit_text(y_label, bottom - top, 12))}</text>'
        )
    return "".join(parts)


def y_label_margin(y_ticks: Sequence[float], has_label: bool) -> float:
    """Left margin wide enough for the longest y tick label plus the rotated axis title."""
    widest = max((text_width(fmt_tick(t, y_ticks), 11) for t in y_ticks), default=0.0)
    return widest + (40 if has_label else 22)
