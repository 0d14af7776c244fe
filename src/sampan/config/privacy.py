"""[privacy] and [secure_aggregation]: the horizontal run's per-party DP budget, its mechanisms and SecAgg+.

Vertical noise releases (WOE counts, GBDT histograms) are set under [vertical] (see `sampan.config.vertical`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sampan.config.base import Strict

__all__ = ["DP1Section", "DP2Section", "DP3Section", "GBDTDPSection", "PrivacySection", "SecureAggregationSection"]


class DP1Section(Strict):
    """Gaussian noise on each party's preprocessing statistics (count, feature sums, sums of squares)."""

    noise_multiplier: float | Literal["auto"] = Field(
        description="noise std / sensitivity of the normalised statistics; 'auto' picks it from the budget share "
        "and the released row counts (sampan.horizontal.dp1_scaler.auto_dp1_noise)")
    bounds: dict[str, tuple[float, float]] = Field(
        description="public clipping range per feature name; 'sector=*' covers one-hot columns, '*' all others")

    @model_validator(mode="after")
    def _ranges(self) -> DP1Section:
        bad = [k for k, (lo, hi) in self.bounds.items() if not lo < hi]
        if bad:
            raise ValueError(f"privacy.dp1.bounds need low < high; bad: {bad}")
        if self.noise_multiplier != "auto" and not self.noise_multiplier > 0:
            raise ValueError("privacy.dp1.noise_multiplier must be > 0 or 'auto'")
        return self


class DP2Section(Strict):
    """DP-SGD inside each party's local training (record-level DP within that party)."""

    noise_multiplier: float | Literal["auto"] = Field(
        default="auto", description="Gaussian noise std / max_grad_norm; 'auto' spends the budget by the last round")
    max_grad_norm: float = Field(default=1.0, gt=0, description="per-example L2 clipping bound")
    sampling_rate: float | None = Field(default=None, gt=0, le=1, description="Poisson q; default batch_size / rows")
    schedule: list[float] | None = Field(
        default=None, min_length=1, description="noise factors for equal segments of the rounds, fixed before the run, "
        "e.g. [1.2, 1.0, 0.8] (decaying noise)")


class DP3Section(Strict):
    """Clipping and Gaussian noise at the aggregator: record-level DP per round (sensitivity 2·clip, since one
    record can flip a party's clipped update; see `sampan.privacy.dp3`)."""

    noise_multiplier: float | Literal["auto"] = Field(
        default="auto",
        description="record-level noise multiplier of each round's release (the sum's noise std is about "
        "2·z·clip); 'auto' spends the budget by the last round")
    clip: float = Field(default=1.0, gt=0, description="L2 clip of each party's update (start value if adaptive)")
    mode: Literal["central", "distributed"] = "central"
    adaptive: bool = False
    target_quantile: float = Field(default=0.5, gt=0, lt=1)
    clip_learning_rate: float = Field(default=0.2, gt=0)
    count_noise: float | None = Field(default=None, gt=0, description="noise std σ_b on the adaptive-clipping count; "
                                      "default max(parties/20, 3·z); must exceed z")
    schedule: list[float] | None = Field(default=None, min_length=1, description="as privacy.dp2.schedule")


class GBDTDPSection(Strict):
    """Horizontal GBDT under DP (`model.kind = "gbdt"`): each bank's per-node gradient/hessian histograms through a
    Gaussian mechanism at the bank, bin edges from public bounds (never from raw quantiles), no early stopping."""

    noise_multiplier: float | Literal["auto"] = Field(
        default="auto", description="noise std / L2 sensitivity of each histogram release; 'auto' spends the budget "
        "over every release the tree shape allows (n_trees x (max_depth + 1))")
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="public range per feature name for the equal-width bin edges; "
        "'sector=*' covers one-hot columns, '*' all others; default: [schema] bounds, one-hot and bool columns 0/1")
    features_per_tree: int | None = Field(
        default=None, ge=1, description="each tree splits on this many features, drawn from the run seed (public): "
        "each histogram release covers only them (sensitivity sqrt(2k), not sqrt(2d)); default: all")

    @model_validator(mode="after")
    def _ranges(self) -> GBDTDPSection:
        bad = [k for k, (lo, hi) in self.bounds.items() if not lo < hi]
        if bad:
            raise ValueError(f"privacy.gbdt.bounds need low < high; bad: {bad}")
        if self.noise_multiplier != "auto" and not self.noise_multiplier > 0:
            raise ValueError("privacy.gbdt.noise_multiplier must be > 0 or 'auto'")
        return self


class PrivacySection(Strict):
    """Per-party privacy budget and the mechanisms that spend it (one ledger per run)."""

    epsilon: float = Field(gt=0, description="budget per party, record-level")
    delta: float = Field(default=1e-5, gt=0, lt=1)
    accountant: Literal["rdp", "pld"] = "rdp"
    per_party_noise: bool = Field(default=True, description="'auto' DP2 noise calibrated to each party's own budget")
    count_noise_multiplier: float = Field(
        default=20.0, gt=0,
        description="each party's training row count is released once, at setup, through a Gaussian "
        "mechanism with this noise multiplier (sensitivity 1, charged as DP1); weights, DP-SGD sampling rates and "
        "steps use the released count, never the exact one")
    impute_noise_multiplier: float | Literal["auto"] = Field(
        default="auto", description="noise multiplier of each party's imputation statistics (one DP1 release per "
        "run, charged); 'auto': the smallest that costs at most 5% of the budget")
    group_noise_multiplier: float = Field(
        default=4.0, gt=0, le=1000, description="[evaluation] groups under DP: noise std / sensitivity of each bank's "
        "per-group score-bin counts (one Gaussian release per run, sensitivity sqrt(group columns), charged as DP1)")
    dp1: DP1Section | None = None
    dp2: DP2Section | None = None
    dp3: DP3Section | None = None

    gbdt: GBDTDPSection | None = None

    @field_validator("impute_noise_multiplier")
    @classmethod
    def _impute_noise(cls, value: Any) -> Any:
        if value != "auto" and not value > 0:
            raise ValueError("privacy.impute_noise_multiplier must be > 0 or 'auto'")
        return value


class SecureAggregationSection(Strict):
    """SecAgg+ secure aggregation of the parties' updates: the coordinator only ever sees their sum."""

    enabled: bool = True
    threshold: float = Field(
        default=0.6, gt=0.5, le=1,
        description="share of each party's share holders needed to rebuild its masks (t of n on a "
        "complete graph), and the least share of parties whose masked input must arrive; fewer fail the round")
    neighbours: int | Literal["auto", "all"] = Field(
        default="auto",
        description="degree k of the neighbour graph (even); 'all' = complete graph; 'auto' = the least k "
        "that keeps the round failure probability under 1e-4 at expected_dropout")
    expected_dropout: float = Field(
        default=0.1, ge=0, lt=0.5,
        description="per-round dropout rate used to size 'auto' graphs")
    frac_bits: int = Field(default=32, ge=8, le=48, description="fixed-point fraction bits of the masked ring Z_2^64")
    max_abs: float = Field(default=1e4, gt=0, description="every coordinate is clamped to ±max_abs before encoding")
    max_retries: int = Field(
        default=2, ge=0, le=20,
        description="a failed round is retried this often with the survivors")
    min_contributors: int = Field(
        default=3, ge=3,
        description="never aggregate fewer inputs than this (with two, each contributor reads the other's "
        "input from the sum); a round left with fewer fails with a clear error")

    @field_validator("neighbours")
    @classmethod
    def _even(cls, value: Any) -> Any:
        if isinstance(value, int) and (value < 2 or value % 2):
            raise ValueError("secure_aggregation.neighbours must be an even number >= 2, 'auto' or 'all'")
        return value
