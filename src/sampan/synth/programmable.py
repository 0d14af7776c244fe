"""Programmable statistics: fixed target marginals and row constraints, honoured in the samples.

- The **first** target marginal is honoured exactly: its cells get quotas (largest-remainder rounding
  of n * p) and each quota is drawn from the model *conditioned* on that cell (`sample_bins` with
  evidence), so the rest of each row follows the model's P(rest | cell). A target may be over the
  label, one categorical column, or one categorical column together with the label (e.g. equal
  representation of a protected group with equal default rates).
- Targets on the label and on one categorical column (given separately) are merged into one exact
  joint target: the model's own P(column, label) fitted by IPF to both (the least change that meets
  both), so e.g. "10% default rate" and "equal representation of a group" both hold exactly.
- Targets on further columns are met approximately by raking: an oversampled pool is weighted by iterative
  proportional fitting to every target, then each first-target cell keeps its quota of rows drawn
  without replacement with probability proportional to the weights. The achieved marginals are reported.
- **Constraints** are enforced by rejection: rows violating any constraint are discarded and more are
  drawn, up to ``max_draw_factor`` times the rows wanted per cell. If a cell still lacks valid rows, it
  is filled with violating rows and the report says how many and by which constraint.

All of this reads model tables only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.errors import ConfigError
from sampan.privacy.randomness import secure_generator
from sampan.synth.constraints import Constraint
from sampan.synth.model import SynthModel
from sampan.synth.quotas import _pps_systematic, _rake, joint_quotas, quotas
from sampan.synth.sampling import decode_rows, sample_bins
from sampan.synth.table import Table, category_codes

__all__ = ["SampleReport", "TargetError", "TargetMarginal", "generate"]


class TargetError(ConfigError):
    """A target marginal that cannot be used; names the column and the offending category."""


@dataclass(frozen=True)
class TargetMarginal:
    """Wanted distribution over one categorical column, the label, or (column, label).

    ``probabilities`` maps a category (or a ``(category, label class)`` pair) to its share; shares are
    normalised if they sum to within 1e-6 of 1, and cells not listed get 0.
    """

    columns: tuple[str, ...]
    probabilities: Mapping[tuple[str, ...], float]

    @classmethod
    def uniform(cls, model: SynthModel, column: str) -> TargetMarginal:
        """Equal representation of every category of ``column``."""
        cats = model.schema.column(column).categories or ()
        return cls((column,), {(c,): 1.0 / len(cats) for c in cats})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetMarginal:
        """``{"column": "sex", "probabilities": {"F": 0.5, "M": 0.5}}`` or ``{"columns": ["sex", "default"],
        "probabilities": {"F|1": 0.05, ...}}``."""
        cols = data.get("columns") or ([data["column"]] if "column" in data else None)
        if not cols:
            raise TargetError(f"a target needs 'column' or 'columns', got {dict(data)}")
        probs = data.get("probabilities")
        if not isinstance(probs, Mapping) or not probs:
            raise TargetError(f"target on {list(cols)}: 'probabilities' must map categories to shares")
        parsed = {tuple(str(k).split("|")): float(v) for k, v in probs.items()}
        return cls(tuple(str(c) for c in cols), parsed)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "probabilities": {"|".join(k): v for k, v in self.probabilities.items()}}


@dataclass
class _Cells:
    """A checked target: which columns, all cells (as category-code tuples) and their probabilities."""

    target: TargetMarginal
    feature: str | None  # the categorical feature column, if any
    with_label: bool
    cells: list[tuple[int, ...]]
    probs: np.ndarray
    margins: tuple[np.ndarray, np.ndarray] | None = None  # a merged target's (column, label) marginals


def _check_target(model: SynthModel, target: TargetMarginal) -> _Cells:
    schema = model.schema
    cols = list(target.columns)
    label = schema.label
    if not 1 <= len(cols) <= 2 or len(set(cols)) != len(cols):
        raise TargetError(f"target on {cols}: give one column, or one column and the label")
    feature = next((c for c in cols if c != label), None)
    with_label = label in cols
    if len(cols) == 2 and not with_label:
        raise TargetError(f"target on {cols}: a two-column target must include the label '{label}'")
    for c in cols:
        spec = schema.column(c)
        if spec.kind != "categorical":
            raise TargetError(f"target on {cols}: column '{c}' is numeric; targets need categorical columns")
    ordered = ([feature] if feature else []) + ([label] if with_label and label is not None else [])
    perm = [cols.index(c) for c in ordered]
    sizes = [len(schema.column(c).categories or ()) for c in ordered]
    cats = [list(schema.column(c).categories or ()) for c in ordered]
    grid = np.zeros(sizes)
    for key, p in target.probabilities.items():
        if len(key) != len(cols):
            raise TargetError(f"target on {cols}: cell {'|'.join(key)!r} needs {len(cols)} value(s) joined by '|'")
        key = tuple(key[i] for i in perm)
        for c, v, options in zip(ordered, key, cats, strict=False):
            if v not in options:
                raise TargetError(f"target on {cols}: {v!r} is not a category of column '{c}' ({options})")
        if not (math.isfinite(p) and p >= 0):
            raise TargetError(f"target on {cols}: share of {'|'.join(key)!r} must be >= 0, got {p}")
        grid[tuple(o.index(v) for o, v in zip(cats, key, strict=False))] = p
    total = grid.sum()
    if abs(total - 1.0) > 1e-6:
        raise TargetError(f"target on {cols}: shares sum to {total:.6g}, not 1")
    cells = [tuple(int(i) for i in idx) for idx in np.ndindex(*sizes)]
    return _Cells(target, feature, with_label, cells, grid.reshape(-1) / total)


def _model_joint(model: SynthModel, column: str) -> np.ndarray:
    """P(category of ``column``, label class) implied by the model's tables: (categories, L)."""
    encoder = model.encoders[column]
    marg = model.node_marginals()[column]  # (L, bins)
    joint_bins = (model.p_label[:, None] * marg).T  # (bins, L)
    weights = np.asarray(encoder.weights, dtype=np.float64)  # type: ignore[union-attr]
    group_of = encoder.group_of  # type: ignore[union-attr]
    group_total = np.bincount(group_of, weights=weights, minlength=joint_bins.shape[0])
    members = np.bincount(group_of, minlength=joint_bins.shape[0])
    within = np.where(group_total[group_of] > 0, weights / np.maximum(group_total[group_of], 1e-300),
                      1.0 / members[group_of])
    return joint_bins[group_of] * within[:, None]


def _merge(model: SynthModel, parts: Sequence[_Cells]) -> _Cells:
    """One exact joint (column, label) target from separate targets on the column and on the label."""
    feature = next(c.feature for c in parts if c.feature is not None)
    joint = _model_joint(model, feature)
    joint = joint / joint.sum() if joint.sum() > 0 else np.full(joint.shape, 1.0 / joint.size)
    joint = np.maximum(joint, 1e-12)  # a cell the model deems impossible can still be asked for
    for _ in range(200):
        for c in parts:
            if c.with_label:
                axis_sum, target = joint.sum(0), c.probs
                joint *= np.divide(target, axis_sum, out=np.zeros_like(target), where=axis_sum > 0)[None, :]
            else:
                axis_sum, target = joint.sum(1), c.probs
                joint *= np.divide(target, axis_sum, out=np.zeros_like(target), where=axis_sum > 0)[:, None]
    joint /= joint.sum()
    columns = (feature, model.schema.label)
    cells = [tuple(int(i) for i in idx) for idx in np.ndindex(*joint.shape)]
    merged = TargetMarginal(columns, {})  # type: ignore[arg-type]
    label_probs = next(c.probs for c in parts if c.with_label)
    column_probs = next(c.probs for c in parts if not c.with_label)
    return _Cells(merged, feature, True, cells, joint.reshape(-1), (column_probs, label_probs))


def _plan(model: SynthModel, checked: list[_Cells]) -> tuple[_Cells | None, list[_Cells]]:
    """(exact target, targets left for raking)."""
    seen: set[tuple[str, ...]] = set()
    for c in checked:
        key = tuple(sorted(c.target.columns))
        if key in seen:
            raise TargetError(f"two targets on {list(c.target.columns)}: give one")
        seen.add(key)
    if not checked:
        return None, []
    features = [c.feature for c in checked if c.feature is not None]
    first_feature = features[0] if features else None
    group = [c for c in checked if c.feature in (first_feature, None)]
    rest = [c for c in checked if c not in group]
    joint = [c for c in group if c.feature is not None and c.with_label]
    if joint and len(group) > 1:
        raise TargetError(f"a target on {list(joint[0].target.columns)} already fixes both columns; drop the "
                          "separate target on one of them")
    if len(group) == 1:
        return group[0], rest
    return _merge(model, group), rest


@dataclass
class SampleReport:
    """What the sampler achieved: per target, requested vs achieved shares; per constraint, violations."""

    rows: int
    rows_drawn: int
    targets: list[dict[str, Any]] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)
    exact: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "rows_drawn": self.rows_drawn, "exact": self.exact, "targets": self.targets,
                "constraints": self.constraints, "notes": self.notes}


def _concat(parts: Sequence[Table]) -> Table:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(table: Table, idx: np.ndarray) -> Table:
    return {k: v[idx] for k, v in table.items()}


def _draw_cell(model: SynthModel, cell: _Cells | None, code: tuple[int, ...] | None, n: int,
               rng: np.random.Generator) -> Table:
    """``n`` rows, conditioned on one target cell (category codes) if given."""
    if cell is None or code is None:
        label, bins = sample_bins(model, n, rng)
        return decode_rows(model, label, bins, rng)
    given: np.ndarray | None = np.full(n, code[-1], dtype=np.int64) if cell.with_label else None
    if given is not None and model.label_encoder is not None:
        given = model.label_encoder.group_of[given]  # label is never pooled, but map through the encoder
    fixed: dict[str, np.ndarray] = {}
    evidence = None
    if cell.feature is not None:
        cat = np.full(n, code[0], dtype=np.int64)
        encoder = model.encoders[cell.feature]
        evidence = (cell.feature, encoder.codes_to_bins(cat))  # type: ignore[union-attr]
        fixed[cell.feature] = cat
    label, bins = sample_bins(model, n, rng, label=given, evidence=evidence)
    return decode_rows(model, label, bins, rng, fixed)


def _cell_index(table: Table, model: SynthModel, cell: _Cells) -> np.ndarray:
    """Flat index of each row's target cell."""
    schema = model.schema
    idx = np.zeros(len(next(iter(table.values()))), dtype=np.int64)
    for c in ([cell.feature] if cell.feature else []) + ([schema.label] if cell.with_label else []):
        spec = schema.column(c)  # type: ignore[arg-type]
        idx = idx * spec.size + category_codes(table[c], spec)  # type: ignore[index]
    return idx


def _violations(table: Table, constraints: Sequence[Constraint]) -> tuple[np.ndarray, list[np.ndarray]]:
    n = len(next(iter(table.values())))
    masks = [c.holds(table) for c in constraints]
    ok = np.ones(n, dtype=bool)
    for m in masks:
        ok &= m
    return ok, masks


def generate(
    model: SynthModel,
    n: int,
    *,
    targets: Sequence[TargetMarginal] = (),
    constraints: Sequence[Constraint] = (),
    rng: np.random.Generator | None = None,
    max_draw_factor: float = 50.0,
    pool_factor: int = 4,
) -> tuple[Table, SampleReport]:
    """``n`` synthetic rows honouring targets and constraints (see module doc) and a report of how well."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of rows must be a positive integer, got {n!r}")
    rng = rng if rng is not None else secure_generator()
    checked = [_check_target(model, t) for t in targets]
    first, rest = _plan(model, checked)
    codes: list[tuple[int, ...] | None] = list(first.cells) if first else [None]
    if first is not None and first.margins is not None:
        wanted = joint_quotas(first.probs, int(n), *first.margins)
    else:
        wanted = quotas(first.probs, int(n)) if first else np.array([int(n)])
    factor = pool_factor if rest else 1
    report = SampleReport(rows=int(n), rows_drawn=0)
    chosen: list[Table] = []
    pools: list[tuple[Table, int]] = []  # valid pool rows per exact cell, and the cell's quota
    short_total = 0
    for code, q in zip(codes, wanted, strict=False):
        q = int(q)
        if q == 0:
            continue
        valid: list[Table] = []
        invalid: list[Table] = []
        have, drawn, rate = 0, 0, 1.0
        goal = q * factor
        while have < goal and drawn < max_draw_factor * q:
            batch = int(min(max((goal - have) / max(rate, 1e-3) * 1.1, 64), max_draw_factor * q - drawn + 64))
            rows = _draw_cell(model, first, code, batch, rng)
            drawn += batch
            ok, _ = _violations(rows, constraints) if constraints else (np.ones(batch, bool), [])
            valid.append(_take(rows, np.flatnonzero(ok)))
            if not ok.all():
                invalid.append(_take(rows, np.flatnonzero(~ok)[: q]))
            have += int(ok.sum())
            rate = max(have / drawn, 1e-4)
        report.rows_drawn += drawn
        pool = _concat(valid)
        if have < q:  # constraints could not be met within the cap: fill with violating rows, and say so
            short = q - have
            short_total += short
            filler = _concat(invalid)
            pool = _concat([pool, _take(filler, np.arange(min(short, len(next(iter(filler.values()))))))])
        pools.append((pool, q))
    if rest:
        full = _concat([p for p, _ in pools])
        sizes = [len(next(iter(p.values()))) for p, _ in pools]
        raked = [first, *rest] if first is not None else rest
        w = _rake(np.ones(sum(sizes)), [_cell_index(full, model, c) for c in raked], [c.probs for c in raked])
        start = 0
        for (pool, q), size in zip(pools, sizes, strict=False):
            wi = w[start: start + size]
            start += size
            chosen.append(_take(pool, _pps_systematic(wi, q, rng)))
    else:
        chosen = [_take(pool, np.arange(min(q, len(next(iter(pool.values())))))) for pool, q in pools]
    table = _concat(chosen)
    order = rng.permutation(len(next(iter(table.values()))))
    table = _take(table, order)

    for c in checked:
        idx = _cell_index(table, model, c)
        achieved = np.bincount(idx, minlength=c.probs.size) / len(idx)
        names = _cell_names(model, c)
        report.targets.append({
            "columns": list(c.target.columns),
            "requested": dict(zip(names, c.probs.round(6).tolist(), strict=False)),
            "achieved": dict(zip(names, achieved.round(6).tolist(), strict=False)),
            "max_abs_difference": float(np.abs(achieved - c.probs).max()),
            "total_variation": float(0.5 * np.abs(achieved - c.probs).sum()),
            "method": "raking (approximate)" if c in rest else "exact (conditional sampling with quotas)",
        })
    if constraints:
        ok, masks = _violations(table, constraints)
        for con, m in zip(constraints, masks, strict=False):
            report.constraints.append({"constraint": con.text, "violations": int((~m).sum()),
                                       "violation_rate": float((~m).mean())})
        if short_total:
            report.notes.append(f"{short_total} row(s) could not satisfy the constraints within "
                                f"{max_draw_factor:g}x oversampling; they are included and counted as violations")
    report.exact = short_total == 0 and all(t["max_abs_difference"] <= 2.0 / n + 1e-12 for t in report.targets)
    return table, report


def _cell_names(model: SynthModel, cell: _Cells) -> list[str]:
    schema = model.schema
    cols = ([cell.feature] if cell.feature else []) + ([schema.label] if cell.with_label else [])
    cats = [schema.column(c).categories or () for c in cols]  # type: ignore[arg-type]
    return ["|".join(cats[i][j] for i, j in enumerate(code)) for code in cell.cells]
