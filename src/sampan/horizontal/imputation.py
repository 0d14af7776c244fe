"""Federated imputation for horizontal runs: the values that fill each party's missing cells.

Which columns are imputed how is public (the run's `[schema]`: `impute` = median / mean / indicator; native
columns keep NaN for trees). At setup, after `describe` and before the standardisation `stats`, the coordinator
asks every party for `impute_stats` over its training rows and combines them:
- mean (and indicator, which fills the mean): Σ count and Σ sum of the present cells, values clipped to the
  column's public bounds and sent as z = (x − mid)/half-width in [−1, 1] (exact raw sums without bounds, no DP);
- median: a histogram over equal public bins of the bounds, summed over the parties, the median interpolated
  in its bin (`MEDIAN_BINS`, `MEDIAN_BINS_DP` under DP). Without DP a column without bounds first costs one
  exact `ranges` request (each party's min and max of the column).
Under `[privacy]` each party answers through the DP1 mod `sampan.privacy.imputation` (one Gaussian release per
run, charged at the party), and the coordinator charges the same release for every party, write-ahead, before
the request leaves. The statistics are released per party (not under secure aggregation, like the `stats`
moments); the receipt lists them. The fill values (one per model column, NaN where nothing is filled) then
travel with the scaler in every `stats`, `fit` and `evaluate` request as ``arrays.impute``, are checkpointed
with it and stored in the model artifact (``scaler.impute``), so scoring imputes exactly as training did.

What each role learns: the coordinator learns each party's statistics (noised under DP, exact without; and
without DP and bounds, each party's min and max); every party learns the fill values (derived from them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.data import PartyData
from sampan.data.missing import MissingColumn, check_fill_values, fill_missing, median_from_histogram, missing_columns
from sampan.horizontal.dp1_scaler import emit_warning
from sampan.privacy.calibration import calibrate_noise_multiplier
from sampan.privacy.imputation import IMPUTE_KIND
from sampan.privacy.imputation_request import MEDIAN_BINS, MEDIAN_BINS_DP, checked_columns, checked_ranges
from sampan.privacy.ledger import Budget, PrivacyEvent
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["AUTO_SHARE", "IMPUTE_NOTE", "MEDIAN_BINS", "MEDIAN_BINS_DP", "federated_fill_values", "imputed",
           "impute_statistics"]

AUTO_SHARE = 0.05      # 'auto' imputation noise: the release costs at most this share of each party's epsilon
IMPUTE_NOTE = "imputation statistics"


# --- party side (exact; the DP1 mod noises it) ---------------------------------------------------------
def _present(data: PartyData, index: int) -> np.ndarray:
    """One column's present cells in float64 (a compact float32 table's sums are taken in float64)."""
    x = data.X[:, index]
    return x[~np.isnan(x)].astype(np.float64, copy=False)


def _range(data: PartyData, index: int) -> tuple[float, float]:
    """One column's (min, max) over its present cells, (NaN, NaN) when it has none, read in place: NaN-skipping
    reductions over the strided column, no copy (review R15-HLR-5: the ranges of every asked column once held a
    float64 copy of each, all alive together). A float32 value widens to float64 exactly, so the figures are
    those of the float64 copy's min and max."""
    x = data.X[:, index]
    if not x.size:
        return np.nan, np.nan
    return float(np.fmin.reduce(x)), float(np.fmax.reduce(x))  # NaN only where every cell is missing


def impute_statistics(data: PartyData, msg: Message) -> Message:
    """Exact `impute_stats` reply over the party's training rows (see the module docstring), for a request its
    own schema admits (`checked_columns` / `checked_ranges`: refused naming the column otherwise)."""
    if "ranges" in msg.meta:
        cols = checked_ranges(data.party, msg.meta, data.missing_columns)
        low, high = np.array([_range(data, c.index) for c in cols], dtype=np.float64).reshape(len(cols), 2).T
        return msg.reply(IMPUTE_KIND, arrays={"low": low.copy(), "high": high.copy()})
    count, sums, hist = [], [], []
    for c in checked_columns(data.party, msg.meta, data.missing_columns):
        x = _present(data, int(c["index"]))
        bounds = c.get("bounds")
        if c["statistic"] == "mean":
            count.append(float(x.size))
            if bounds is None:
                sums.append(float(x.sum()))
            else:  # z clipped itself: |z| <= 1 per cell even where the rounded midpoint is off (R13-IMP-2)
                lo, hi = float(bounds[0]), float(bounds[1])
                sums.append(float(np.clip((np.clip(x, lo, hi) - (lo + hi) / 2) / ((hi - lo) / 2), -1.0, 1.0).sum()))
            continue
        lo, hi, bins = float(c["bounds"][0]), float(c["bounds"][1]), int(c["bins"])
        if x.size and not lo <= float(x.min()) <= float(x.max()) <= hi:  # a window on part of its values (R13-IMP-3)
            raise PolicyRefused(f"party {data.party!r} refuses a median sketch of column {c.get('name')!r} over "
                                f"{[lo, hi]}: the window must hold all its values (declare bounds in [schema])")
        hist.append(np.histogram(np.clip(x, lo, hi), bins=bins, range=(lo, hi))[0].astype(np.float64))
    return msg.reply(IMPUTE_KIND, arrays={"count": np.array(count), "sum": np.array(sums),
                                          "hist": np.concatenate(hist) if hist else np.zeros(0)})


def imputed(X: np.ndarray, arrays: Mapping[str, np.ndarray], columns: Sequence[MissingColumn]) -> np.ndarray:
    """``X`` with its missing cells filled by the request's ``impute`` values (``X`` itself without missing cells;
    a NaN left in a column that is not native is refused, naming the column)."""
    if "impute" not in arrays and not np.isnan(X).any():
        return X
    return fill_missing(X, arrays.get("impute", np.full(X.shape[1], np.nan)), columns)


# --- coordinator side ----------------------------------------------------------------------------------
def _noise(privacy: Any, parties: Sequence[str]) -> float:
    """The imputation release's noise multiplier: as configured, or 'auto': the smallest that costs at most
    `AUTO_SHARE` of each party's epsilon (data-independent)."""
    z = privacy.impute_noise_multiplier
    if z != "auto":
        return float(z)
    budgets = {p: Budget(privacy.epsilon * AUTO_SHARE, privacy.delta) for p in parties}
    return calibrate_noise_multiplier(lambda m: [PrivacyEvent(party=p, level="DP1", mechanism="gaussian",
                                                              noise_multiplier=m) for p in parties],
                                      budgets, accountant=privacy.accountant)


def _columns(plan: Sequence[MissingColumn], ranges: Mapping[int, tuple[float, float]], dp: bool
             ) -> list[dict[str, Any]]:
    out = []
    for c in plan:
        bounds = c.bounds if c.bounds is not None else ranges.get(c.index)
        entry: dict[str, Any] = {"index": c.index, "name": c.name, "statistic": c.statistic,
                                 "bounds": None if bounds is None else [float(bounds[0]), float(bounds[1])]}
        if c.statistic == "median":
            entry["bins"] = MEDIAN_BINS_DP if dp else MEDIAN_BINS
        out.append(entry)
    return out


def _ranges(workflow: Any, parties: list[str], plan: Sequence[MissingColumn]) -> dict[int, tuple[float, float]]:
    """Without DP, median columns without public bounds: the pooled range from each party's exact min/max."""
    wanted = [c for c in plan if c.statistic == "median" and c.bounds is None]
    if not wanted:
        return {}
    asked = [{"index": c.index, "name": c.name} for c in wanted]
    low, high = np.full(len(wanted), np.inf), np.full(len(wanted), -np.inf)
    for reply in workflow._request(parties, IMPUTE_KIND, 0, meta_for=lambda p: {"ranges": asked}):
        low, high = np.fmin(low, reply.arrays["low"]), np.fmax(high, reply.arrays["high"])
    out = {}
    for c, lo, hi in zip(wanted, low, high, strict=True):
        lo, hi = (0.0, 1.0) if not np.isfinite(lo) else (float(lo), float(hi))
        out[c.index] = (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)
    return out


def _combine(columns: list[dict[str, Any]], totals: Mapping[str, np.ndarray], width: int) -> np.ndarray:
    """The fill value of every imputed column from the summed statistics (post-processing)."""
    fill = np.full(width, np.nan)
    i_mean = i_hist = 0
    for c in columns:
        bounds = c["bounds"]
        if c["statistic"] == "mean":
            n, s = float(totals["count"][i_mean]), float(totals["sum"][i_mean])
            i_mean += 1
            if bounds is None:
                fill[c["index"]] = s / n if n > 0 else 0.0
            else:
                lo, hi = bounds
                fill[c["index"]] = (lo + hi) / 2 + (hi - lo) / 2 * (float(np.clip(s / n, -1, 1)) if n >= 1 else 0.0)
        else:
            bins = int(c["bins"])
            fill[c["index"]] = median_from_histogram(totals["hist"][i_hist:i_hist + bins], *bounds)
            i_hist += bins
    return check_fill_values(fill, width)


def _empty_columns(columns: list[dict[str, Any]], totals: Mapping[str, np.ndarray]) -> list[str]:
    """The columns no party has a present cell of (exact statistics only)."""
    empty, i_mean, i_hist = [], 0, 0
    for c in columns:
        if c["statistic"] == "mean":
            n = float(totals["count"][i_mean])
            i_mean += 1
        else:
            n = float(np.sum(totals["hist"][i_hist:i_hist + int(c["bins"])]))
            i_hist += int(c["bins"])
        if n <= 0:
            empty.append(str(c["name"]))
    return empty


def federated_fill_values(workflow: Any, parties: list[str], width: int) -> np.ndarray | None:
    """The agreed fill values (NaN where nothing is filled), or None when the schema imputes nothing.

    ``workflow`` is the `HorizontalWorkflow` (its config, `_request` and `privacy` control)."""
    schema = workflow.config.schema_
    plan = [c for c in missing_columns(schema) if c.statistic is not None] if schema is not None else []
    if not plan:
        return None
    control = workflow.privacy
    dp = control.enabled
    columns = _columns(plan, {} if dp else _ranges(workflow, parties, plan), dp)
    meta: dict[str, Any] = {"columns": columns}
    if dp:
        z = control.setup_noise["DP1:impute"] = _noise(control.privacy, parties)
        control.charge([PrivacyEvent(party=p, level="DP1", mechanism="gaussian", noise_multiplier=z, step=0,
                                     note=IMPUTE_NOTE) for p in parties])  # write-ahead, before the request
        meta["dp"] = {"noise_multiplier": z}
    totals: dict[str, np.ndarray] = {}
    for reply in workflow._request(parties, IMPUTE_KIND, 0, meta_for=lambda p: meta):
        for key in ("count", "sum", "hist"):
            totals[key] = totals.get(key, 0) + np.asarray(reply.arrays[key], dtype=np.float64)
    fill = _combine(columns, totals, width)
    if not dp:  # an exact count of 0: the fill is a default (bounds' midpoint, 0), not a statistic; say so
        empty = _empty_columns(columns, totals)
        if empty:
            emit_warning(workflow.ctx, f"imputed columns {empty} have no present value at any party: their missing "
                         "cells are filled with a default (the bounds' midpoint, else 0), not a statistic of the data")
    workflow.recorder.event("imputation_agreed", {  # the audit trail: which columns, the noise, the values
        "columns": [c["name"] for c in columns], "dp": dp,
        "noise_multiplier": meta.get("dp", {}).get("noise_multiplier"),
        "values": {c["name"]: float(fill[c["index"]]) for c in columns}})
    return fill
