"""Classification metrics for credit models: AUC, PR-AUC, KS, Brier, calibration.

May import: numpy only.
"""

from sampan.metrics.classification import (
    CalibrationCurve,
    binary_metrics,
    brier_score,
    calibration_curve,
    expected_calibration_error,
    ks_statistic,
    log_loss,
    pr_auc,
    roc_auc,
    roc_curve,
)
from sampan.metrics.histogram import ScoreHistogram

__all__ = [
    "CalibrationCurve",
    "ScoreHistogram",
    "binary_metrics",
    "brier_score",
    "calibration_curve",
    "expected_calibration_error",
    "ks_statistic",
    "log_loss",
    "pr_auc",
    "roc_auc",
    "roc_curve",
]
