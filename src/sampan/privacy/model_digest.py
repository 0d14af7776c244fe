"""The model digest's canonical arrays (reviews R7-2, R12-SAC-1/3): a model digested by what it computes.

Why: SecAgg locks a model digest to one survivor set and, under DP, a party evaluates one model per run. A
digest of the request bytes lets a coordinator re-send the same model under a scaler that changes nothing
(mean 1e-300, or parameters pre-multiplied by the scale) and get a second unmasking. Folding the scaler into
the first layer makes those requests one model.

What each role learns: nothing; this runs inside a party on the request it received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["CANONICAL_BITS", "MODEL_ARRAYS", "canonical_arrays"]

# Every array a `fit`/`evaluate` handler computes from (review R12-HOR-1: a GBDT payload's split thresholds are in
# ``edges``/``edge_counts``; outside the digest, a DP run's "one model" could be re-evaluated at any threshold).
# ``impute``: the fill values of missing cells (issue 13) change what the model computes on the party's rows
MODEL_ARRAYS = ("params", "mean", "scale", "edges", "edge_counts", "impute")

# relative precision of a digested (folded) parameter: a model perturbed below it computes the same scores up to
# ~1e-12 and is locked as the same model (conservative: it merges, never splits, one model's digests)
CANONICAL_BITS = 40


def canonical_arrays(config: Any, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model arrays as the function they compute: float64 with -0.0 as 0.0; for a logistic model or an MLP
    the scaler folded into the first layer (w' = w/s, b' = b - sum(w*m/s)) and the folded parameters rounded to
    `CANONICAL_BITS` below their largest magnitude; a GBDT payload without its (unused) scaler. Any other kind,
    or arrays that do not fit the config, are digested as sent."""
    out = {name: np.ascontiguousarray(np.asarray(arrays[name], dtype=np.float64) + 0.0)
           for name in MODEL_ARRAYS if name in arrays}
    if "impute" in out:  # NaN (nothing to fill) in one bit pattern: payload bits must not split one model's digest
        out["impute"] = np.where(np.isnan(out["impute"]), np.nan, out["impute"])
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind == "gbdt":  # trees split raw feature values: the scaler does not enter the function
        out.pop("mean", None), out.pop("scale", None)
        return out
    if kind not in ("logistic", "mlp") or "params" not in out:
        return out
    try:
        width = int(config["n_features"])
        hidden = int((config.get("hidden") or [1])[0]) if kind == "mlp" else 1
        params = out["params"].copy()
        if "mean" in out and "scale" in out:
            mean, scale = out.pop("mean"), out.pop("scale")
            if mean.shape != (width,) or scale.shape != (width,) or not np.all(scale > 0):
                return {**out, "mean": mean, "scale": scale}
            if kind == "logistic":
                if params.size != width + 1:
                    return {**out, "mean": mean, "scale": scale}
                w = params[:width] / scale
                params[:width], params[width] = w, params[width] - float(w @ mean)
            else:
                n_w = width * hidden
                if params.size < n_w + hidden:
                    return {**out, "mean": mean, "scale": scale}
                w = params[:n_w].reshape(width, hidden) / scale[:, None]
                params[:n_w], params[n_w:n_w + hidden] = w.ravel(), params[n_w:n_w + hidden] - mean @ w
        out["params"] = _quantized(params)
    except (TypeError, ValueError, KeyError, IndexError):
        return out
    return out


def _quantized(params: np.ndarray) -> np.ndarray:
    """`params` rounded to a power-of-two grid `CANONICAL_BITS` below the largest finite magnitude (exact floats)."""
    finite = np.abs(params[np.isfinite(params)])
    if finite.size == 0 or not np.any(finite):
        return np.ascontiguousarray(params + 0.0)
    step = 2.0 ** (float(np.floor(np.log2(finite.max()))) - CANONICAL_BITS)
    return np.ascontiguousarray(np.rint(params / step) * step + 0.0)
