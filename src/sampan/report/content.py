"""What a run report says, as plain data: filled by the runtime, rendered by `html.py`.

Kept separate from rendering so other outputs (JSON export, the web dashboard) can share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class CalibrationLike(Protocol):
    """Anything shaped like `sampan.metrics.CalibrationCurve` (one entry per non-empty bin).

    Iterable, not Sequence: the curve holds numpy arrays, and the renderer only lists them.
    """

    @property
    def mean_predicted(self) -> Iterable[float]: ...
    @property
    def fraction_positive(self) -> Iterable[float]: ...
    @property
    def counts(self) -> Iterable[float]: ...


@dataclass
class PartySummary:
    """One party's data sizes; positive_rate is the label rate on its training rows, if shared."""

    name: str
    n_train: int
    n_test: int
    positive_rate: float | None = None


@dataclass
class RoundRecord:
    """Metrics after one training round: the aggregated model and each party's local view."""

    round: int
    global_metrics: dict[str, float | None] = field(default_factory=dict)  # None: not measured that round
    party_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float | None = None


@dataclass
class ReportSection:
    """Extra content (e.g. the privacy receipt). `html` is inserted as-is: the caller escapes it."""

    title: str
    html: str


@dataclass
class ModelCurves:
    """One trained model's curves in a report that compares several (vertical: LR, scorecard, GBDT)."""

    name: str
    auc: float | None = None
    roc: tuple[Sequence[float], Sequence[float]] | None = None
    calibration: CalibrationLike | None = None
    progress: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # series -> (step, value)
    progress_axes: tuple[str, str] = ("Epoch", "Validation score")


@dataclass
class RunReport:
    """Everything one run report shows. Only run_id and title are required."""

    run_id: str
    title: str
    status: str = "completed"
    created_at: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    parties: list[PartySummary] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    roc: tuple[Sequence[float], Sequence[float]] | None = None
    calibration: CalibrationLike | None = None
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sections: list[ReportSection] = field(default_factory=list)
    # several models, best first: their curves replace the single-model ROC/calibration/progress charts
    models: list[ModelCurves] = field(default_factory=list)
    primary_name: str = "This run"  # the Results table's first column


def importance_section(model: str, importance: Mapping[str, float], note: str = "", top: int = 20) -> ReportSection:
    """Gain feature importance of a tree model: each feature's share of the total split gain, largest first.

    Why gain (not split counts): it weighs each split by how much it reduced the loss, as LightGBM's
    importance_type="gain" does, so numbers are comparable with a pooled LightGBM's."""
    from html import escape

    rows = "".join(f"<tr><td>{escape(str(name))}</td><td>{100.0 * float(share):.1f}%</td></tr>"
                   for name, share in sorted(importance.items(), key=lambda kv: -float(kv[1]))[:top])
    body = (f"<table><thead><tr><th>feature</th><th>share of gain</th></tr></thead><tbody>{rows}</tbody></table>"
            if rows else "<p>The model made no split: no feature importance.</p>")
    return ReportSection(f"Feature importance (gain): {model}", (f"<p>{escape(note)}</p>" if note else "") + body)
