"""The models a vertical run trained, best first, with the curves the report draws for each one.

Everything comes from the stored run info: the bank's held-out metrics and PD-band counts of each model
(`sampan.metrics.score_bands`), the validation score per epoch the coordinator opened during secure LR, and the
per-tree log-loss of the vertical GBDT. Models are ordered by held-out AUC (the only figure every model has on
the same rows; the validation scores differ in kind between secure LR and GBDT), and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sampan.metrics import CalibrationCurve
from sampan.metrics.score_bands import calibration_from_bands, roc_from_bands
from sampan.report.content import ModelCurves

__all__ = ["trained_models", "finite", "LR_NAME", "SCORECARD_NAME", "GBDT_NAME"]

LR_NAME, SCORECARD_NAME, GBDT_NAME = "vertical LR (secure)", "vertical scorecard (WOE + secure LR)", "vertical GBDT"


def finite(value: Any) -> float | None:
    """A metric as a finite float, or None (never nan in a report)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _history(records: list[Mapping[str, Any]], x: str, ys: Mapping[str, str]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for label, key in ys.items():
        pts = [(float(r[x]), v) for r in records if x in r and (v := finite(r.get(key))) is not None]
        if pts:
            out[label] = pts
    return out


def trained_models(info: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], ModelCurves]]:
    """(name, held-out metrics, curves) of each model the run trained, best held-out AUC first; the bank-alone
    baseline is not among them (it is a comparison, shown in the tables)."""
    comparison: Mapping[str, Mapping[str, Any]] = info.get("comparison") or {}
    curves: Mapping[str, Mapping[str, Any]] = info.get("curves") or {}
    progress = {
        LR_NAME: (_history(list((info.get("training") or {}).get("history") or []), "epoch",
                           {"validation Brier": "val_brier"}), ("Epoch", "Validation Brier")),
        SCORECARD_NAME: (_history(list((curves.get("scorecard_training") or {}).get("history") or []), "epoch",
                                  {"validation Brier": "val_brier"}), ("Epoch", "Validation Brier")),
        GBDT_NAME: (_history(list((curves.get("gbdt_training") or {}).get("history") or []), "tree",
                             {"training log-loss": "train_logloss", "validation log-loss": "val_logloss"}),
                    ("Tree", "Log-loss")),
    }
    out = []
    for name, metrics in comparison.items():
        if name not in progress:
            continue
        bands = metrics.get("curves") or {}
        cal = calibration_from_bands(bands)
        series, axes = progress[name]
        out.append((name, dict(metrics), ModelCurves(
            name, auc=finite(metrics.get("auc")), roc=roc_from_bands(bands),
            calibration=CalibrationCurve(*cal) if cal else None, progress=series,  # type: ignore[arg-type]
            progress_axes=axes)))
    out.sort(key=lambda m: -(finite(m[1].get("auc")) or -1.0))
    return out
