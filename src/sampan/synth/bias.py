"""Bias report: how each group is represented, and its label rate, before and after synthesis.

"Before" is what the fitted model implies without any target or constraint (computed from its DP
tables, so it can be shown to anyone) and, for the data owner only, the real table; "after" is the
synthetic table that was produced (with any fixed marginals applied).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.synth.encoders import CategoryGroups
from sampan.synth.model import SynthModel
from sampan.synth.schema import SynthSchema

__all__ = ["bias_report", "group_stats", "model_group_stats"]


def group_stats(table: Mapping[str, np.ndarray], schema: SynthSchema, column: str) -> dict[str, dict[str, float]]:
    """Per category of ``column``: share of rows and (if there is a label) positive-label rate."""
    spec = schema.column(column)
    values = np.asarray(table[column]).astype(str)
    y = None
    if schema.label is not None:
        y = np.asarray(table[schema.label]).astype(str) == schema.positive
    out: dict[str, dict[str, float]] = {}
    for cat in spec.categories or ():
        mask = values == cat
        entry = {"share": float(mask.mean())}
        if y is not None:
            entry["label_rate"] = float(y[mask].mean()) if mask.any() else float("nan")
        out[cat] = entry
    return out


def model_group_stats(model: SynthModel, column: str) -> dict[str, dict[str, float]]:
    """The same statistics implied by the model's own tables (no sampling noise, no records)."""
    schema = model.schema
    if column == schema.label:
        raise ValueError(f"group column '{column}' is the label; give a categorical feature (the label rate is "
                         "reported within each group)")
    if column not in model.encoders:
        raise ValueError(f"group column '{column}' is not in the model's schema ({', '.join(model.features)})")
    encoder = model.encoders[column]
    if not isinstance(encoder, CategoryGroups):
        raise ValueError(f"column '{column}' is numeric; group statistics need a categorical column")
    marg = model.node_marginals()[column]  # (L, bins)
    joint_bins = model.p_label[:, None] * marg  # P(y, bin)
    out: dict[str, dict[str, float]] = {}
    pos = None
    if schema.label is not None:
        pos = (schema.column(schema.label).categories or ()).index(schema.positive)
    for code, cat in enumerate(encoder.spec.categories or ()):
        b = encoder.group_of[code]
        members = np.flatnonzero(encoder.group_of == b)
        w = encoder.weights[members]
        within = (w[members.tolist().index(code)] / w.sum()) if w.sum() > 0 else 1.0 / members.size
        joint = joint_bins[:, b] * within
        entry = {"share": float(joint.sum())}
        if pos is not None:
            entry["label_rate"] = float(joint[pos] / joint.sum()) if joint.sum() > 0 else float("nan")
        out[cat] = entry
    return out


def bias_report(model: SynthModel, synthetic: Mapping[str, np.ndarray], columns: Sequence[str],
                real: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Per group column: model-implied (before), synthetic (after) and, if given, real statistics."""
    report: dict[str, Any] = {}
    for column in columns:
        entry: dict[str, Any] = {
            "before_model": model_group_stats(model, column),
            "after_synthetic": group_stats(synthetic, model.schema, column),
        }
        if real is not None:
            entry["real"] = group_stats(real, model.schema, column)
        report[column] = entry
    return report
