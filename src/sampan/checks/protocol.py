"""The checks' message kinds and the exact computations behind them (a party's side; no noise here).

Why apart: the handlers (`sampan.checks.party`) and the coordinator's comparison (`sampan.checks.findings`)
share the bin layout and the PSI formula; the DP mod (`sampan.checks.privacy`) noises the replies these build.

Kinds (request -> reply, both named the same):
- ``checks.schema``: the party's declared table schema (id and label column names, per feature its kind, public
  bounds, categories and missing markers): public metadata, the same for any rows.
- ``checks.label``: ``[rows, positives]`` of a party that holds the label (exact, or Laplace-noised by the mod).
- ``checks.histogram``: per requested column, counts in ``bins`` equal-width bins over the column's public bounds
  (values outside are clamped into the edge bins) plus one bin for missing cells.
- ``checks.overlap``: the label holder's count of ids it has in common with a partner, from the PSI run in
  cardinality mode just before (`sampan.vertical.psi`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["HISTOGRAM", "KINDS", "LABEL", "OVERLAP", "PSI_FLOOR", "SCHEMA", "describe_schema", "histogram_counts",
           "label_counts", "psi", "psi_status"]

SCHEMA, LABEL, HISTOGRAM, OVERLAP = "checks.schema", "checks.label", "checks.histogram", "checks.overlap"
KINDS: tuple[str, ...] = (SCHEMA, LABEL, HISTOGRAM, OVERLAP)
PSI_FLOOR = 1e-4  # an empty bin counts as this proportion (PSI is infinite otherwise); as in monitoring


def describe_schema(party: str, schema: Mapping[str, Any] | None, data: Any) -> dict[str, Any]:
    """What a party says about its table: its declared schema (public), else the column names its table has.

    Only declared, public metadata: names, kinds, bounds, categories and missing markers; never a value read
    from a row (so the reply is the same for any rows under that schema)."""
    label = getattr(data, "y", None) is not None
    if schema is None:
        names: list[dict[str, Any]] = [
            {"name": str(n), "kind": "float", "bounds": None, "categories": None, "missing": None}
            for n in getattr(data, "feature_names", [])]
        return {"id": None, "label": "label" if label else None, "columns": names, "declared": False}
    default_missing = schema.get("missing")
    columns: list[dict[str, Any]] = []
    for spec in schema.get("features") or ():
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        bounds = spec.get("bounds")
        categories = spec.get("categories")
        missing = spec.get("missing", default_missing)
        columns.append({"name": str(spec["name"]), "kind": str(spec.get("kind", "float")),
                        "bounds": [float(b) for b in bounds] if bounds is not None else None,
                        "categories": [str(c) for c in categories] if categories is not None else None,
                        "missing": sorted(str(m) for m in missing) if missing is not None else None})
    return {"id": schema.get("id"), "label": schema.get("label") if label else None, "columns": columns,
            "declared": True}


def label_counts(party: str, data: Any) -> np.ndarray:
    """[rows, positives] of the party's labelled rows (exact)."""
    y = getattr(data, "y", None)
    if y is None:
        raise ValueError(f"party {party!r} holds no label column: checks.label goes to label holders only")
    y = np.asarray(y)
    return np.array([float(len(y)), float(np.sum(y == 1))])


def histogram_counts(party: str, data: Any, columns: Sequence[Sequence[Any]], bins: int) -> np.ndarray:
    """Counts, shape (len(columns), bins + 1): equal-width bins over [low, high] (clamped), then missing cells.

    ``columns``: [name, low, high] per column; the bounds are public (the schema's or the job's), never the rows'.
    Each row adds exactly one count per column, which is the sensitivity the DP mod relies on."""
    if not 2 <= int(bins) <= 100:
        raise ValueError(f"party {party!r}: checks.histogram asks for {bins} bins (2 to 100)")
    names = list(getattr(data, "feature_names", []))
    out = np.zeros((len(columns), int(bins) + 1))
    for i, entry in enumerate(columns):
        name, low, high = str(entry[0]), float(entry[1]), float(entry[2])
        if name not in names:
            raise ValueError(f"party {party!r}: checks.histogram asks for column {name!r}, which its table does "
                             f"not have (columns: {names})")
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"party {party!r}: column {name!r} has bad public bounds [{low}, {high}]")
        values = np.asarray(data.X[:, names.index(name)], dtype=float)
        finite = np.isfinite(values)
        position = np.floor((np.clip(values[finite], low, high) - low) / (high - low) * bins).astype(np.int64)
        out[i, :bins] = np.bincount(np.minimum(position, bins - 1), minlength=bins)
        out[i, bins] = float((~finite).sum())
    return out


def psi(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two binned counts: sum (c - r) ln(c / r) over proportions (negative noised
    counts count as zero; an empty bin as `PSI_FLOOR`)."""
    r, c = np.maximum(np.asarray(reference, float), 0.0), np.maximum(np.asarray(current, float), 0.0)
    if r.sum() <= 0 or c.sum() <= 0:
        return math.nan
    r, c = np.maximum(r / r.sum(), PSI_FLOOR), np.maximum(c / c.sum(), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_status(value: float, watch: float = 0.1, alert: float = 0.25) -> str:
    """The usual credit-risk reading: below `watch` stable, up to `alert` watch, above it investigate."""
    if not math.isfinite(value):
        return "not measurable"
    return "stable" if value < watch else "watch" if value <= alert else "investigate"
