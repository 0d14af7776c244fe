"""Privacy audits of trained models: membership inference (LiRA, loss threshold) with empirical ε bounds.

May import: numpy/scipy, sampan.metrics, sampan.models. Never transports: callers pass train/score functions.
"""

from sampan.audit.lira import (
    ShadowScores,
    lira_attack,
    lira_from_shadows,
    logit_confidence,
    train_shadow_models,
    true_label_confidence,
)
from sampan.audit.membership import (
    AttackResult,
    ScoreFn,
    TrainFn,
    empirical_epsilon,
    loss_threshold_attack,
    roc_from_scores,
)
from sampan.audit.report import audit_membership

__all__ = [
    "AttackResult",
    "ScoreFn",
    "ShadowScores",
    "TrainFn",
    "audit_membership",
    "empirical_epsilon",
    "lira_attack",
    "lira_from_shadows",
    "logit_confidence",
    "loss_threshold_attack",
    "roc_from_scores",
    "train_shadow_models",
    "true_label_confidence",
]
