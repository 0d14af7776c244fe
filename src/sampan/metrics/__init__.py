"""Classification metrics for credit models: AUC, PR-AUC, KS, Brier, calibration.

May import: numpy only.
"""
