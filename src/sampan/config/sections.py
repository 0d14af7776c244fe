"""Sections every workflow reads: [run], [model], [training], [strategy], [data], [[parties]], [source].

The table schema (`[schema]`) is `sampan.data.schema.TableSchema`, the one schema class; `SchemaSection`
and `ColumnSection` are its earlier names here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from sampan.config.base import Strict
from sampan.data.schema import ColumnSpec, TableSchema
from sampan.metrics.histogram import DEFAULT_BINS, DP_BINS, MAX_BINS

if TYPE_CHECKING:
    from sampan.models.gbdt import GBDTParams

__all__ = ["WORKFLOWS", "Workflow", "RunSection", "GBDTSection", "ModelSection", "TrainingSection",
           "StrategySection", "DataSection", "PartySection", "SourceSection", "SchemaSection", "ColumnSection",
           "EvaluationSection"]

SchemaSection = TableSchema     # earlier name of [schema]'s class: the same object
ColumnSection = ColumnSpec      # earlier name of a [schema] feature's class: the same object

# "serving": the long-lived vertical scoring session behind a deployed `sampan serve` (sampan.serve.deployed)
# "checks": cross-party checks before training (sampan.checks)
Workflow = Literal["horizontal", "vertical", "scoring", "evaluation", "synthesis", "serving", "checks"]
WORKFLOWS: tuple[str, ...] = ("horizontal", "vertical", "scoring", "evaluation", "synthesis", "serving", "checks")


class RunSection(Strict):
    name: str = "sampan-run"
    workflow: Workflow | None = Field(
        default=None, description="which workflow runs; default: 'vertical' if [vertical] is present, 'synthesis' if "
        "[synthesis] is, 'scoring' if [scoring] is, 'evaluation' if [evaluation] is, else 'horizontal' (filled in "
        "when the config is read)")
    rounds: int = Field(default=20, ge=1, le=100_000)
    seed: int | None = Field(
        default=None, ge=0, lt=2**62,
        description="fixes partitions, init and shuffling; drawn at random if absent")
    store: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the run store; default sqlite:///sampan-runs/sampan.db")
    report_dir: str = "sampan-reports"
    eval_every: int = Field(default=1, ge=1)
    fraction_fit: float = Field(default=1.0, gt=0, le=1)
    min_parties: int = Field(default=1, ge=1)
    workers: int = Field(default=1, ge=1, le=256, description="simulation only: processes that host the parties")


class GBDTSection(Strict):
    """Gradient-boosted trees: the fields of `sampan.models.gbdt.GBDTParams`, with its defaults and bounds."""

    n_trees: int = Field(default=100, ge=1)
    max_depth: int = Field(default=4, ge=1)
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    n_bins: int = Field(default=32, ge=2, le=256)
    l2: float = Field(default=1.0, ge=0)
    min_child_weight: float = Field(default=1.0, ge=0)
    min_split_gain: float = Field(default=0.0, ge=0)
    early_stopping_rounds: int = Field(default=10, ge=1)

    def gbdt_params(self) -> GBDTParams:
        from sampan.models.gbdt import GBDTParams  # lazily: keeps `import sampan.config` light

        return GBDTParams(**{name: getattr(self, name) for name in GBDTSection.model_fields})


_GBDT_FIELDS = frozenset(GBDTSection.model_fields)


class ModelSection(GBDTSection):
    """[model] of horizontal and evaluation runs: kind, MLP `hidden`, and the GBDT fields for kind 'gbdt'."""

    kind: Literal["logistic", "mlp", "gbdt"] = "logistic"
    hidden: list[int] = Field(default_factory=lambda: [32], description="mlp only: hidden layer widths")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ModelSection:
        set_here = set(self.model_fields_set)
        stray = sorted(set_here & _GBDT_FIELDS) if self.kind != "gbdt" else []
        if stray:
            raise ValueError(f"model.{stray[0]} applies to kind = 'gbdt' only (kind is {self.kind!r})")
        return self

    @model_serializer(mode="wrap")
    def _only_fields_of_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Stored configs hold the GBDT fields only for kind 'gbdt' (so they parse back)."""
        out = handler(self)
        return out if self.kind == "gbdt" else {k: v for k, v in out.items() if k not in _GBDT_FIELDS}


class TrainingSection(Strict):
    local_epochs: int = Field(default=1, ge=1)
    local_steps: int | None = Field(default=None, ge=1, description="minibatches per round; overrides local_epochs")
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    l2: float = Field(default=1e-4, ge=0)
    class_weight: Literal["balanced"] | dict[str, float] | None = Field(
        default=None, description="imbalanced labels: 'balanced' or {0 = 1.0, 1 = 5.0} (explicit weights only "
        "under [privacy]); logistic and mlp")
    target_positive_rate: float | None = Field(
        default=None, gt=0, lt=1, description="reweight classes so the training positive rate looks like this "
        "(not under [privacy])")

    @model_validator(mode="after")
    def _one_weighting(self) -> TrainingSection:
        weights = self.class_weight
        if weights is not None and self.target_positive_rate is not None:
            raise ValueError("training: give class_weight or target_positive_rate, not both")
        if isinstance(weights, dict):
            bad = sorted(set(weights) - {"0", "1"})
            if bad or not weights or not all(0 < w <= 1e4 for w in weights.values()):
                raise ValueError(f"training.class_weight: keys 0 and 1 with weights in (0, 1e4], got {weights}")
        return self


class StrategySection(Strict):
    name: Literal["fedavg", "fedprox", "fedadam"] = "fedavg"
    server_learning_rate: float | None = Field(default=None, gt=0)
    server_momentum: float = Field(default=0.0, ge=0, lt=1, description="FedAvgM velocity (fedavg/fedprox only)")
    proximal_mu: float = Field(default=0.01, gt=0)
    aggregator: Literal["mean", "median", "trimmed_mean", "krum"] = "mean"
    trim_fraction: float = Field(default=0.1, ge=0, lt=0.5)
    byzantine: int = Field(default=1, ge=0)
    multi_krum: int = Field(default=1, ge=1)


class DataSection(Strict):
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    standardize: bool = True
    test_path: str | None = Field(default=None, min_length=1, description="own-data horizontal runs (simulation): "
                                  "each party's explicit held-out file, '{party}' replaced by its name (e.g. "
                                  "'held/{party}.csv'); a party's own [[parties]] test_path wins")
    date_column: str | None = Field(default=None, min_length=1, description="own-data horizontal runs: a date column "
                                    "of each party's file (not a feature); each party holds out its newest "
                                    "test_fraction of rows (out-of-time) instead of a random split")
    date_format: str | None = Field(default=None, min_length=2, description="with date_column: the dates' strptime "
                                    "format (e.g. '%d/%m/%Y'); without it only numbers and ISO dates (YYYY-MM-DD, "
                                    "YYYY-MM, YYYY-MM-DDTHH:MM[:SS]) are accepted")


class PartySection(Strict):
    """One party. `path`/`format` say where its table is in a simulation; a config submitted to a
    coordinator leaves them out (each party's agent binds its data in its own party.toml). `features`:
    in a vertical run, the [schema] features this party holds."""

    name: str = Field(min_length=1, max_length=100)
    path: str | None = Field(default=None, description="simulation only: the party's CSV/Parquet file")
    test_path: str | None = Field(default=None, description="simulation only: the party's explicit held-out file "
                                  "(same schema); its `path` is then all training rows")
    format: Literal["csv", "parquet"] | None = Field(
        default=None,
        description="simulation only; default: from the suffix")
    features: tuple[str, ...] | None = Field(default=None, min_length=1, description="vertical: this party's columns")


class SourceSection(Strict):
    """A simulated federation: the built-in consortium or a public dataset split across parties."""

    kind: Literal["consortium", "taiwan", "german", "south_german"]
    path: str | None = Field(default=None, description="dataset file or folder (public datasets only)")
    n_parties: int = Field(default=5, ge=1, le=100_000)
    partition: Literal["iid", "dirichlet", "quantity"] = "iid"
    alpha: float = Field(default=0.5, gt=0)
    n_smes: int = Field(default=12_000, ge=300)


class EvaluationSection(Strict):
    """[evaluation]: evaluate a model from the coordinator's registry on every party's holdout (no training).

    The workflow resolves the name at run time (`RunRecorder.registered_model`), so a stored config names
    the model, never its arrays. ``bins``: the parties' rules apply (at most `MAX_BINS`; exactly `DP_BINS` under
    [privacy]; exactly the default under secure aggregation), and a party refuses any other."""

    model: str | None = Field(default=None, min_length=1, description="the registered model's name in the "
                              "coordinator's registry (an evaluation run); without it, [evaluation] sets the decision "
                              "threshold and the groups of a training run")
    version: int | None = Field(default=None, ge=1, description="registry version; default: the latest")
    bins: int | None = Field(default=None, ge=1, le=MAX_BINS, description="score-histogram bins; default: the "
                             f"parties' default ({DEFAULT_BINS}, {DP_BINS} under DP)")
    threshold_rule: Literal["max_ks", "approval_rate", "cost_ratio"] | None = Field(
        default=None, description="how the decision threshold is chosen on the pooled validation histogram; "
        "default 'max_ks'")
    approval_rate: float | None = Field(default=None, ge=0, le=1, description="threshold_rule = 'approval_rate': "
                                        "the target (default 0.7)")
    cost_fn_fp: float | None = Field(default=None, gt=0, description="threshold_rule = 'cost_ratio': cost of a bad "
                                     "approved over a good declined (default 5)")
    groups: list[str] | None = Field(default=None, max_length=8, description="[schema] features to report "
                                     "fairness by (category columns; numeric ones need group_bands)")
    group_bands: dict[str, list[float]] | None = Field(default=None, description="numeric group column -> "
                                                       "increasing cut points, e.g. company_age = [2, 5, 10]")
    min_group_count: int | None = Field(default=None, ge=10, le=100_000, description="groups with fewer pooled "
                                        "holdout rows are suppressed (default 30; without DP each party also "
                                        "withholds its cells under 10 rows)")

    @model_validator(mode="after")
    def _bands_of_groups(self) -> EvaluationSection:
        stray = sorted(set(self.group_bands or {}) - set(self.groups or []))
        if stray:
            raise ValueError(f"evaluation.group_bands: {stray} are not in evaluation.groups")
        for column, cuts in (self.group_bands or {}).items():
            if not cuts or len(cuts) > 20 or not all(math.isfinite(c) for c in cuts) or any(
                    b <= a for a, b in zip(cuts, cuts[1:], strict=False)):  # review R13-GRP-6: NaN compares False
                raise ValueError(f"evaluation.group_bands.{column}: 1 to 20 finite, strictly increasing cut points "
                                 f"(got {list(cuts)})")
        return self


class BankAloneSection(Strict):
    """[bank_alone] (horizontal, logistic/mlp): each bank trains a local-only model on its own training rows and
    scores it and the consortium model on its own holdout, sending only the two score histograms
    (`sampan.horizontal.local_comparison`). Under [privacy] the local-only model is trained by DP-SGD at the
    run's DP2 settings and charged as DP2 (so [privacy.dp2] is required); secure aggregation cannot apply: the
    figures are per bank by nature, and the receipt says so."""

    epochs: int = Field(default=5, ge=1, le=1000, description="local epochs of the bank's local-only model")
