"""The decision a horizontal run hands to scoring: class weights in, threshold and credit tables out.

Shared by the horizontal workflows (training, evaluation). No protocol here and no new release: the class
weights come from the pooled positive rate the parties already send in `describe` (not sent under DP, where
only explicit weights are accepted), and the threshold, confusion matrix and score-band table are read off
the pooled validation histogram the evaluation already releases (`sampan.metrics.thresholds`,
`sampan.metrics.tables`). The group release is `sampan.horizontal.group_evaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sampan.metrics import ScoreHistogram
from sampan.metrics.tables import score_band_table
from sampan.metrics.thresholds import choose_threshold
from sampan.models.class_weights import resolve_class_weight

__all__ = ["class_weights", "decision_info", "decision_meta"]


def class_weights(config: Any, parties: Mapping[str, Mapping[str, Any]] | None) -> tuple[float, float] | None:
    """(w0, w1) from `[training]`, resolved against the pooled training positive rate of `describe`."""
    training = config.training
    if training.class_weight is None and training.target_positive_rate is None:
        return None
    rate = None
    if parties:
        rows = sum(int(p.get("n_train") or 0) for p in parties.values())
        known = [p for p in parties.values() if p.get("positive_rate") is not None]
        if rows and len(known) == len(parties):
            rate = sum(float(p["positive_rate"]) * int(p["n_train"]) for p in known) / rows
    return resolve_class_weight(training.class_weight, training.target_positive_rate, rate)


def decision_info(config: Any, histogram: ScoreHistogram | None) -> dict[str, Any]:
    """The run info's ``decision`` (threshold, rule, confusion matrix, precision/recall/F1) and ``score_bands``;
    empty when the validation rows hold one label only."""
    if histogram is None or histogram.n == 0 or not 0 < histogram.positive_rate < 1:
        return {}
    section = getattr(config, "evaluation", None)
    rule = getattr(section, "threshold_rule", None) or "max_ks"
    approval = getattr(section, "approval_rate", None)
    cost = getattr(section, "cost_fn_fp", None)
    choice = choose_threshold(histogram, rule, approval_rate=0.7 if approval is None else approval,
                              cost_fn_fp=5.0 if cost is None else cost)
    return {"decision": {**choice.to_dict(), "bins": histogram.n_bins, "approve_if": "pd < threshold"},
            "score_bands": [band.to_dict() for band in score_band_table(histogram)]}


def decision_meta(info: Mapping[str, Any]) -> dict[str, Any]:
    """What the registered model's metadata carries so scoring decides alike: ``threshold`` and ``decision``."""
    decision = info.get("decision")
    if not decision:
        return {}
    return {"threshold": decision["threshold"],
            "decision": {k: decision[k] for k in ("rule", "parameter", "threshold", "approve_if")}}
