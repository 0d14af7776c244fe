"""Vertical runs from TOML: load the one-dialect `RunConfig`, and each party's table as that party would.

A vertical run is a `sampan.config.RunConfig` with a `[vertical]` section (see examples/taiwan_vertical.toml)::

    [run]
    name = "taiwan-vertical"
    seed = 1
    [schema]                       # THE table schema: shared id, the label, every party's features
    id = "ID"
    label = "default"
    features = ["LIMIT_BAL", "PAY_0", "BILL_AMT1", "PAY_AMT1"]   # or {name, kind, categories} tables
    [vertical]
    label_holder = "bank"
    models = ["lr", "scorecard", "gbdt"]
    [vertical.lr]                  # VerticalLRConfig fields (shared_weights = true is the default)
    learning_rate = 0.2
    [vertical.gbdt]                # GBDTParams fields
    n_trees = 100
    [vertical.scorecard]
    dp_epsilon = 1.0               # optional DP on the WOE counts
    [vertical.gbdt_privacy]
    hist_noise = 5.0               # optional Gaussian noise on partner histograms
    [[parties]]
    name = "bank"                  # the label holder also loads the label column
    path = "bank.csv"              # simulation only: a config submitted to a coordinator has no paths
    features = ["LIMIT_BAL", "PAY_0"]
    [[parties]]
    name = "card_issuer"
    path = "partner.csv"
    features = ["BILL_AMT1", "PAY_AMT1"]

The earlier dialect (`[[vertical.parties]]` with label/features/categories, `[vertical] id`, an untyped
`[vertical.lr]`) is still read: `load_vertical_config` converts it (`legacy_to_run_dict`), and
`VerticalRunConfig` remains its validator. Errors name the field (e.g. ``parties.1.features``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sampan.config import ConfigError, RunConfig, parse_config, read_run_toml
from sampan.data.loaders import load_table
from sampan.data.table import PartyData
from sampan.models.gbdt import GBDTParams
from sampan.vertical.training import VerticalLRConfig

__all__ = ["VerticalRunConfig", "load_vertical_config", "is_vertical_config", "load_vertical_parties",
           "legacy_to_run_dict"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VerticalPartyConfig(_Strict):
    name: str = Field(min_length=1)
    path: str
    features: list[str] = Field(min_length=1)
    label: str | None = None
    format: Literal["csv", "parquet"] | None = None
    categories: dict[str, list[str]] = {}   # categorical features: name -> categories (one-hot, fixed order)


class RunSection(_Strict):
    name: str = "vertical-run"
    seed: int = 0
    store: str | None = None
    report_dir: str = "sampan-reports"


class ScorecardSection(_Strict):
    dp_epsilon: float | None = Field(default=None, gt=0)


class GBDTPrivacySection(_Strict):
    hist_noise: float = Field(default=0.0, ge=0)  # Gaussian sigma on partner histograms (gradient units)


class VerticalSection(_Strict):
    label_holder: str
    id: str
    models: list[Literal["lr", "scorecard", "gbdt"]] = ["lr"]
    parties: list[VerticalPartyConfig] = Field(min_length=2)
    lr: dict[str, Any] = {}
    gbdt: dict[str, Any] = {}
    scorecard: ScorecardSection = ScorecardSection()
    gbdt_privacy: GBDTPrivacySection = GBDTPrivacySection()
    applicants: list[str] = []

    @field_validator("models")
    @classmethod
    def _lr_first(cls, v: list[str]) -> list[str]:
        if "lr" not in v:
            raise ValueError("models must include 'lr' (the secure LR is the run's main model)")
        return v

    @model_validator(mode="after")
    def _label_holder(self) -> VerticalSection:
        names = [p.name for p in self.parties]
        if len(set(names)) != len(names):
            raise ValueError(f"party names must be unique, got {names}")
        if self.label_holder not in names:
            raise ValueError(f"label_holder {self.label_holder!r} is not one of the parties {names}")
        for p in self.parties:
            if (p.name == self.label_holder) != (p.label is not None):
                raise ValueError(f"party {p.name!r}: only the label holder declares a label column")
        return self


class VerticalRunConfig(_Strict):
    run: RunSection = RunSection()
    vertical: VerticalSection

    def lr_config(self) -> VerticalLRConfig:
        """The secure LR settings, checked against these parties: logit_clip x parties within the ring's
        capacity and the sigmoid's fit range, batch_size at least max(4 x widest party's columns, 64)."""
        try:
            config = VerticalLRConfig(**self.vertical.lr)
            config.check_capacity(len(self.vertical.parties))
            config.check_batches(max(self._columns(p) for p in self.vertical.parties))
        except (TypeError, ValueError) as exc:
            field = next((f for f in ("shared_weights", "batch_size", "logit_clip", "learning_rate", "epochs",
                                      "patience", "l2")
                          if f in str(exc)), None)
            raise ConfigError(f"vertical.lr{'.' + field if field else ''}: {exc}") from None
        return config

    @staticmethod
    def _columns(p: VerticalPartyConfig) -> int:
        """Model columns of a party: one per numeric feature, one per category, plus the bank's intercept."""
        return sum(len(p.categories[f]) if f in p.categories else 1 for f in p.features) + (p.label is not None)

    def gbdt_params(self) -> GBDTParams:
        try:
            return GBDTParams(**self.vertical.gbdt)
        except TypeError as exc:
            raise ConfigError(f"vertical.gbdt: {exc}") from None


def is_vertical_config(path: str | Path) -> bool:
    """Whether a run TOML describes a vertical run ([vertical], or run.workflow = 'vertical')."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    run_section = data.get("run")
    run = run_section if isinstance(run_section, dict) else {}
    return "vertical" in data if run.get("workflow") is None else run.get("workflow") == "vertical"


def legacy_to_run_dict(data: dict[str, Any], source: str = "<config>") -> dict[str, Any]:
    """The earlier vertical dialect (`[[vertical.parties]]`) as the one dialect's dict; other dicts unchanged."""
    vertical = data.get("vertical")
    if not (isinstance(vertical, dict) and "parties" in vertical):
        return data
    try:
        old = VerticalRunConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{source}: {'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None
    v = old.vertical
    features: list[dict[str, Any]] = []
    for p in v.parties:
        unknown = sorted(set(p.categories) - set(p.features))
        if unknown:
            raise ConfigError(
                f"{source}: vertical.parties ({p.name}): categories given for undeclared features {unknown}")
        features += [{"name": f, "kind": "category", "categories": list(p.categories[f])} if f in p.categories
                     else {"name": f} for f in p.features]
    label = next(p.label for p in v.parties if p.name == v.label_holder)
    section = {k: val for k, val in vertical.items() if k not in ("parties", "id")}
    return {"run": {**old.run.model_dump(exclude_none=True), "workflow": "vertical"},
            "schema": {"id": v.id, "label": label, "features": features},
            "vertical": section,
            "parties": [{"name": p.name, "path": p.path, **({"format": p.format} if p.format else {}),
                         "features": list(p.features)} for p in v.parties]}


def load_vertical_config(path: str | Path) -> RunConfig:
    """A vertical run TOML (either dialect) as a `RunConfig`; relative paths resolve against the file."""
    data = legacy_to_run_dict(read_run_toml(path), str(path))
    return parse_config(data, source=str(path))


def load_vertical_parties(config: RunConfig | VerticalRunConfig | dict[str, Any]) -> dict[str, PartyData]:
    """Each party's table, loaded and validated as that party would (errors name party, file, column).

    Takes a `RunConfig`, or a stored config dict of a run (either dialect), e.g. to rescore a run."""
    if isinstance(config, VerticalRunConfig):
        config = config.model_dump(mode="json")
    if isinstance(config, dict):
        config = parse_config(legacy_to_run_dict(config), source="stored run config")
    out = {}
    for p in config.parties:
        if p.path is None:
            raise ConfigError(f"party {p.name!r} has no path: its table is bound by its own agent")
        out[p.name] = load_table(p.path, config.party_schema(p.name), p.name, p.format)
    return out
