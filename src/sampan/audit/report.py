"""One membership-inference audit report: the loss-threshold attack and both LiRA variants, with their caveats.

Why apart: this is what a run's audit step calls (`sampan.runtime.audit_run`); it composes the attacks and
states, next to the numbers, what they do and do not certify.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.audit.lira import (
    _check_mask,
    _check_pool,
    _checked_confidence,
    lira_from_shadows,
    logit_confidence,
    train_shadow_models,
)
from sampan.audit.membership import DEFAULT_FPRS, ScoreFn, TrainFn, loss_threshold_attack

__all__ = ["audit_membership"]


def audit_membership(
    train_fn: TrainFn, score_fn: ScoreFn, X: np.ndarray, y: np.ndarray, *, target_model: Any,
    target_member_mask: np.ndarray, n_shadow: int = 16, seed: int, delta: float = 1e-5,
    claimed_epsilon: float | None = None,
) -> dict[str, Any]:
    """Run the loss-threshold attack and both LiRA variants (one shared set of shadows) and return a
    JSON-able report: {"attacks": [...], "claimed": ..., "notes": [...], "config": {...}}.

    With `claimed_epsilon`, "claimed" lists the attacks whose conservative lower bound exceeds it."""
    X, y = _check_pool(X, y)
    mask = _check_mask(target_member_mask, len(y))
    conf = _checked_confidence(score_fn, target_model, X, y)
    shadows = train_shadow_models(train_fn, score_fn, X, y, n_shadow=n_shadow, seed=seed)
    phi = logit_confidence(conf)
    attacks = [
        loss_threshold_attack(conf[mask], conf[~mask], delta=delta),
        lira_from_shadows(shadows, phi, mask, online=False, delta=delta),
        lira_from_shadows(shadows, phi, mask, online=True, delta=delta),
    ]
    n_pos, n_neg = int(mask.sum()), int((~mask).sum())
    notes = [
        "Thresholds are chosen on the audited scores: TPR at low FPR and the epsilon interval are "
        "optimistic for the attacker (post-selection); the 95% level is nominal.",
        "An epsilon lower bound above the claim is evidence of a leak or an accounting error; one below "
        "it certifies nothing.",
        "The epsilon bound treats rows as independent trials: sound when target membership was drawn by "
        "independent fair coin flips over the pool (one-run auditing), heuristic otherwise.",
    ]
    unresolved = [f for f in DEFAULT_FPRS if f * n_neg < 1]
    if unresolved:
        notes.append(f"With {n_neg} non-members, FPR below {1 / n_neg:.2g} cannot be resolved: TPR at FPR "
                     f"{', '.join(f'{f:g}' for f in unresolved)} is the TPR at zero false positives.")
    share = n_pos / len(y)
    if not 0.4 <= share <= 0.6:
        notes.append(f"Target members are {share:.0%} of the pool; LiRA's shadows assume about half.")
    claimed = None
    if claimed_epsilon is not None:
        exceeded = [a.name for a in attacks if a.epsilon_lower_bound_ci95[0] > claimed_epsilon]
        claimed = {"epsilon": float(claimed_epsilon), "delta": delta, "exceeded_by": exceeded,
                   "violated": bool(exceeded)}
    return {
        "attacks": [a.to_dict() for a in attacks],
        "claimed": claimed,
        "notes": notes,
        "config": {"n_shadow": n_shadow, "seed": seed, "delta": delta, "n_members": n_pos,
                   "n_nonmembers": n_neg, "confidence": 0.95},
    }
