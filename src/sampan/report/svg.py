"""Hand-written SVG charts for reports: no plotting library, no scripts, no external resources.

Every function returns one self-contained `<svg>` string (with a viewBox, so it scales with CSS),
escapes all text, uses the Okabe–Ito colour-blind-safe palette, thins curves longer than 500 points
and renders a "No data" placeholder instead of failing on empty or degenerate input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from sampan.report._svg_base import (
    AXIS,
    INK,
    MUTED,
    LegendItem,
    Point,
    Scale,
    axes,
    clean_points,
    clip_id,
    downsample,
    esc,
    fit_text,
    fixed_ticks,
    fmt_value,
    legend_rows,
    nice_range,
    no_data,
    render_legend,
    style,
    svg_open,
    y_label_margin,
)

__all__ = ["bar_chart", "calibration_chart", "line_chart", "roc_chart"]

_MARKER_LIMIT = 40  # draw point markers when a series is short enough to read them
_HIGHLIGHT = "#1f2933"


def _integer_range(lo: float, hi: float, target: int = 8) -> tuple[float, float, list[float]]:
    """Tight range over whole numbers (rounds), ticks at multiples of 1, 2, 5, 10, 20, 50, ..."""
    if hi <= lo:
        return lo - 1, hi + 1, [lo]
    step = 1
    growth = itertools.cycle((2, 2.5, 2))
    while (hi - lo) / step > target:
        step = int(step * next(growth))
    first = math.ceil(lo / step) * step
    return lo, hi, [float(t) for t in range(int(first), int(math.floor(hi)) + 1, step)]


def _xy_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int,
    height: int,
    x_range: tuple[float, float] | None,
    y_range: tuple[float, float] | None,
    labels: Mapping[str, str] | None = None,
    highlight: str | None = None,
    diagonal: bool = False,
    integer_x: bool = False,
) -> str:
    """Shared body of line and ROC charts."""
    cleaned = {str(name): downsample(clean_points(points)) for name, points in series.items()}
    cleaned = {name: pts for name, pts in cleaned.items() if pts}
    if not cleaned:
        return no_data(width, height, title)
    xs = [x for pts in cleaned.values() for x, _ in pts]
    ys = [y for pts in cleaned.values() for _, y in pts]

    if x_range is not None:
        x_lo, x_hi = x_range
        x_ticks = fixed_ticks(x_lo, x_hi)
    elif integer_x:
        x_lo, x_hi, x_ticks = _integer_range(min(xs), max(xs))
    else:
        x_lo, x_hi, x_ticks = nice_range(min(xs), max(xs), target=6)
    if y_range is not None:
        y_lo, y_hi = y_range
        y_ticks = fixed_ticks(y_lo, y_hi)
    else:
        y_lo, y_hi, y_ticks = nice_range(min(ys), max(ys))

    names = list(cleaned)
    items = []
    for i, name in enumerate(names):
        colour, dash = style(i)
        if name == highlight:
            colour, dash = _HIGHLIGHT, ""
        items.append(LegendItem((labels or {}).get(name, name), colour, dash, width=3.0 if name == highlight else 2.0))
    if diagonal:
        items.append(LegendItem("Chance", AXIS, "5 4", width=1.5))

    left = y_label_margin(y_ticks, bool(y_label))
    right = width - 20
    rows = legend_rows(items, right - left)
    top = 44 + 20 * len(rows) + 6
    bottom = height - (46 if x_label else 30)
    x = Scale(x_lo, x_hi, left, right)
    y = Scale(y_lo, y_hi, bottom, top)
    cid = clip_id("xy", title, width, height, sorted(cleaned.items()))

    parts = [svg_open(width, height, title), render_legend(rows, left, 44)]
    parts.append(axes(x, y, x_ticks, y_ticks, x_label, y_label, height=height))
    parts.append(
        f'<clipPath id="{cid}"><rect x="{left - 4:.1f}" y="{top - 4:.1f}" width="{right - left + 8:.1f}" '
        f'height="{bottom - top + 8:.1f}"/></clipPath><g clip-path="url(#{cid})">'
    )
    if diagonal:
        parts.append(
            f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" stroke="{AXIS}" '
            f'stroke-width="1.5" stroke-dasharray="5 4"/>'
        )
    # Highlighted series last, so it sits on top.
    order = sorted(range(len(names)), key=lambda i: names[i] == highlight)
    for i in order:
        name, item = names[i], items[i]
        pts = cleaned[name]
        dash = f' stroke-dasharray="{item.dash}"' if item.dash else ""
        coords = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in pts)
        if len(pts) > 1:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{item.colour}" stroke-width="{item.width:g}" '
                f'stroke-linejoin="round" stroke-linecap="round"{dash}/>'
            )
        if len(pts) <= _MARKER_LIMIT:
            for px, py in pts:
                parts.append(
                    f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="{3.5 if len(pts) > 1 else 4.5}" '
                    f'fill="{item.colour}" stroke="#ffffff" stroke-width="1.2">'
                    f"<title>{esc(name)}: {esc(fmt_value(px))}, {esc(fmt_value(py))}</title></circle>"
                )
    parts.append("</g></svg>")
    return "".join(parts)


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 360,
    y_range: tuple[float, float] | None = None,
    highlight: str | None = None,
    integer_x: bool = False,
) -> str:
    """One line per named series of (x, y) points, e.g. a metric per round for each party.

    `highlight` draws that series dark and thick (the global model among parties); `integer_x`
    keeps only whole-number x ticks (rounds).
    """
    return _xy_chart(
        series, title=title, x_label=x_label, y_label=y_label, width=width, height=height,
        x_range=None, y_range=y_range, highlight=highlight, integer_x=integer_x,
    )


def roc_chart(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "ROC curve",
    aucs: Mapping[str, float] | None = None,
    width: int = 520,
    height: int = 460,
) -> str:
    """ROC curves (fpr, tpr) on the unit square with the chance diagonal; AUCs go in the legend."""
    series: dict[str, list[Point]] = {}
    for name, (fpr, tpr) in curves.items():
        if len(fpr) != len(tpr):
            raise ValueError(f"ROC curve {name!r}: fpr and tpr have different lengths ({len(fpr)} != {len(tpr)})")
        series[str(name)] = list(zip(fpr, tpr, strict=True))
    labels = {}
    for name in series:
        auc = (aucs or {}).get(name)
        labels[name] = f"{name} (AUC {auc:.3f})" if auc is not None and math.isfinite(auc) else name
    return _xy_chart(
        series, title=title, x_label="False positive rate", y_label="True positive rate",
        width=width, height=height, x_range=(0.0, 1.0), y_range=(0.0, 1.0), labels=labels, diagonal=True,
    )


def bar_chart(
    values: Mapping[str, float | Sequence[float]],
    *,
    title: str,
    y_label: str,
    series_labels: Sequence[str] | None = None,
    width: int = 640,
    height: int = 360,
) -> str:
    """Bars per category; a sequence per category draws grouped bars (e.g. train/test per party)."""
    groups: list[tuple[str, list[float]]] = []
    for name, value in values.items():
        seq = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
        groups.append((str(name), seq))
    n_series = max((len(seq) for _, seq in groups), default=0)
    finite = [v for _, seq in groups for v in seq if math.isfinite(v)]
    if not finite:
        return no_data(width, height, title)
    lo, hi = min(0.0, *finite), max(0.0, *finite)
    if lo < 0:  # room for the value label under the most negative bar
        lo -= 0.12 * (hi - lo)
    y_lo, y_hi, y_ticks = nice_range(lo, hi)

    labels = list(series_labels or [])
    show_legend = n_series > 1 or bool(labels)
    items = [LegendItem(labels[i] if i < len(labels) else f"Series {i + 1}", style(i)[0], kind="box")
             for i in range(n_series)] if show_legend else []
    left = y_label_margin(y_ticks, bool(y_label))
    right = width - 20
    rows = legend_rows(items, right - left)
    top = 44 + 20 * len(rows) + (10 if rows else 14)
    bottom = height - 34
    y = Scale(y_lo, y_hi, bottom, top)
    slot = (right - left) / len(groups)
    inner = slot * 0.72
    bar_w = inner / max(n_series, 1)
    n_bars = sum(len(seq) for _, seq in groups)
    show_values = n_bars <= 30 and bar_w >= 22

    parts = [svg_open(width, height, title), render_legend(rows, left, 44)]
    x_dummy = Scale(0.0, 1.0, left, right)
    parts.append(axes(x_dummy, y, [], y_ticks, "", y_label, height=height))
    zero = y(0.0)
    for g, (name, seq) in enumerate(groups):
        x0 = left + g * slot + (slot - inner) / 2
        for i, v in enumerate(seq):
            if not math.isfinite(v):
                continue
            colour = style(i)[0]
            top_px, bottom_px = sorted((y(v), zero))
            bx = x0 + i * bar_w + 1
            label = labels[i] if i < len(labels) else ""
            tip = f"{name}{' · ' + label if label else ''}: {fmt_value(v)}"
            parts.append(
                f'<rect x="{bx:.1f}" y="{top_px:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                f'height="{max(bottom_px - top_px, 0.5):.1f}" rx="2" fill="{colour}"><title>{esc(tip)}</title></rect>'
            )
            if show_values:
                ty = top_px - 5 if v >= 0 else bottom_px + 13
                parts.append(
                    f'<text x="{bx + (bar_w - 2) / 2:.1f}" y="{ty:.1f}" font-size="10.5" fill="{MUTED}" '
                    f'text-anchor="middle">{esc(fmt_value(v))}</text>'
                )
        cx = left + (g + 0.5) * slot
        cat = fit_text(name, slot - 6, 11.5)
        full = f"<title>{esc(name)}</title>" if cat != name else ""
        parts.append(
            f'<text x="{cx:.1f}" y="{bottom + 18:.1f}" font-size="11.5" fill="{INK}" text-anchor="middle">'
            f"{full}{esc(cat)}</text>"
        )
    parts.append(f'<line x1="{left:.1f}" y1="{zero:.1f}" x2="{right:.1f}" y2="{zero:.1f}" stroke="{AXIS}"/>')
    parts.append("</svg>")
    return "".join(parts)


def calibration_chart(
    mean_predicted: Sequence[float],
    fraction_positive: Sequence[float],
    counts: Sequence[float],
    *,
    title: str = "Calibration",
    width: int = 520,
    height: int = 460,
) -> str:
    """Reliability diagram: observed positive rate vs mean predicted probability per bin.

    The diagonal is perfect calibration; marker area and the strip below show how many examples
    each bin holds, so a wild point backed by a handful of loans is not over-read.
    """
    if not len(mean_predicted) == len(fraction_positive) == len(counts):
        raise ValueError("mean_predicted, fraction_positive and counts must have the same length")
    bins = [
        (float(m), float(f), max(float(c), 0.0))
        for m, f, c in zip(mean_predicted, fraction_positive, counts, strict=True)
        if math.isfinite(float(m)) and math.isfinite(float(f)) and math.isfinite(float(c))
    ]
    if not bins:
        return no_data(width, height, title)
    colour = style(0)[0]
    items = [LegendItem("Model", colour), LegendItem("Perfectly calibrated", AXIS, "5 4", width=1.5)]
    ticks = fixed_ticks(0.0, 1.0)
    left = y_label_margin(ticks, True)
    right = width - 20
    rows = legend_rows(items, right - left)
    top = 44 + 20 * len(rows) + 6
    strip_h = 48
    strip_bottom = height - 46
    strip_top = strip_bottom - strip_h
    bottom = strip_top - 14
    x = Scale(0.0, 1.0, left, right)
    y = Scale(0.0, 1.0, bottom, top)

    parts = [svg_open(width, height, title), render_legend(rows, left, 44)]
    parts.append(axes(x, y, ticks, ticks, "Mean predicted probability", "Observed positive rate",
                      height=height, tick_label_y=strip_bottom + 17))
    parts.append(
        f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" stroke="{AXIS}" '
        f'stroke-width="1.5" stroke-dasharray="5 4"/>'
    )
    # Count strip: one bar per bin at its mean prediction.
    max_count = max(c for _, _, c in bins) or 1.0
    bar_w = max(3.0, min(14.0, (right - left) / (2.5 * len(bins))))
    parts.append(
        f'<line x1="{left:.1f}" y1="{strip_bottom:.1f}" x2="{right:.1f}" y2="{strip_bottom:.1f}" stroke="{AXIS}"/>'
    )
    parts.append(
        f'<text x="{left - 8:.1f}" y="{strip_top + strip_h / 2 + 4:.1f}" font-size="11" fill="{MUTED}" '
        f'text-anchor="end">n</text>'
    )
    for m, _, c in bins:
        h = strip_h * c / max_count
        parts.append(
            f'<rect x="{x(min(max(m, 0.0), 1.0)) - bar_w / 2:.1f}" y="{strip_bottom - h:.1f}" '
            f'width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" fill="{colour}" fill-opacity="0.35">'
            f"<title>{esc(fmt_value(c))} examples</title></rect>"
        )
    pts = sorted(bins)
    coords = " ".join(f"{x(m):.1f},{y(f):.1f}" for m, f, _ in pts)
    if len(pts) > 1:
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"/>'
        )
    for m, f, c in pts:
        r = 3.0 + 4.0 * math.sqrt(c / max_count)
        parts.append(
            f'<circle cx="{x(m):.1f}" cy="{y(f):.1f}" r="{r:.1f}" fill="{colour}" stroke="#ffffff" stroke-width="1.2">'
            f"<title>predicted {m:.3f}, observed {f:.3f}, n = {esc(fmt_value(c))}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
