"""[vertical], [scoring] and [synthesis]: the sections of the other workflows, one dialect for run and submit.

Defaults are those `sampan run` always had (`VerticalLRConfig`'s: learning_rate 0.2, patience 5); the
submit dialect's other defaults (learning_rate 0.5, patience 3) are gone with it. Vertical noise releases
live here, next to the model they protect: `[vertical.scorecard] dp_epsilon` (WOE counts) and
`[vertical.gbdt_privacy] hist_noise` (partner histograms); `[privacy]` is the horizontal run's budget.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from sampan.config.base import Strict
from sampan.config.sections import GBDTSection

if TYPE_CHECKING:
    from sampan.models.gbdt import GBDTParams
    from sampan.vertical.training import VerticalLRConfig

__all__ = ["VerticalLRSection", "ScorecardSection", "VerticalGBDTSection", "GBDTPrivacySection", "VerticalSection",
           "ScoringSection", "SynthesisSection"]


class VerticalLRSection(Strict):
    """[vertical.lr]: the fields of `sampan.vertical.training.VerticalLRConfig`, with its defaults."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(
        default=512, ge=64,
        description="at least max(4 x widest party's columns, 64): fewer rows let "
        "a party solve its gradient for the labels")
    learning_rate: float = Field(default=0.2, gt=0)
    l2: float = Field(default=1e-4, ge=0)
    patience: int = Field(default=5, ge=1)
    min_delta: float = Field(default=1e-5, ge=0)
    logit_clip: float | None = Field(default=None, gt=0, description="per-party partial-logit bound; default: the "
                                     "sigmoid's fit range / parties")
    shared_weights: bool = Field(
        default=True,
        description="weights kept as additive shares: no party sees its plaintext "
        "gradient (false: it does, and over many epochs can solve for the labels)")
    allow_gradient_label_leakage: bool = Field(
        default=False,
        description="plaintext-gradient mode only: accept epochs x "
        "widest party's columns >= batch_size (labels leak)")

    def to_lr_config(self) -> VerticalLRConfig:
        from sampan.vertical.training import VerticalLRConfig  # lazily: vertical sits below config

        return VerticalLRConfig(**{name: getattr(self, name) for name in VerticalLRSection.model_fields})


class ScorecardSection(Strict):
    dp_epsilon: float | None = Field(default=None, gt=0, description="DP on the WOE counts (epsilon of that release)")
    monotone: bool = Field(default=True, description="merge WOE bins until monotone and zero wrong-signed weights "
                           "(points never rise with risk); false: keep them and flag each violating feature")


class VerticalGBDTSection(GBDTSection):
    """[vertical.gbdt]: the GBDT fields plus `pos_weight`, the defaults' class weight (the bank's own labels; the
    partners' charged histogram sensitivity is unchanged, `sampan.models.gbdt.weight_scale`)."""

    pos_weight: float = Field(default=1.0, gt=0, le=1e4, description="weight of a default (positive) row in the "
                              "logloss; e.g. non-defaults / defaults for balanced classes")

    def gbdt_params(self) -> GBDTParams:
        return dataclasses.replace(super().gbdt_params(), pos_weight=self.pos_weight)


class GBDTPrivacySection(Strict):
    hist_noise: float = Field(default=0.0, ge=0, description="Gaussian sigma on partner histograms (gradient units)")


class VerticalSection(Strict):
    """[vertical]: who holds the label, which models, how the aligned rows are split, whom to score."""

    label_holder: str = Field(min_length=1)
    id: str | None = Field(default=None, description="the shared id column (PSI key); default: [schema] id (a deployed "
                           "party's own schema in its party.toml)")
    models: tuple[Literal["lr", "scorecard", "gbdt"], ...] = ("lr",)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    val_fraction: float = Field(default=0.15, gt=0, lt=1)
    test_ids: str | None = Field(default=None, description="the label holder's explicit test customers: a CSV of ids "
                                 "(one per line, optional header) read at the bank; default: a hash of (seed, id) "
                                 "keyed with the bank's secret split key")
    applicants: tuple[str, ...] = Field(
        default=(),
        description="ids of new applications to score jointly after training")
    psi_backend: Literal["ecdh", "rr22"] = Field(
        default="ecdh", description="PSI for the alignment: 'ecdh' (default, any number of partners) or 'rr22' "
        "(opt-in, ~10x faster: SecretFlow spu in its own venv, tools/install_spu.sh; semi-honest; one RR22 run per "
        "partner)")
    lr: VerticalLRSection = Field(default_factory=VerticalLRSection)
    gbdt: VerticalGBDTSection = Field(default_factory=VerticalGBDTSection)
    scorecard: ScorecardSection = Field(default_factory=ScorecardSection)
    gbdt_privacy: GBDTPrivacySection = Field(default_factory=GBDTPrivacySection)

    @field_validator("models")
    @classmethod
    def _lr_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "lr" not in value:
            raise ValueError("models must include 'lr' (the secure LR is the run's main model)")
        if len(set(value)) != len(value):
            raise ValueError(f"models listed twice: {list(value)}")
        return value

    @model_validator(mode="after")
    def _fractions(self) -> VerticalSection:
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError("test_fraction + val_fraction must leave training rows (sum < 1)")
        return self

    def to_lr_config(self) -> VerticalLRConfig:
        return self.lr.to_lr_config()

    def gbdt_params(self) -> GBDTParams:
        return self.gbdt.gbdt_params()

    # the earlier submit dialect's flat names ([vertical] epochs = ...), still read by deployed code
    epochs = property(lambda self: self.lr.epochs)
    batch_size = property(lambda self: self.lr.batch_size)
    learning_rate = property(lambda self: self.lr.learning_rate)
    l2 = property(lambda self: self.lr.l2)
    patience = property(lambda self: self.lr.patience)
    min_delta = property(lambda self: self.lr.min_delta)


class ScoringSection(Strict):
    """[scoring]: score new applications with a trained model, each party contributing only its share."""

    model: str = Field(min_length=1, description="the trained run id or registered model name")
    applicants: tuple[str, ...] = Field(default=(), description="ids of the applications to score")
    applicants_file: str | None = Field(
        default=None, min_length=1, description="instead of applicants: a CSV at the bank (a path on the bank's "
        "machine) whose id column the bank reads itself, so the coordinator never holds the ids")
    id_column: str | None = Field(default=None, min_length=1, description="applicants_file's id column (default: "
                                  "its first column)")
    kind: Literal["lr", "scorecard", "gbdt"] = Field(
        default="lr", description="which of the trained run's models scores (as `sampan score --model`)")

    @model_validator(mode="after")
    def _one_source(self) -> ScoringSection:
        if self.applicants and self.applicants_file:  # neither: a serving job's (run_config._check_scoring)
            raise ValueError("give exactly one of scoring.applicants (the ids) and scoring.applicants_file (a CSV at "
                             "the bank)")
        return self


class SynthesisSection(Strict):
    """[synthesis]: a federated DP synthesiser over [schema] (numeric features need public `bounds`)."""

    epsilon: float = Field(gt=0, description="each party's budget for the synthesiser")
    delta: float = Field(default=1e-5, gt=0, lt=1)
    secure_sum: bool = Field(
        default=True,
        description="sum the parties' noisy marginals under secure aggregation, so the "
        "coordinator sees only the consortium's totals")
    n_rows: int | None = Field(default=None, ge=1, description="rows to sample; default: the noisy row count")
    max_bins: int = Field(default=32, ge=2, le=256)
    tree: bool | None = Field(
        default=None,
        description="model (feature, parent) dependences; default: when the signal allows")
    out: str | None = Field(default=None, description="model folder to write; default: <report_dir>/<run>/synth-model")
