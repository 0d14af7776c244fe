"""ROC and calibration curves from counts in fixed PD bands: computed where the labels are, drawn anywhere.

Why bands: the report draws a ROC and a calibration curve for every model, but only aggregates may leave the
bank. The bank bins its held-out PDs into fixed bands (edges public, uniform in logit, the same for every model
and run: no edge depends on the data) and releases per band the number of defaults, of non-defaults and the sum
of the PDs (``score.metrics`` / ``vgb.metrics`` meta ``curves``). The ROC's points are the band edges; the
calibration bins are the non-empty bands. Small cells (review R13-VCURVE-1: a band holding one test row gave that
row's label and exact PD): adjacent bands are merged, lowest PD first, until each released band holds at least
`MIN_BAND_ROWS` rows (the horizontal group release's rule); a merged band's counts sit in its highest band, the
others of its run are released as zero, so the curves' format is unchanged. Released with the other held-out
metrics (AUC, KS, Brier), under the same rules (`sampan.vertical.rows`): only the fixed test rows the bank
computed (at least 50), each model once; test rows are outside the DP unit, so no noise (declared in the
receipt: `party_parts.VIEWS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["BAND_LOGITS", "MIN_BAND_ROWS", "score_bands", "roc_from_bands", "calibration_from_bands"]

BAND_LOGITS = np.linspace(-7.0, 5.0, 25)  # interior edges in logit: PD 0.0009 .. 0.993, 26 bands
MIN_BAND_ROWS = 10  # fewest rows a released band holds (as the horizontal group release's levels)


def score_bands(y: np.ndarray, pd: np.ndarray, min_rows: int = MIN_BAND_ROWS) -> dict[str, list[float]]:
    """Per fixed PD band: defaults, non-defaults, summed PD (the bank's release), small bands merged upwards."""
    y = np.asarray(y, dtype=np.float64)
    pd = np.clip(np.asarray(pd, dtype=np.float64), 1e-12, 1 - 1e-12)
    band = np.searchsorted(BAND_LOGITS, np.log(pd / (1 - pd)), side="right")
    k = len(BAND_LOGITS) + 1
    pos = np.bincount(band, weights=y, minlength=k)
    total = np.bincount(band, minlength=k).astype(np.float64)
    sum_pd = np.bincount(band, weights=pd, minlength=k)
    target = _merged(total, min_rows)
    out = {}
    for key, values in (("pos", pos), ("neg", total - pos), ("sum_pd", sum_pd)):
        out[key] = np.bincount(target, weights=values, minlength=k).tolist()
    return out


def _merged(count: np.ndarray, min_rows: int) -> np.ndarray:
    """For each band, the band its rows are released in: runs of adjacent bands, lowest first, each closed once
    it holds `min_rows` rows (released in its highest band); a short last run joins the one before it."""
    target = np.arange(len(count))
    runs: list[list[int]] = [[]]
    held = 0.0
    for b in range(len(count)):
        runs[-1].append(b)
        held += count[b]
        if held >= min_rows:
            runs.append([])
            held = 0.0
    if len(runs) > 1 and (not runs[-1] or count[runs[-1]].sum() < min_rows):
        runs[-2].extend(runs.pop())
    for run in runs:
        target[run] = run[-1]
    return target


def roc_from_bands(bands: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """(fpr, tpr) at every band edge, from the highest PD band down; None without both classes."""
    pos, neg = np.asarray(bands.get("pos") or [], float), np.asarray(bands.get("neg") or [], float)
    if not len(pos) or pos.sum() <= 0 or neg.sum() <= 0:
        return None
    tpr = np.concatenate([[0.0], np.cumsum(pos[::-1]) / pos.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(neg[::-1]) / neg.sum()])
    return fpr.tolist(), tpr.tolist()


def calibration_from_bands(bands: Mapping[str, Any]) -> tuple[list[float], list[float], list[int]] | None:
    """(mean predicted, observed default rate, rows) per non-empty band; None when every band is empty."""
    pos, neg = np.asarray(bands.get("pos") or [], float), np.asarray(bands.get("neg") or [], float)
    sum_pd = np.asarray(bands.get("sum_pd") or [], float)
    count = pos + neg
    keep = count > 0
    if not len(count) or not keep.any():
        return None
    return ((sum_pd[keep] / count[keep]).tolist(), (pos[keep] / count[keep]).tolist(),
            count[keep].astype(int).tolist())
