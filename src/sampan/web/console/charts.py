"""Server-side inline SVG for the console: a dataset's cumulative privacy spend over time against its total.

Drawn on the server so the page needs no chart library and no script (CSP: script-src 'self'); every text in the
SVG is escaped, so a dataset name cannot inject markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_X, PAD_Y = 560, 200, 48, 24


def spend_chart(points: Sequence[tuple[datetime, float]], total: float, label: str) -> Markup:
    """A step chart of cumulative epsilon spent (``points``: (when, cumulative spent), oldest first) with the
    lifetime ``total`` as a dashed line. Empty history draws the axes and the total only."""
    top = max([total] + [spent for _, spent in points]) or 1.0
    plot_w, plot_h = WIDTH - 2 * PAD_X, HEIGHT - 2 * PAD_Y
    times = [at.timestamp() for at, _ in points]
    start, end = (min(times), max(times)) if times else (0.0, 1.0)
    span = (end - start) or 1.0

    def x(at: float) -> float:
        return PAD_X + (at - start) / span * plot_w if len(times) > 1 else PAD_X + plot_w / 2

    def y(value: float) -> float:
        return PAD_Y + plot_h - value / top * plot_h

    path: list[str] = []
    previous = 0.0
    for at, spent in zip(times, (s for _, s in points), strict=True):
        if path:
            path.append(f"L{x(at):.1f},{y(previous):.1f}")
        path.append(f"{'M' if not path else 'L'}{x(at):.1f},{y(spent):.1f}")
        previous = spent
    title = escape(f"Privacy spent over time for {label}: {previous:.4g} of {total:.4g} epsilon")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="{title}" data-test="spend-chart">',
             f"<title>{title}</title>",
             f'<line x1="{PAD_X}" y1="{PAD_Y + plot_h}" x2="{PAD_X + plot_w}" y2="{PAD_Y + plot_h}" stroke="#56606e"/>',
             f'<line x1="{PAD_X}" y1="{PAD_Y}" x2="{PAD_X}" y2="{PAD_Y + plot_h}" stroke="#56606e"/>',
             f'<line x1="{PAD_X}" y1="{y(total):.1f}" x2="{PAD_X + plot_w}" y2="{y(total):.1f}" '
             'stroke="#b3261e" stroke-dasharray="6 4"/>',
             f'<text x="{PAD_X + plot_w}" y="{y(total) - 4:.1f}" text-anchor="end" font-size="11" fill="#b3261e">'
             f"total ε {total:.4g}</text>",
             f'<text x="{PAD_X - 6}" y="{PAD_Y + plot_h}" text-anchor="end" font-size="11" fill="#56606e">0</text>',
             f'<text x="{PAD_X - 6}" y="{PAD_Y + 4}" text-anchor="end" font-size="11" fill="#56606e">{top:.3g}</text>']
    if path:
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="#0b5cad" stroke-width="2"/>')
        for at, spent in zip(times, (s for _, s in points), strict=True):
            parts.append(f'<circle cx="{x(at):.1f}" cy="{y(spent):.1f}" r="3" fill="#0b5cad"/>')
        first, last = points[0][0], points[-1][0]
        shape = "%Y-%m-%d %H:%M" if (last - first).total_seconds() >= 86400 else "%H:%M:%S"
        parts.append(f'<text x="{PAD_X}" y="{HEIGHT - 4}" font-size="11" fill="#56606e">'
                     f"{escape(first.strftime(shape))}</text>")
        parts.append(f'<text x="{PAD_X + plot_w}" y="{HEIGHT - 4}" text-anchor="end" font-size="11" fill="#56606e">'
                     f"{escape(last.strftime(shape))}</text>")
    else:
        parts.append(f'<text x="{PAD_X + plot_w / 2}" y="{PAD_Y + plot_h / 2}" text-anchor="middle" font-size="12" '
                     'fill="#56606e">nothing spent yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text above is escaped or a formatted number
