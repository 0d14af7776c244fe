"""The verifiers that are LINEAR in the device's feature vector, so the sites can run them on secret shares.

Two of them, each "higher = more like an original", both a weight vector over the whole feature vector
(`sampan.qr.features`: N_STATS key-free statistics, then the standardised CDP cells) plus a bias:

- the keyed correlation (`correlation_weights`): mean(cells * t) with t the standardised +-1 template from
  HMAC(key, serial) (`sampan.qr.cdp.cdp_pattern`), i.e. weights (0, ..., 0, t / n). It equals
  `sampan.qr.verifiers.keyed_scores(...)[0]` because the device's cells are already standardised;
- the linear verification model (`LinearVerifierModel`, trained by `sampan.qr.federated`): a logistic
  model on the "model features" (the statistics and the keyed correlation). Expanded, it is
  stat_weights . stats + corr_weight * (t / n) . cells + bias: still linear in the feature vector, with
  weights only a holder of the CDP key can form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.qr.cdp import CdpError, cdp_pattern
from sampan.qr.features import N_STATS, STAT_NAMES, split_features

__all__ = ["LinearVerifierModel", "MODEL_FEATURES", "cells_side", "correlation_weights", "model_features",
           "template_unit"]

MODEL_FEATURES = (*STAT_NAMES, "keyed_correlation")


def cells_side(n_features: int) -> int:
    """The CDP side of a feature vector of `n_features` values (N_STATS statistics + side^2 cells)."""
    side = int(round(math.sqrt(max(n_features - N_STATS, 0))))
    if side < 4 or side * side != n_features - N_STATS:
        raise CdpError(f"field 'features': {n_features} values are not {N_STATS} statistics + a square of cells")
    return side


def template_unit(key: bytes, serial: str, side: int) -> np.ndarray:
    """t / n: the standardised +-1 template of `serial` (paper +1, ink -1) divided by the number of cells."""
    template = np.where(cdp_pattern(key, serial, side).ravel(), -1.0, 1.0)
    t = (template - template.mean()) / max(float(template.std()), 1e-9)
    return t / t.size


def correlation_weights(key: bytes, serial: str, n_features: int) -> tuple[np.ndarray, float]:
    """(weights, bias) of the keyed correlation over the full feature vector."""
    unit = template_unit(key, serial, cells_side(n_features))
    return np.concatenate([np.zeros(N_STATS), unit]), 0.0


def model_features(features: np.ndarray, key: bytes, serial: str) -> np.ndarray:
    """The linear model's inputs: the N_STATS statistics and the keyed correlation (needs the CDP key: sites
    and training only, never the device)."""
    stats, cells = split_features(np.asarray(features, dtype=np.float64))
    unit = template_unit(key, serial, cells_side(features.size))
    return np.concatenate([stats, [float(cells @ unit)]])


@dataclass(frozen=True)
class LinearVerifierModel:
    """score = w . model_features + bias on RAW model features, higher = original (minus the copy logit)."""

    weights: np.ndarray   # (len(MODEL_FEATURES),)
    bias: float

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (len(MODEL_FEATURES),) or not np.isfinite(w).all() or not math.isfinite(self.bias):
            raise CdpError(f"field 'weights' must hold {len(MODEL_FEATURES)} finite values and 'bias' be finite")
        object.__setattr__(self, "weights", w)

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Scores of an (n, len(MODEL_FEATURES)) array of model features (plaintext: training and tests)."""
        return np.atleast_2d(rows) @ self.weights + self.bias

    def expanded(self, key: bytes, serial: str, n_features: int) -> tuple[np.ndarray, float]:
        """(weights, bias) over the full feature vector of `serial`: what a site applies to its share."""
        unit = template_unit(key, serial, cells_side(n_features))
        return np.concatenate([self.weights[:N_STATS], self.weights[N_STATS] * unit]), self.bias

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no pickle)."""
        return {"features": list(MODEL_FEATURES), "weights": self.weights.tolist(), "bias": self.bias}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearVerifierModel:
        if data.get("features") != list(MODEL_FEATURES):
            raise CdpError("field 'features': the linear verification model was trained on other features")
        return cls(np.asarray(data["weights"], dtype=np.float64), float(data["bias"]))
