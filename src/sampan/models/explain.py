"""Points and reason codes for a scored applicant: why a PD is what it is, in a lender's terms.

Why here: every scorer (horizontal LR/MLP/GBDT at the bank, the vertical joint score) reports the same
points scale and the same reason-code shape, so a bank's downstream systems read one format.

Points: ``base`` points at odds ``base_odds``:1 good:bad, ``pdo`` points to double the odds (600 at
50:1, 20 points to double: the usual PDO scaling). Higher points = safer.

Reason codes: per input column, its contribution to the applicant's logit against a reference point;
the columns that raise the PD most come first. Methods (stated in docs/model_format.md):

* logistic regression: ``w_k * z_k`` on the standardised value z (reference: the training mean, z = 0);
  a category's one-hot block is summed;
* MLP: occlusion against the same reference: ``logit(x) - logit(x with the column set to its training
  mean)``; for a logistic model this is exactly the linear contribution;
* GBDT: Saabas path contributions: along each tree's path, the change of the node value at every split is
  credited to the split's feature; they sum, with the base score and the root values, to the logit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ScoreCard", "occlusion_contributions", "reason_codes", "reason_codes_batch", "DEFAULT_REASONS"]

DEFAULT_REASONS = 4


@dataclass(frozen=True)
class ScoreCard:
    """Points scaling: `base` points at odds `base_odds`:1 good:bad, `pdo` points to double the odds."""

    base: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    def points(self, pd: np.ndarray) -> np.ndarray:
        pd = np.clip(np.asarray(pd, dtype=np.float64), 1e-9, 1 - 1e-9)
        factor = self.pdo / math.log(2)
        return self.base + factor * (np.log((1 - pd) / pd) - math.log(self.base_odds))

    def as_dict(self) -> dict[str, float]:
        return {"base": self.base, "base_odds": self.base_odds, "pdo": self.pdo}


def occlusion_contributions(logits: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                            blocks: Sequence[Sequence[int]], reference: np.ndarray | None = None) -> np.ndarray:
    """(n, len(blocks)): logit(X) minus logit(X with block j's columns set to ``reference`` (default 0))."""
    X = np.asarray(X, dtype=np.float64)
    ref = np.zeros(X.shape[1]) if reference is None else np.asarray(reference, dtype=np.float64)
    full = logits(X)
    out = np.empty((X.shape[0], len(blocks)))
    for j, cols in enumerate(blocks):
        occluded = X.copy()
        occluded[:, list(cols)] = ref[list(cols)]
        out[:, j] = full - logits(occluded)
    return out


def reason_codes(columns: Sequence[str], contributions: np.ndarray, top: int = DEFAULT_REASONS
                 ) -> list[dict[str, Any]]:
    """The ``top`` columns that raise this applicant's PD most (logit contributions, largest first).

    Adverse (positive) contributions come first; when fewer than ``top`` are adverse the least favourable
    others fill the list, so a reason list is never empty and never all zero unless the applicant sits
    exactly at the reference point on every column (then one zero reason says so)."""
    values = np.asarray(contributions, dtype=np.float64)
    order = [int(k) for k in np.argsort(-values, kind="stable") if values[k] != 0.0][:top]
    if not order:
        return [{"code": "R00", "feature": "(none)", "contribution": 0.0, "effect": "at the reference point"}]
    return [{"code": f"R{rank:02d}", "feature": columns[k], "contribution": float(values[k]),
             "effect": "raises risk" if values[k] > 0 else "lowers risk"} for rank, k in enumerate(order, start=1)]


def reason_codes_batch(columns: Sequence[str], contributions: np.ndarray, top: int = DEFAULT_REASONS
                       ) -> list[list[dict[str, Any]]]:
    """`reason_codes` for every row of an (n, columns) matrix at once (one argsort for the batch)."""
    values = np.asarray(contributions, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        return [reason_codes(columns, row, top) for row in values.reshape(len(values), -1)]
    order = np.argsort(-values, axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(values, order, axis=1)
    out: list[list[dict[str, Any]]] = []
    for i, (ks, vs) in enumerate(zip(order.tolist(), picked.tolist(), strict=True)):
        kept = [(k, v) for k, v in zip(ks, vs, strict=True) if v != 0.0]
        if len(kept) < len(ks):  # zeros in the top: rank this row alone (skips them, fills from the rest)
            out.append(reason_codes(columns, values[i], top))
            continue
        out.append([{"code": f"R{rank:02d}", "feature": columns[k], "contribution": v,
                     "effect": "raises risk" if v > 0 else "lowers risk"} for rank, (k, v) in enumerate(kept, start=1)])
    return out
