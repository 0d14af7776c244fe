"""How metric names and values read in a report: one place, so cards and tables agree."""

from __future__ import annotations

import math
from typing import Any

# key -> (display name, True if higher is better / False if lower / None if neither)
METRIC_INFO: dict[str, tuple[str, bool | None]] = {
    "auc": ("AUC", True),
    "ks": ("KS", True),
    "pr_auc": ("PR-AUC", True),
    "accuracy": ("Accuracy", True),
    "f1": ("F1", True),
    "brier": ("Brier score", False),
    "log_loss": ("Log loss", False),
    "loss": ("Loss", False),
    "ece": ("ECE", False),
    "n": ("Examples", None),
    "positive_rate": ("Positive rate", None),
}
_ORDER = list(METRIC_INFO)


def metric_name(key: str) -> str:
    """Display name; unknown keys read as 'Train loss' from 'train_loss'."""
    if key in METRIC_INFO:
        return METRIC_INFO[key][0]
    return key.replace("_", " ").strip().capitalize() or key


def higher_is_better(key: str) -> bool | None:
    return METRIC_INFO.get(key, ("", None))[1]


def ordered_keys(keys: Any) -> list[str]:
    """Known metrics in a fixed, meaningful order; the rest alphabetically; counts last."""
    unique = list(dict.fromkeys(str(k) for k in keys))
    tail = [k for k in ("n", "positive_rate") if k in unique]
    known = [k for k in _ORDER if k in unique and k not in tail]
    other = sorted(k for k in unique if k not in METRIC_INFO)
    return known + other + tail


def _is_count(key: str) -> bool:
    return key == "n" or key.startswith("n_") or key.endswith("_count") or key == "count"


def fmt_metric(key: str, value: Any) -> str:
    """Counts with thousands separators, rates as percentages, scores to four decimals."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    value = float(value)
    if not math.isfinite(value):
        return "—"
    if _is_count(key) and value.is_integer():
        return f"{int(value):,}"
    if key.endswith("rate"):
        return f"{100 * value:.2f}%"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}"


def fmt_seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)} min {seconds:.0f} s"
