"""What a run report says, as plain data: filled by the runtime, rendered by `html.py`.

Kept separate from rendering so other outputs (JSON export, the web dashboard) can share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
