"""Run configuration: one pydantic `RunConfig` for every workflow, read from TOML by `sampan run` and
`sampan submit` alike (`sampan.deploy.config.RunSpec` wraps the same class).
May import: sampan.privacy, sampan.models, sampan.metrics, sampan.data, sampan.compute ([compute]), sampan.errors,
sampan.files (and pydantic);
never a workflow, transport or store: workflows read the config, not the other way round.

Unknown keys are errors (a typo such as `learning_rat` must not silently fall back to a default), and
every error names the file and the dotted field path; nothing here raises a traceback at a user.

Sections: [run] (name, workflow, seed, rounds...), [model], [training], [strategy], [data], [schema]
(`sampan.data.schema.TableSchema`, the one table schema), [[parties]], [source], [privacy],
[secure_aggregation], [vertical] (+ .lr, .gbdt, .scorecard, .gbdt_privacy), [scoring], [synthesis], [evaluation].
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sampan.config.base import ConfigError, Strict, problems
from sampan.config.privacy import DP1Section, DP2Section, DP3Section, PrivacySection, SecureAggregationSection
from sampan.config.run_config import RunConfig, infer_workflow
from sampan.config.sections import (
    WORKFLOWS,
    ColumnSection,
    DataSection,
    EvaluationSection,
    GBDTSection,
    ModelSection,
    PartySection,
    RunSection,
    SchemaSection,
    SourceSection,
    StrategySection,
    TrainingSection,
    Workflow,
)
from sampan.config.vertical import (
    GBDTPrivacySection,
    ScorecardSection,
    ScoringSection,
    SynthesisSection,
    VerticalLRSection,
    VerticalSection,
)
from sampan.data.schema import ColumnSpec, TableSchema

__all__ = [
    "ConfigError", "RunConfig", "parse_config", "load_config", "read_toml", "read_run_toml", "infer_workflow",
    "WORKFLOWS", "Workflow", "RunSection", "ModelSection", "GBDTSection", "TrainingSection", "StrategySection",
    "DataSection", "PartySection", "SourceSection", "DP1Section", "DP2Section", "DP3Section", "PrivacySection",
    "SecureAggregationSection", "VerticalSection", "VerticalLRSection", "ScorecardSection", "GBDTPrivacySection",
    "ScoringSection", "SynthesisSection", "EvaluationSection", "TableSchema", "ColumnSpec", "SchemaSection",
    "ColumnSection", "Strict",
]


def parse_config(data: dict[str, Any], *, source: str = "<config>", deployment: bool = False) -> RunConfig:
    """Validate a run description; `deployment=True` for a config submitted to a coordinator (parties
    without paths, no [source]). Errors: ConfigError('<source>: <dotted.field>: <why>; ...')."""
    try:
        return RunConfig.model_validate(data, context={"deployment": deployment})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {problems(exc)}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing file or bad TOML is a ConfigError naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r} is a folder") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative `path`s of [[parties]] and [source] (and the earlier [[vertical.parties]]) against the file's folder."""
    tables = list(data.get("parties") or []) if isinstance(data.get("parties"), list) else []
    vertical = data.get("vertical")
    if isinstance(vertical, dict) and isinstance(vertical.get("parties"), list):
        tables += vertical["parties"]
    tables.append(data.get("source"))
    for table in tables:
        if isinstance(table, dict) and isinstance(table.get("path"), str):
            table["path"] = str((base / table["path"]).resolve())
    return data


def read_run_toml(path: str | Path, parties: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Parse a run TOML with clear errors, resolving relative data paths against the file's folder.
    (`parties` is accepted for earlier callers and ignored: [[parties]] is the one place parties are.)"""
    return _resolve_paths(read_toml(path), Path(path).resolve().parent)


def load_config(path: str | Path, *, deployment: bool = False) -> RunConfig:
    """Read a run TOML (any workflow); relative data paths are resolved against the file's folder."""
    return parse_config(read_run_toml(path), source=str(path), deployment=deployment)
