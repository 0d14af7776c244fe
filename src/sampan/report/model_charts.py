"""Charts for a report that compares several trained models: ROC, calibration and progress for each one.

Why a separate renderer: a vertical run trains up to three models (LR, scorecard, GBDT) and the single-model
sections showed empty "No data" placeholders for all of them. Here a chart is drawn only from data a model
has; a model without a curve gets one sentence saying so, never an empty chart, and no value prints as nan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sampan.report import svg
from sampan.report._svg_base import esc
from sampan.report.content import ModelCurves

__all__ = ["models_performance", "models_progress"]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(float(value)) else None


def _figures(charts: Sequence[str]) -> str:
    figures = "".join(f"<figure>{c}</figure>" for c in charts)
    return f'<div class="grid2">{figures}</div>' if len(charts) > 1 else figures


def _missing(names: Sequence[str], what: str) -> str:
    return (f'<p class="lede">No {esc(what)} for {esc(", ".join(names))}: the run released none for '
            f'{"it" if len(names) == 1 else "them"}.</p>') if names else ""


def models_performance(models: Sequence[ModelCurves]) -> str:
    """One ROC chart with every model that has a curve, and one calibration chart per model (best first)."""
    rocs = {m.name: (list(m.roc[0]), list(m.roc[1])) for m in models if m.roc is not None and len(m.roc[0]) > 1}
    aucs = {m.name: a for m in models if (a := _finite(m.auc)) is not None}
    charts = [svg.roc_chart(rocs, aucs=aucs, title="ROC curves (held-out rows)")] if rocs else []
    calibrated = []
    for m in models:
        cal = m.calibration
        if cal is None:
            continue
        mean_p, frac, counts = list(cal.mean_predicted), list(cal.fraction_positive), list(cal.counts)
        if mean_p:
            charts.append(svg.calibration_chart(mean_p, frac, counts, title=f"Calibration: {m.name}"))
            calibrated.append(m.name)
    body = _figures(charts)
    body += _missing([m.name for m in models if m.name not in rocs], "ROC curve")
    body += _missing([m.name for m in models if m.name not in calibrated], "calibration curve")
    return (f'<section id="performance"><h2>Discrimination and calibration</h2><p class="lede">Every model '
            "trained, best first, on the same held-out rows: how well each ranks good and bad outcomes, and "
            f"whether its predicted probabilities match observed rates.</p>{body}</section>")


def models_progress(models: Sequence[ModelCurves]) -> str:
    """Per-epoch (or per-tree) curves of each model that recorded any."""
    charts = []
    for m in models:
        series = {name: [(float(x), float(y)) for x, y in pts if math.isfinite(float(y))]
                  for name, pts in m.progress.items()}
        series = {name: pts for name, pts in series.items() if pts}
        if series:
            x_label, y_label = m.progress_axes
            charts.append(svg.line_chart(series, title=f"{m.name}: {y_label} per {x_label.lower()}",
                                         x_label=x_label, y_label=y_label, integer_x=True, width=520, height=380))
    if not charts:
        return ""
    without = [m.name for m in models if not any(m.progress.values())]
    return ('<section id="progress"><h2>Training progress</h2><p class="lede">What the coordinator saw during '
            "training: the validation score per epoch (secure LR, scorecard) or the log-loss per tree (GBDT).</p>"
            f"{_figures(charts)}{_missing(without, 'training curve')}</section>")
