"""Numerical safety of secure vertical training: inputs checked before it starts, metrics checked as they come.

Why: secure LR computes on fixed-point shares (`sampan.crypto.ring`: Z_2^64, features at 2^-FEATURE_BITS, the
sigmoid polynomial exact for |z| up to its ring capacity and close to sigmoid only inside its fit range). A value
outside that range does not raise anything by itself: it wraps, and the run used to print validation "Brier"
scores of 178 and 1,219,364. So:

* before any share exists, each party checks its own training columns (`check_feature_range`): every value
  finite and standardisable in float64, the standardised column (clipped to +-FEATURE_CLIP) representable
  at FEATURE_BITS in the ring; a failing column is named with what to do. Nothing leaves the party but the
  error (which names only the party's own columns);
* the coordinator checks the public shape against the ring before training (`check_fixed_point`): a batch's
  gradient sum, at most batch x FEATURE_CLIP x max|residual| at FEATURE_BITS + RESIDUAL_BITS fractional bits,
  must stay inside the 62 bits truncation is exact on. The weights themselves are secret-shared and unknown
  before training, so |w.x| cannot be bounded in advance: the opened validation score is that check;
* each metric the coordinator receives is checked against the range it can take (`check_metric`):
  Brier in [0, 1], AUC and KS in [0, 1], log-loss finite and >= 0; outside it the run stops with an error
  naming the model, the metric and the remedy, instead of reporting it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.errors import DataError, ProtocolError
from sampan.vertical.secure_lr_encode import column_moments

__all__ = ["check_feature_range", "check_fixed_point", "check_metric", "check_metrics", "MetricRangeError"]

_RING_BITS = 64


class MetricRangeError(ProtocolError, ValueError):
    """A metric outside the range it can take: the fixed-point computation left its range (or a bug)."""


def check_feature_range(party: str, names: Sequence[str], X: np.ndarray, *, clip: float, frac_bits: int,
                        rows: np.ndarray | None = None) -> None:
    """Refuse training columns that cannot be standardised and encoded without overflow, naming them.

    rows: check X[rows] over row blocks (`secure_lr_encode.column_moments`) instead of a copy of those rows."""
    if rows is not None:
        if X.ndim != 2 or not len(rows):
            return
        finite, _, spread = column_moments(X, rows)
        bad_values = [j for j in range(X.shape[1]) if not finite[j]]
    else:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not len(X):
            return
        bad_values = [j for j in range(X.shape[1]) if not np.all(np.isfinite(X[:, j]))]
        with np.errstate(over="ignore", invalid="ignore"):
            spread = X.std(axis=0)
    overflow = [j for j in range(X.shape[1]) if j not in bad_values and not math.isfinite(float(spread[j]))]
    if bad_values or overflow:
        parts = []
        if bad_values:
            parts.append(f"non-finite values (NaN or infinite) in {_named(names, bad_values)}: declare a missing-value "
                         "policy for them or fill them before training")
        if overflow:
            parts.append(f"values too large to standardise in float64 in {_named(names, overflow)}: rescale (e.g. "
                         "to thousands) or clip them")
        raise DataError(f"party {party!r}: secure LR cannot start: " + "; ".join(parts))
    # the standardised, clipped value at 2^-frac_bits, times the ring's signed range: never wraps if this holds
    if clip * 2.0 ** frac_bits >= 2.0 ** (_RING_BITS - 2):
        raise DataError(f"party {party!r}: secure LR cannot start: features clipped at +-{clip:g} sd need "
                        f"{frac_bits} fractional bits beyond the {_RING_BITS}-bit ring; lower the feature clip")


def check_fixed_point(batch_size: int, *, clip: float, feature_bits: int, residual_bits: int,
                      max_residual: float = 1.1) -> None:
    """Refuse a batch whose gradient sum could leave the ring's exact range (`sampan.crypto.ring`: 2^62)."""
    bound = batch_size * clip * max_residual * 2.0 ** (feature_bits + residual_bits)
    if bound >= 2.0 ** (_RING_BITS - 2):
        most = int(2.0 ** (_RING_BITS - 2) / (clip * max_residual * 2.0 ** (feature_bits + residual_bits)))
        raise ProtocolError(f"vertical LR: batch_size {batch_size} can make a gradient sum reach {bound:.3g} ring "
                            f"units, beyond the {_RING_BITS - 2}-bit range the fixed-point truncation is exact on; "
                            f"use a batch_size of at most {most}")


def check_metric(model: str, name: str, value: Any) -> None:
    """One metric against its possible range (None: not reported, accepted)."""
    if value is None:
        return
    v = float(value)
    low, high = {"brier": (0.0, 1.0), "auc": (0.0, 1.0), "ks": (0.0, 1.0), "val_brier": (0.0, 1.0)}.get(
        name, (0.0, math.inf))
    if not (math.isfinite(v) and low <= v <= high):
        raise MetricRangeError(
            f"{model}: {name} = {v:.6g} is outside its possible range [{low:g}, {high:g}]: the fixed-point "
            "computation left its range (logits beyond the sigmoid polynomial's fit range, or a wrapped ring "
            "value); lower learning_rate, raise l2, or standardise/clip the columns with extreme values")


def check_metrics(model: str, metrics: Mapping[str, Any],
                  names: Sequence[str] = ("auc", "ks", "brier", "val_brier", "train_logloss", "val_logloss")) -> None:
    """Every known metric of one model's report (others are left alone)."""
    for name in names:
        if name in metrics:
            check_metric(model, name, metrics[name])


def _named(names: Sequence[str], columns: list[int]) -> str:
    shown = [repr(str(names[j])) if j < len(names) else f"#{j}" for j in columns[:8]]
    more = f" and {len(columns) - 8} more" if len(columns) > 8 else ""
    return "column" + ("s " if len(columns) > 1 else " ") + ", ".join(shown) + more
