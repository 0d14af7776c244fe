"""Run configuration: pydantic models of a federation and a run, read from TOML.

Unknown keys are errors (a typo such as `learning_rat` must not silently fall back to a default), and
every error names the file and the dotted field path.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A run description that cannot be used; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSection(_Strict):
    name: str = "sampan-run"
    rounds: int = Field(20, ge=1, le=100_000)
    seed: int | None = Field(None, ge=0, lt=2**62, description="fixes partitions, init and shuffling; drawn at random if absent")
    store: str | None = Field(None, description="SQLAlchemy URL of the run store; default sqlite:///sampan-runs/sampan.db")
    report_dir: str = "sampan-reports"
    eval_every: int = Field(1, ge=1)
    fraction_fit: float = Field(1.0, gt=0, le=1)
    min_parties: int = Field(1, ge=1)
    workers: int = Field(1, ge=1, le=256, description="simulation only: processes that host the parties")


class ModelSection(_Strict):
    kind: Literal["logistic", "mlp"] = "logistic"
    hidden: list[int] = Field(default_factory=lambda: [32])


class TrainingSection(_Strict):
    local_epochs: int = Field(1, ge=1)
    local_steps: int | None = Field(None, ge=1, description="minibatches per round; overrides local_epochs")
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    l2: float = Field(1e-4, ge=0)


class StrategySection(_Strict):
    name: Literal["fedavg", "fedprox", "fedadam"] = "fedavg"
    server_learning_rate: float | None = Field(None, gt=0)
    server_momentum: float = Field(0.0, ge=0, lt=1, description="FedAvgM velocity (fedavg/fedprox only)")
    proximal_mu: float = Field(0.01, gt=0)
    aggregator: Literal["mean", "median", "trimmed_mean", "krum"] = "mean"
    trim_fraction: float = Field(0.1, ge=0, lt=0.5)
    byzantine: int = Field(1, ge=0)
    multi_krum: int = Field(1, ge=1)


class DataSection(_Strict):
    test_fraction: float = Field(0.2, gt=0, lt=1)
    standardize: bool = True


class DP1Section(_Strict):
    """Gaussian noise on each party's preprocessing statistics (count, feature sums, sums of squares)."""

    noise_multiplier: float = Field(gt=0, description="noise std / sensitivity of the normalised statistics")
    bounds: dict[str, tuple[float, float]] = Field(
        description="public clipping range per feature name; 'sector=*' covers one-hot columns, '*' all others")

    @model_validator(mode="after")
    def _ranges(self) -> "DP1Section":
        bad = [k for k, (lo, hi) in self.bounds.items() if not lo < hi]
        if bad:
            raise ValueError(f"privacy.dp1.bounds need low < high; bad: {bad}")
        return self


class DP2Section(_Strict):
    """DP-SGD inside each party's local training (record-level DP within that party)."""

    noise_multiplier: float | Literal["auto"] = Field(
        "auto", description="Gaussian noise std / max_grad_norm; 'auto' spends the budget by the last round")
    max_grad_norm: float = Field(1.0, gt=0, description="per-example L2 clipping bound")
    sampling_rate: float | None = Field(None, gt=0, le=1, description="Poisson q; default batch_size / rows")
    schedule: list[float] | None = Field(
        None, min_length=1, description="noise factors for equal segments of the rounds, fixed before the run, "
        "e.g. [1.2, 1.0, 0.8] (decaying noise)")


class DP3Section(_Strict):
    """Clipping and Gaussian noise at the aggregator: record-level DP per round (sensitivity 2·clip, since one
    record can flip a party's clipped update; see `sampan.privacy.dp3`)."""

    noise_multiplier: float | Literal["auto"] = Field(
        "auto", description="record-level noise multiplier of each round's release (the sum's noise std is about "
        "2·z·clip); 'auto' spends the budget by the last round")
    clip: float = Field(1.0, gt=0, description="L2 clip of each party's update (start value if adaptive)")
    mode: Literal["central", "distributed"] = "central"
    adaptive: bool = False
    target_quantile: float = Field(0.5, gt=0, lt=1)
    clip_learning_rate: float = Field(0.2, gt=0)
    count_noise: float | None = Field(None, gt=0, description="noise std σ_b on the adaptive-clipping count; "
                                      "default max(parties/20, 3·z); must exceed z")
    schedule: list[float] | None = Field(None, min_length=1, description="as privacy.dp2.schedule")


class PrivacySection(_Strict):
    """Per-party privacy budget and the mechanisms that spend it (one ledger per run)."""

    epsilon: float = Field(gt=0, description="budget per party, record-level")
    delta: float = Field(1e-5, gt=0, lt=1)
    accountant: Literal["rdp", "pld"] = "rdp"
    per_party_noise: bool = Field(True, description="'auto' DP2 noise calibrated to each party's own budget")
    count_noise_multiplier: float = Field(
        20.0, gt=0, description="each party's training row count is released once, at setup, through a Gaussian "
        "mechanism with this noise multiplier (sensitivity 1, charged as DP1); weights, DP-SGD sampling rates and "
        "steps use the released count, never the exact one")
    dp1: DP1Section | None = None
    dp2: DP2Section | None = None
    dp3: DP3Section | None = None


class SecureAggregationSection(_Strict):
    """SecAgg+ secure aggregation of the parties' updates: the coordinator only ever sees their sum."""

    enabled: bool = True
    threshold: float = Field(
        0.6, gt=0.5, le=1, description="share of each party's share holders needed to rebuild its masks (t of n on a "
        "complete graph), and the least share of parties whose masked input must arrive; fewer fail the round")
    neighbours: int | Literal["auto", "all"] = Field(
        "auto", description="degree k of the neighbour graph (even); 'all' = complete graph; 'auto' = the least k "
        "that keeps the round failure probability under 1e-4 at expected_dropout")
    expected_dropout: float = Field(0.1, ge=0, lt=0.5, description="per-round dropout rate used to size 'auto' graphs")
    frac_bits: int = Field(32, ge=8, le=48, description="fixed-point fraction bits of the masked ring Z_2^64")
    max_abs: float = Field(1e4, gt=0, description="every coordinate is clamped to ±max_abs before encoding")
    max_retries: int = Field(2, ge=0, le=20, description="a failed round is retried this often with the survivors")
    min_contributors: int = Field(
        3, ge=3, description="never aggregate fewer inputs than this (with two, each contributor reads the other's "
        "input from the sum); a round left with fewer fails with a clear error")

    @field_validator("neighbours")
    @classmethod
    def _even(cls, value: Any) -> Any:
        if isinstance(value, int) and (value < 2 or value % 2):
            raise ValueError("secure_aggregation.neighbours must be an even number >= 2, 'auto' or 'all'")
        return value


class ColumnSection(_Strict):
    name: str
    kind: Literal["float", "int", "bool", "category"] = "float"
    categories: list[str] | None = None


class SchemaSection(_Strict):
    id: str
    label: str
    features: list[ColumnSection]

    @field_validator("features", mode="before")
    @classmethod
    def _names_are_float_columns(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


class PartySection(_Strict):
    name: str = Field(min_length=1, max_length=100)
    path: str
    format: Literal["csv", "parquet"] | None = None


class SourceSection(_Strict):
    """A simulated federation: the built-in consortium or a public dataset split across parties."""

    kind: Literal["consortium", "taiwan", "german", "south_german"]
    path: str | None = Field(None, description="dataset file or folder (public datasets only)")
    n_parties: int = Field(5, ge=1, le=100_000)
    partition: Literal["iid", "dirichlet", "quantity"] = "iid"
    alpha: float = Field(0.5, gt=0)
    n_smes: int = Field(12_000, ge=300)


class RunConfig(_Strict):
    run: RunSection = Field(default_factory=RunSection)
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    strategy: StrategySection = Field(default_factory=StrategySection)
    data: DataSection = Field(default_factory=DataSection)
    schema_: SchemaSection | None = Field(None, alias="schema")
    parties: list[PartySection] = Field(default_factory=list)
    source: SourceSection | None = None
    privacy: PrivacySection | None = None
    secure_aggregation: SecureAggregationSection | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_data_binding(self) -> "RunConfig":
        if self.source is None and not self.parties:
            raise ValueError("give either [[parties]] (with [schema]) or a [source] section")
        if self.source is not None and self.parties:
            raise ValueError("give either [[parties]] or [source], not both")
        if self.privacy is not None and not (self.privacy.dp1 or self.privacy.dp2 or self.privacy.dp3):
            raise ValueError("[privacy] sets a budget but no mechanism: add [privacy.dp1], [privacy.dp2] and/or [privacy.dp3]")
        for name in ("dp2", "dp3"):
            section = getattr(self.privacy, name, None) if self.privacy else None
            if section is not None and section.noise_multiplier != "auto" and section.noise_multiplier <= 0:
                raise ValueError(f"privacy.{name}.noise_multiplier must be > 0 or 'auto'")
            if section is not None and section.schedule and min(section.schedule) <= 0:
                raise ValueError(f"privacy.{name}.schedule factors must be > 0")
        if self.privacy is not None and self.data.standardize and self.privacy.dp1 is None:
            raise ValueError("privacy: data.standardize = true needs [privacy.dp1] (public bounds per feature) so the "
                             "standardisation statistics are clipped, noised and charged; or set data.standardize = false")
        if self.privacy is not None and self.privacy.dp3 is not None and self.strategy.aggregator != "mean":
            raise ValueError("privacy.dp3 replaces the aggregator with a noisy mean; set strategy.aggregator = 'mean'")
        secagg = self.secure_aggregation
        if secagg is not None and secagg.enabled:
            if self.strategy.aggregator != "mean":
                raise ValueError("secure_aggregation hides individual updates; robust aggregators need them: "
                                 "set strategy.aggregator = 'mean'")
        dp3 = self.privacy.dp3 if self.privacy else None
        if dp3 is not None and dp3.mode == "distributed" and not (secagg is not None and secagg.enabled):
            raise ValueError("privacy.dp3.mode = 'distributed' needs [secure_aggregation]: without it the coordinator "
                             "sees each party's update with only 1/sqrt(m) of the noise; add [secure_aggregation] or "
                             "set privacy.dp3.mode = 'central'")
        if secagg is not None and secagg.enabled:
            if dp3 is not None and dp3.mode != "distributed":
                raise ValueError("with secure_aggregation the coordinator only sees the sum, so DP3 noise must come "
                                 "from the parties: set privacy.dp3.mode = 'distributed'")
        if self.parties and self.schema_ is None:
            raise ValueError("[[parties]] need a [schema] section naming the id, label and feature columns")
        names = [p.name for p in self.parties]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"party names must be unique; repeated: {duplicates}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form stored with the run, so `--resume` needs no config file."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_config(data: dict[str, Any], *, source: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def read_run_toml(path: str | Path, parties: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Parse a run TOML with clear errors, resolving each party's relative `path` against the file's folder.

    `parties(data)` returns the list of party tables of that kind of run ([[parties]] or [[vertical.parties]]).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = path.resolve().parent
    found = parties(data)
    for party in found if isinstance(found, list) else []:
        if isinstance(party, dict) and isinstance(party.get("path"), str):
            party["path"] = str((base / party["path"]).resolve())
    return data


def load_config(path: str | Path) -> RunConfig:
    """Read a run TOML; relative data paths are resolved against the file's folder."""
    path = Path(path)
    data = read_run_toml(path, lambda d: d.get("parties", []))
    base = path.resolve().parent
    source = data.get("source")
    if isinstance(source, dict) and isinstance(source.get("path"), str):
        source["path"] = str((base / source["path"]).resolve())
    return parse_config(data, source=str(path))
