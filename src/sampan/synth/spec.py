"""Sampling specifications: targets and constraints from CLI strings or a TOML file.

CLI target syntax: ``COLUMN=uniform`` (equal representation) or ``COLUMN: A=0.3, B=0.7``; a joint
target with the label is ``COLUMN,LABEL: A|1=0.05, A|0=0.45, ...``. A TOML spec holds the same:

    rows = 5000
    constraints = ["loan_amount <= 10 * monthly_revenue", "balance >= 0"]
    [[targets]]
    column = "sex"
    uniform = true
    [[targets]]
    column = "default"
    probabilities = { "1" = 0.10, "0" = 0.90 }
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.synth.constraints import Constraint, parse_constraint
from sampan.synth.model import SynthModel
from sampan.synth.programmable import TargetError, TargetMarginal

__all__ = ["SampleSpec", "combine", "load_spec", "parse_target"]

_SPEC_KEYS = {"rows", "constraints", "targets"}
_TARGET_KEYS = {"column", "columns", "probabilities", "uniform"}


@dataclass
class SampleSpec:
    rows: int | None = None
    targets: list[TargetMarginal] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)


def parse_target(text: str, model: SynthModel) -> TargetMarginal:
    """``sex=uniform`` or ``default: 1=0.1, 0=0.9`` or ``sex,default: F|1=0.05, ...``."""
    text = text.strip()
    if ":" not in text:
        column, _, value = text.partition("=")
        if value.strip().lower() != "uniform":
            raise TargetError(f"target {text!r}: write 'COLUMN=uniform' or 'COLUMN: CATEGORY=SHARE, ...'")
        model.schema.column(column.strip())
        return TargetMarginal.uniform(model, column.strip())
    head, _, body = text.partition(":")
    columns = [c.strip() for c in head.split(",") if c.strip()]
    probs: dict[tuple[str, ...], float] = {}
    for item in body.split(","):
        if not item.strip():
            continue
        key, sep, share = item.rpartition("=")
        if not sep:
            raise TargetError(f"target {text!r}: {item.strip()!r} is not CATEGORY=SHARE")
        try:
            probs[tuple(k.strip() for k in key.split("|"))] = float(share)
        except ValueError:
            raise TargetError(f"target {text!r}: share {share.strip()!r} is not a number") from None
    return TargetMarginal(tuple(columns), probs)


def _target_from_table(data: Any, model: SynthModel, where: str) -> TargetMarginal:
    if not isinstance(data, dict):
        raise TargetError(f"{where}: each [[targets]] entry must be a table")
    unknown = set(data) - _TARGET_KEYS
    if unknown:
        raise TargetError(f"{where}: unknown target field(s) {sorted(unknown)}")
    if data.get("uniform"):
        if "column" not in data:
            raise TargetError(f"{where}: 'uniform = true' needs 'column'")
        return TargetMarginal.uniform(model, str(data["column"]))
    return TargetMarginal.from_dict(data)


def load_spec(path: str | Path, model: SynthModel) -> SampleSpec:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"spec file '{p}' does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{p}: not valid TOML: {exc}") from None
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise TargetError(f"{p}: unknown field(s) {sorted(unknown)} (known: {sorted(_SPEC_KEYS)})")
    rows = data.get("rows")
    if rows is not None and (not isinstance(rows, int) or rows < 1):
        raise TargetError(f"{p}: 'rows' must be a positive integer")
    raw_constraints = data.get("constraints", [])
    if not isinstance(raw_constraints, list):
        raise TargetError(f"{p}: 'constraints' must be a list of expressions")
    targets = [_target_from_table(t, model, f"{p}: targets[{i}]") for i, t in enumerate(data.get("targets", []))]
    constraints = [parse_constraint(str(c), model.schema) for c in raw_constraints]
    return SampleSpec(rows, targets, constraints)


def combine(spec: SampleSpec | None, targets: Sequence[TargetMarginal],
            constraints: Sequence[Constraint]) -> SampleSpec:
    """A spec file's entries followed by those given on the command line."""
    base = spec or SampleSpec()
    return SampleSpec(base.rows, [*base.targets, *targets], [*base.constraints, *constraints])
