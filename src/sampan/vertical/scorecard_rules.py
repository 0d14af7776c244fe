"""The rules a validator checks on a scorecard part: WOE monotone in bin order, points never rising with risk.

Each party applies them to its own part, alone, when its scorecard's secure LR finishes: the WOE tables are its
own (a partner received them from the bank; monotone binning happened at the bank from the counts already
released), and the weights are its own final weights. Nothing new leaves a party: the flags travel in the
party's scorecard rows (`vertical.summary`), whose points already show the sign of each weight.

Sign rule: a higher WOE is a lower risk, so a feature's weight on its WOE column (logit of default) must be
<= 0; then its points rise with WOE and fall with risk. With ``monotone = true`` a wrong-signed weight is set to
0 (the feature keeps constant points: the usual "drop the wrong-signed feature", without a second secure-LR
instance, which the parties cap); with ``monotone = false`` it is kept and flagged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.models.scorecard import WoeTable, is_monotone

__all__ = ["apply_scorecard_rules", "feature_flags"]


def feature_flags(table: WoeTable, weight: float, *, zeroed: bool = False) -> dict[str, Any]:
    """One feature's validator flags: WOE monotone in bin order, points never rising with risk."""
    monotone = is_monotone(table.woe)
    follows = bool(weight <= 0.0)
    problems = []
    if not monotone:
        problems.append("WOE is not monotone in the bin order")
    if not follows:
        problems.append("riskier bins get more points (weight on WOE > 0)")
    if zeroed:
        problems.append("weight had the wrong sign and was set to 0 (constant points)")
    return {"woe_monotone": monotone, "points_follow_risk": follows, "zeroed": zeroed,
            "flag": "; ".join(problems)}


def apply_scorecard_rules(weights: np.ndarray, scale: np.ndarray, tables: list[WoeTable], *, monotone: bool
                          ) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """(weights after the sign rule, flags per feature). `scale` is the party's standardisation (positive), so
    the sign of a weight on a standardised WOE column is the sign on the WOE itself."""
    w = np.asarray(weights, dtype=np.float64).copy()
    flags: dict[str, dict[str, Any]] = {}
    for j, table in enumerate(tables):
        beta = float(w[j] / scale[j]) if j < len(w) else 0.0
        zeroed = bool(monotone and beta > 0.0)
        if zeroed:
            w[j] = 0.0
            beta = 0.0
        flags[table.feature] = feature_flags(table, beta, zeroed=zeroed)
    return w, flags
