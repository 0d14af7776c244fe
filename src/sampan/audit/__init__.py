"""Privacy audits and an attack library: membership inference (LiRA, loss threshold, TPR at a fixed FPR) with
empirical ε bounds, a one-run DP audit with canaries, gradient inversion, secure-aggregation checks, Byzantine
clients and a model-replacement backdoor. The verifier's security tests (sampan.verify) and users call them.

May import: numpy/scipy, sampan.metrics, sampan.models, sampan.errors. Never transports: callers pass
train/score functions and captured payloads.
"""

from sampan.audit.byzantine import (
    AttackImpact,
    add_trigger,
    alie,
    alie_z,
    coordinate_median,
    fedavg,
    measure_attack,
    model_replacement_backdoor,
    norm_clip,
    scaling,
    sign_flip,
)
from sampan.audit.gradient_inversion import (
    DeltaObservation,
    InversionResult,
    invert_lr_gradient,
    probe_fedavg_delta,
    reconstruction_quality,
)
from sampan.audit.intervals import clopper_pearson
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
from sampan.audit.membership_fpr import FixedFprResult, membership_at_fpr
from sampan.audit.one_run_audit import (
    OneRunAuditResult,
    audit_from_scores,
    audit_over_k,
    epsilon_lower_bound,
    one_run_p_value,
    plan_canaries,
)
from sampan.audit.report import audit_membership
from sampan.audit.secure_agg_checks import MaskingResult, SumConsistencyResult, consistent_with_sum, is_masked

__all__ = [
    "add_trigger",
    "alie",
    "alie_z",
    "AttackImpact",
    "AttackResult",
    "audit_from_scores",
    "audit_membership",
    "audit_over_k",
    "clopper_pearson",
    "consistent_with_sum",
    "coordinate_median",
    "DeltaObservation",
    "empirical_epsilon",
    "epsilon_lower_bound",
    "fedavg",
    "FixedFprResult",
    "InversionResult",
    "invert_lr_gradient",
    "is_masked",
    "lira_attack",
    "lira_from_shadows",
    "logit_confidence",
    "loss_threshold_attack",
    "MaskingResult",
    "measure_attack",
    "membership_at_fpr",
    "model_replacement_backdoor",
    "norm_clip",
    "one_run_p_value",
    "OneRunAuditResult",
    "plan_canaries",
    "probe_fedavg_delta",
    "reconstruction_quality",
    "roc_from_scores",
    "scaling",
    "ScoreFn",
    "ShadowScores",
    "sign_flip",
    "SumConsistencyResult",
    "train_shadow_models",
    "TrainFn",
    "true_label_confidence",
]
