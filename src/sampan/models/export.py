"""The versioned export format of a horizontal model: ``sampan-model`` version 1, one JSON document.

Why: a bank must be able to score with a model outside Sampan (its own decision engine, a validator's
notebook) from a documented file, not from Sampan's internal registry arrays. Everything a scorer needs is
in the document: input columns and their encoding (one-hot categories, imputation, standardisation),
the model (weights, layers or threshold trees), the link function, the threshold and the points scale.
Every float is a JSON number written with Python's shortest round-trip repr, so float64 values survive
exactly. The format is specified in docs/model_format.md (a test re-scores an export with a reference
scorer that imports nothing from Sampan).

Vertical models are not exported as one file: each party's part stays with its owner (the bank's part
and the partners' parts are in their own registries); only joint scoring combines them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.errors import ConfigError
from sampan.models.explain import ScoreCard
from sampan.models.mlp import MLP
from sampan.models.predictor import MISSING_CATEGORY, MISSING_MARKERS, _inputs
from sampan.models.registry import model_from_config
from sampan.models.tree_scoring import TreeEnsemble

__all__ = ["FORMAT", "FORMAT_VERSION", "export_document"]

FORMAT = "sampan-model"
FORMAT_VERSION = 1
_BIG = float(np.finfo(np.float64).max)  # "always left" for an observed value (JSON has no infinity)


def _floats(values: Any) -> list[float | None]:
    """float64 values as JSON numbers (NaN -> null, +-inf -> +-max float64)."""
    out: list[float | None] = []
    for v in np.asarray(values, dtype=np.float64).ravel():
        out.append(None if np.isnan(v) else float(np.clip(v, -_BIG, _BIG)))
    return out


def _encoding(feature_names: Sequence[str], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    inputs = []
    for item in _inputs(feature_names):
        if item.categories is not None:
            inputs.append({"name": item.name, "type": "category", "categories": list(item.categories)})
        elif item.name.endswith("_missing") and item.name.removesuffix("_missing") in set(feature_names):
            inputs.append({"name": item.name, "type": "missing_indicator", "of": item.name.removesuffix("_missing")})
        else:
            inputs.append({"name": item.name, "type": "numeric"})
    width = len(feature_names)
    impute = arrays.get("scaler.impute", arrays.get("impute"))
    mean, scale = arrays.get("scaler.mean"), arrays.get("scaler.scale")
    return {"inputs": inputs, "features": list(feature_names),
            "missing_markers": sorted(MISSING_MARKERS), "missing_category": MISSING_CATEGORY,
            "impute": _floats(impute) if impute is not None else [None] * width,
            "standardise": None if mean is None or scale is None else {"mean": _floats(mean), "scale": _floats(scale)}}


def _model_part(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    spec = dict(meta.get("model") or {})
    kind = spec.get("kind")
    if kind == "gbdt":
        ensemble = TreeEnsemble.from_payload(spec, arrays)
        trees = []
        for tree in ensemble.trees:
            d = tree.to_dict()
            d["threshold"] = _floats(tree.threshold)
            trees.append({k: d[k] for k in ("feature", "threshold", "missing_left", "left", "right", "value")})
        return {"kind": "gbdt", "base_score": ensemble.base_score, "trees": trees}
    model = model_from_config(spec)
    params = model.check_params(arrays["params"])
    if kind == "logistic":
        return {"kind": "logistic", "weights": _floats(params[:-1]), "intercept": float(params[-1])}
    assert isinstance(model, MLP)
    layers = []
    for k, (W, b) in enumerate(model._layers(params)):
        last = k == len(model.hidden)
        layers.append({"weights": [_floats(row) for row in W], "bias": _floats(b),
                       "activation": "identity" if last else "relu"})
    return {"kind": "mlp", "layers": layers}


def export_document(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], *, name: str, version: int | None,
                    run_id: str | None = None, threshold: float | None = None, card: ScoreCard | None = None,
                    extra_markers: Sequence[str] = (),
                    column_markers: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The ``sampan-model`` v1 document of a registered horizontal LR, MLP or GBDT (docs/model_format.md)."""
    kind = (meta.get("model") or {}).get("kind")
    if kind not in ("logistic", "mlp", "gbdt") or "feature_names" not in meta:
        raise ConfigError(f"model {name!r}: only horizontal logistic, MLP and GBDT models export to {FORMAT} (a "
                          "vertical model's parts stay with their parties)")
    encoding = _encoding([str(n) for n in meta["feature_names"]], arrays)
    encoding["missing_markers"] = sorted(set(encoding["missing_markers"]) | {m.strip().lower() for m in extra_markers})
    own = {str(c): sorted({str(m).strip().lower() for m in v}) for c, v in (column_markers or {}).items() if v}
    if own:  # review R13-SCO-19: a column's own markers, applied to that column only (with the usual ones)
        encoding["column_missing_markers"] = own
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "version": version, "run_id": run_id,
            "encoding": encoding, "model": _model_part(meta, arrays),
            "link": "logistic", "threshold": threshold, "points": (card or ScoreCard()).as_dict(),
            "native_missing": kind == "gbdt"}
