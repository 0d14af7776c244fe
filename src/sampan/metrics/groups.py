"""Fairness by group from pooled per-group score histograms: AUC, approval rate and bad rate per group.

Why histograms: each party bins its own holdout scores per declared group level, so only counts leave it
(`sampan.horizontal.group_evaluation`); the coordinator adds them and reads the metrics here. A group
whose pooled count is under ``min_count`` is suppressed (its figures are withheld, with a note), and the
disparity summary is the max/min ratio of approval rates over the groups shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sampan.metrics.histogram import ScoreHistogram
from sampan.metrics.thresholds import confusion_at

__all__ = ["GroupRow", "disparity", "group_table"]


@dataclass(frozen=True)
class GroupRow:
    """One group level's metrics at the chosen threshold (None where undefined or suppressed)."""

    column: str
    level: str
    count: int | None
    bad_rate: float | None
    auc: float | None
    approval_rate: float | None
    suppressed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(column: str, level: str, histogram: ScoreHistogram, threshold: float, min_count: int) -> GroupRow:
    n = histogram.n
    if n < min_count:
        return GroupRow(column, level, None, None, None, None, True)
    both = 0 < int(histogram.pos.sum()) < n
    return GroupRow(column, level, n, histogram.positive_rate, histogram.auc() if both else None,
                    confusion_at(histogram, threshold).approval_rate, False)


def group_table(histograms: Mapping[str, Sequence[tuple[str, ScoreHistogram]]], threshold: float,
                min_count: int) -> list[GroupRow]:
    """Per column, per level (in declared order): metrics of the pooled histogram, or a suppressed row."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    return [_row(column, level, histogram, threshold, min_count)
            for column, levels in histograms.items() for level, histogram in levels]


def disparity(rows: Sequence[GroupRow]) -> dict[str, dict[str, Any]]:
    """Per column: the max/min ratio of approval rates over unsuppressed groups (None if under two groups,
    or a group approves nobody) and the groups at each end."""
    out: dict[str, dict[str, Any]] = {}
    for column in dict.fromkeys(row.column for row in rows):
        shown = [r for r in rows if r.column == column and r.approval_rate is not None]
        if len(shown) < 2:
            out[column] = {"ratio": None, "highest": None, "lowest": None, "groups": len(shown)}
            continue
        high = max(shown, key=lambda r: r.approval_rate or 0.0)
        low = min(shown, key=lambda r: r.approval_rate or 0.0)
        assert high.approval_rate is not None and low.approval_rate is not None
        ratio = high.approval_rate / low.approval_rate if low.approval_rate > 0 else None
        out[column] = {"ratio": ratio, "highest": high.level, "lowest": low.level, "groups": len(shown)}
    return out
