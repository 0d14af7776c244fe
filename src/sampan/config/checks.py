"""[checks]: the cross-party checks before training (`run.workflow = "checks"`, `sampan.checks`).

Thresholds are public settings; under [checks.dp] every value computed from rows leaves its party only through
a Laplace mechanism charged to the run's ledger (label counts, histograms, the id-overlap count).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sampan.config.base import Strict

__all__ = ["ChecksDPSection", "ChecksSection"]


class ChecksDPSection(Strict):
    """Pure-epsilon Laplace releases per party; each is charged write-ahead to the run's ledger."""

    label_epsilon: float = Field(default=0.5, gt=0, description="the label holder's [rows, positives] counts")
    histogram_epsilon: float = Field(default=1.0, gt=0, description="all checked columns' histograms, one release")
    overlap_epsilon: float = Field(default=0.5, gt=0, description="the PSI intersection count (vertical runs)")
    budget_epsilon: float | None = Field(default=None, gt=0, description="each party's budget for this job; "
                                         "default: the sum of the epsilons above")
    delta: float = Field(default=1e-6, gt=0, lt=1, description="the ledger's delta (Laplace releases spend none)")


class ChecksSection(Strict):
    bins: int = Field(default=10, ge=2, le=100, description="equal-width bins over each column's public bounds")
    columns: list[str] | None = Field(default=None, description="feature columns to compare; default every "
                                      "feature with public bounds")
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict, description="public bounds for columns "
                                                   "whose [schema] gives none")
    psi_watch: float = Field(default=0.1, gt=0, description="PSI above this: a 'watch' warning")
    psi_alert: float = Field(default=0.25, gt=0, description="PSI above this: an 'investigate' warning")
    min_positive_rate: float = Field(default=0.01, ge=0, le=1)
    max_positive_rate: float = Field(default=0.5, ge=0, le=1)
    min_overlap: float = Field(default=0.5, ge=0, le=1, description="vertical: warn when the id overlap is below "
                               "this fraction of the label holder's ids")
    schema_mismatch: Literal["error", "warning"] = Field(default="error", description="how a schema disagreement "
                                                          "between parties is graded")
    dp: ChecksDPSection | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ChecksSection:
        if self.psi_alert < self.psi_watch:
            raise ValueError("checks.psi_alert must be >= checks.psi_watch")
        if self.max_positive_rate < self.min_positive_rate:
            raise ValueError("checks.max_positive_rate must be >= checks.min_positive_rate")
        for name, (low, high) in self.bounds.items():
            if not low < high:
                raise ValueError(f"checks.bounds.{name}: low {low} must be below high {high}")
        return self
