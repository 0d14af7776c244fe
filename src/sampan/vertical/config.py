"""Run descriptions for vertical runs (`sampan run vertical.toml`): parties, label holder, models.

A vertical TOML has a `[vertical]` table instead of the horizontal `[[parties]]`/`[model]` sections::

    [run]
    name = "taiwan-vertical"
    seed = 1
    [vertical]
    label_holder = "bank"
    id = "ID"                      # the registration number column every party shares
    models = ["lr", "scorecard", "gbdt"]
    [[vertical.parties]]
    name = "bank"
    path = "bank.csv"
    label = "default"              # only at the label holder
    features = ["LIMIT_BAL", "PAY_0"]
    [[vertical.parties]]
    name = "card_issuer"
    path = "partner.csv"
    features = ["BILL_AMT1", "PAY_AMT1"]
    categories = {}                # e.g. { sector = ["retail", "trading"] } for one-hot columns
    [vertical.lr]                  # optional: VerticalLRConfig fields
    learning_rate = 0.2
    shared_weights = true          # the default: no party sees its plaintext gradient (false: it does, and
                                   # over many epochs can solve for the labels; needs
                                   # allow_gradient_label_leakage = true once epochs x columns >= batch_size)
    [vertical.gbdt]                # optional: GBDTParams fields
    n_trees = 100
    [vertical.scorecard]
    dp_epsilon = 1.0               # optional DP on the WOE counts
    [vertical.gbdt_privacy]
    hist_noise = 5.0               # optional Gaussian noise on partner histograms (epsilon reported)

Every field is checked by pydantic; errors name the field (e.g. ``vertical.parties.1.path``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sampan.config import ConfigError, read_run_toml
from sampan.data.loaders import load_table
from sampan.data.table import ColumnSpec, PartyData, TableSchema
from sampan.models.gbdt import GBDTParams
from sampan.vertical.training import VerticalLRConfig

__all__ = ["VerticalRunConfig", "load_vertical_config", "is_vertical_config", "load_vertical_parties"]


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
    def _label_holder(self) -> "VerticalSection":
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
    try:
        return "vertical" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def load_vertical_config(path: str | Path) -> VerticalRunConfig:
    path = Path(path)
    data = read_run_toml(path, lambda d: (d.get("vertical") or {}).get("parties", []))
    try:
        config = VerticalRunConfig.model_validate(data)
        config.lr_config(), config.gbdt_params()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


def load_vertical_parties(config: VerticalRunConfig) -> dict[str, PartyData]:
    """Each party's table, loaded and validated as that party would (errors name party, file, column)."""
    out = {}
    for p in config.vertical.parties:
        unknown = sorted(set(p.categories) - set(p.features))
        if unknown:
            raise ConfigError(f"vertical.parties ({p.name}): categories given for undeclared features {unknown}")
        schema = TableSchema(id_column=config.vertical.id, label_column=p.label, features=tuple(
            ColumnSpec(f, "category", tuple(p.categories[f])) if f in p.categories else ColumnSpec(f)
            for f in p.features))
        out[p.name] = load_table(p.path, schema, p.name, p.format)
    return out
