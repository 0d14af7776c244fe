"""One party's part of a vertical linear model, and the local preprocessing that feeds it.

In a vertical model nobody holds the whole model: each party keeps the standardisation of its own
columns and its own weights (the label holder also keeps the intercept). A party's *partial logit*
is all it ever contributes to a score, so this class is everything a party needs at scoring time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.models.scorecard import ScoreScaling, WoeTable

__all__ = ["LocalScaler", "LocalLinearPart", "FEATURE_CLIP"]

FEATURE_CLIP = 8.0  # standardised values beyond +-8 sd are clipped: bounds the fixed-point range


@dataclass
class LocalScaler:
    """Per-column standardisation fitted on the party's own training rows (nothing is shared).

    Why local: standardising is a per-column affine map, so each party can do it alone; the model is
    the same up to a reparametrisation of that party's weights. Constant columns get scale 1.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> LocalScaler:
        X = np.asarray(X, dtype=np.float64)
        mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
        scale = X.std(axis=0) if len(X) else np.ones(X.shape[1])
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(mean, scale)

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return np.clip(Z, -FEATURE_CLIP, FEATURE_CLIP)


@dataclass
class LocalLinearPart:
    """A party's columns' share of a vertical logistic model: x -> clip(w . standardise(x) [+ b])."""

    party: str
    feature_names: list[str]
    scaler: LocalScaler
    weights: np.ndarray
    intercept: float = 0.0
    logit_clip: float = 10.0
    meta: dict[str, object] = field(default_factory=dict)
    woe: list[WoeTable] | None = None     # scorecards: columns -> WOE of the selected features first
    columns: list[int] | None = None

    def features(self, X_raw: np.ndarray) -> np.ndarray:
        """The model's inputs from raw columns: WOE-coded selected columns for a scorecard, else as is."""
        X_raw = np.atleast_2d(np.asarray(X_raw, dtype=np.float64))
        if self.woe is None or self.columns is None:
            return X_raw
        return np.stack([t.transform(X_raw[:, j]) for t, j in zip(self.woe, self.columns, strict=False)], axis=1)

    def partial_logit(self, X_raw: np.ndarray) -> np.ndarray:
        """This party's additive contribution to the logit, clipped so the sum stays in range."""
        z = self.scaler.transform(self.features(X_raw)) @ self.weights + self.intercept
        return np.clip(z, -self.logit_clip, self.logit_clip)

    def contributions(self, x_raw: np.ndarray) -> np.ndarray:
        """Per-feature contributions w_k * x_k (standardised) for one row: the raw material of reason codes."""
        return self.scaler.transform(self.features(x_raw))[0] * self.weights

    def scorecard_rows(self, scaling: ScoreScaling, *, label_holder: bool) -> list[dict[str, object]]:
        """This party's rows of the scorecard: points per coarse bin of each of its features.

        Score = offset - factor * logit. The party's constant (its intercept and the centring of its
        standardised WOE columns) is spread evenly over its features, except at the label holder, which
        shows it as "base points"; the rows of all parties then add up to the score exactly (unclipped).
        """
        if self.woe is None:
            raise ValueError(f"party {self.party!r}: not a scorecard part (no WOE tables)")
        beta = self.weights / self.scaler.scale
        constant = -scaling.factor * (self.intercept - float(np.sum(beta * self.scaler.mean)))
        rows: list[dict[str, object]] = []
        if label_holder:
            rows.append({"party": self.party, "feature": "base points", "bin": "", "woe": None,
                         "points": constant + scaling.offset})
            share = 0.0
        else:
            share = constant / max(len(self.woe), 1)
        flags = dict(self.meta.get("scorecard_flags") or {})  # type: ignore[call-overload]
        for table, b in zip(self.woe, beta, strict=False):
            flag = str((flags.get(table.feature) or {}).get("flag", ""))
            for label, w in zip(table.bin_labels(), table.woe, strict=False):
                rows.append({"party": self.party, "feature": table.feature, "bin": label, "woe": float(w),
                             "points": float(-scaling.factor * b * w + share), "flag": flag})
        return rows

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        arrays = {"mean": self.scaler.mean, "scale": self.scaler.scale, "weights": self.weights}
        meta = {"party": self.party, "feature_names": list(self.feature_names), "intercept": self.intercept,
                "logit_clip": self.logit_clip, **self.meta}
        if self.woe is not None:
            meta["woe"] = [t.to_dict() for t in self.woe]
            meta["columns"] = list(self.columns or [])
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> LocalLinearPart:
        """Rebuild from `to_arrays`; `meta` is decoded JSON, hence Any."""
        extra = {k: v for k, v in meta.items()
                 if k not in ("party", "feature_names", "intercept", "logit_clip", "woe", "columns")}
        woe = [WoeTable.from_dict(d) for d in meta["woe"]] if meta.get("woe") else None
        return cls(
            party=str(meta["party"]), feature_names=list(meta["feature_names"]),
            scaler=LocalScaler(np.asarray(arrays["mean"]), np.asarray(arrays["scale"])),
            weights=np.asarray(arrays["weights"], dtype=np.float64),
            intercept=float(meta["intercept"]), logit_clip=float(meta["logit_clip"]),
            meta=extra, woe=woe, columns=list(meta["columns"]) if meta.get("columns") is not None else None,
        )
