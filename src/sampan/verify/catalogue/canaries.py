"""Canary columns: the planted records of S-MIA and S-DP-AUDIT-ONE-RUN (one job serves both).

Why columns, not rows far outside the data: a logistic regression on a few hundred rows memorises nothing a
membership attack can see, and canaries at a huge norm are easy for a platform to filter. The verifier controls
its own party's data, so it appends ``m`` binary columns, named like ordinary features and drawn per evaluation.
Canary k is one row (an ordinary row of the party, its label drawn at random) with 1.0 in column k and 0 in the
other canary columns; each canary row is included with probability 1/2 (Steinke et al. 2023, one-run audit). Every
party lists the canary columns as features (the others hold zeros there), so the task looks like any other.

Without DP an included canary pulls its own column's weight towards its label, and an excluded one leaves its
column (all zeros) untouched: the score (2y - 1) * (w_final - w_start) on the canary's column separates them. With
DP (clipping plus noise) the pull drowns in the noise. ``m`` is bounded by the API's column limit (512 per table).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context
from sampan.verify.catalogue.common import horizontal_parties, plane_for
from sampan.verify.catalogue.export_tie import check_export
from sampan.verify.catalogue.jobs import JobRun, PartySpec, horizontal_spec, run_job

__all__ = ["CANARIES", "CanaryPlan", "CanaryRun", "canary_job", "plan_canary_columns", "with_columns"]

CANARIES = 480  # at most; fewer when the drawn columns + canaries + the label would pass MAX_COLUMNS (512)
ROUNDS = 5


@dataclass(frozen=True)
class CanaryPlan:
    names: list[str]  # the canary columns, in order
    base_rows: np.ndarray  # the ordinary row each canary copies (indices into the table)
    labels: np.ndarray  # each canary's label (drawn at random)
    included: np.ndarray  # bool: the coin of each canary (included in the party's data or not)

    def record(self) -> dict[str, Any]:
        """The plan as evidence (drawn from secret randomness, so the report keeps it for a re-check)."""
        return {"columns": list(self.names), "base_rows": [int(r) for r in self.base_rows],
                "labels": "".join(str(int(v)) for v in self.labels),
                "included": "".join("1" if v else "0" for v in self.included)}


@dataclass
class CanaryRun:
    plan: CanaryPlan
    run: JobRun
    scores: np.ndarray  # (2y - 1) * change of each canary column's weight: higher = more likely included
    start_from: str  # where w_start came from
    dp: dict[str, Any] | None


def plan_canary_columns(ctx: Context, m: int = CANARIES, rng: np.random.Generator | None = None) -> CanaryPlan:
    """Names, rows, labels and coins of up to ``m`` canaries (as many as the API's column limit leaves beside the
    drawn columns and the label; secret randomness unless a test passes ``rng``)."""
    from sampan.verify.api import MAX_COLUMNS

    m = min(m, MAX_COLUMNS - 1 - len(ctx.data.columns))
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    taken = set(ctx.data.columns) | set(ctx.data.table.columns)
    names: list[str] = []
    while len(names) < m:
        name = f"attr_{int(rng.integers(16**6)):06x}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    own = ctx.data.parts[-1]
    return CanaryPlan(names, rng.choice(own, size=m, replace=True), rng.integers(0, 2, size=m).astype(np.float64),
                      rng.random(m) < 0.5)


def with_columns(data: dict[str, Any], names: list[str], extra: np.ndarray | None = None) -> dict[str, Any]:
    """``data`` (TableData with the label last) with ``names`` inserted before the label (zeros unless ``extra``)."""
    cols = list(data["columns"])
    rows = [list(r) for r in data["rows"]]
    block = np.zeros((len(rows), len(names))) if extra is None else extra
    return {"columns": cols[:-1] + names + cols[-1:],
            "rows": [r[:-1] + [float(v) for v in block[i]] + r[-1:] for i, r in enumerate(rows)]}


def _start(run: JobRun, d: int) -> np.ndarray | None:
    plane = run.plane
    if plane is None:
        return None
    for m in plane.tap.messages:
        if m.direction != "received":
            continue
        for key in ("weights", "params", *m.payload):
            a = np.asarray(m.payload.get(key, []))
            if a.dtype.kind == "f" and a.size == d:
                return a.reshape(-1).astype(np.float64)
    return None


def canary_job(ctx: Context, dp: dict[str, Any] | None) -> CanaryRun:
    """The evaluation's canary job (once per evaluation): ROUNDS rounds over the drawn columns plus the canaries."""

    def make() -> CanaryRun:
        plan = plan_canary_columns(ctx)
        t = ctx.data.table
        parties = horizontal_parties(ctx)
        features = list(ctx.data.columns) + plan.names
        out: list[PartySpec] = []
        for i, p in enumerate(parties):
            data = with_columns(p.data or {}, plan.names)
            if i == len(parties) - 1:
                keep = np.flatnonzero(plan.included)
                X = t.cols(list(ctx.data.columns))[plan.base_rows[keep]]
                rows = [[*map(float, X[j]), *(1.0 if c == k else 0.0 for c in range(len(plan.names))),
                         float(plan.labels[k])] for j, k in enumerate(keep)]
                data = {"columns": data["columns"], "rows": data["rows"] + rows}
            out.append(PartySpec(p.name, p.role, data, p.operated_by))
        spec = horizontal_spec(ctx, [p.name for p in out], rounds=ROUNDS, dp=dp)
        spec["features"] = {p.name: features for p in out}
        plane = plane_for(ctx) if any(p.operated_by == "verifier" for p in out) else None
        run = run_job(ctx, spec, out, prefix="canaries", plane=plane)
        scores = np.zeros(len(plan.names))
        if run.model is not None:
            coef = dict(zip(run.model["features"], np.asarray(run.model["coefficients"], dtype=np.float64),
                            strict=True))
            order = list(run.model["features"])
            start = _start(run, len(order) + 1)
            w0 = {c: float(start[i]) for i, c in enumerate(order)} if start is not None else {}
            std = run.model.get("standardisation")
            scale = dict(zip(order, std["scale"], strict=True)) if std else {}
            for k, name in enumerate(plan.names):
                change = coef.get(name, 0.0) - w0.get(name, 0.0)
                # a weight on a standardised column acts as weight / scale on the raw 0/1 value
                change = change / float(scale.get(name, 1.0) or 1.0)
                scores[k] = (2.0 * plan.labels[k] - 1.0) * change
        where = ("the model the verifier's party received in round 1" if run.plane is not None else
                 "zeros (no party kit: the start model is not observable)")
        return CanaryRun(plan, run, scores, where, dp)

    key = "canary_job" if dp is None else f"canary_job:{dp['epsilon']}:{dp['delta']}:{dp['clip']}"
    result: CanaryRun = ctx.once(key, make)
    if result.run.model is not None:  # the scores come from the export: it must be the federation's model
        check_export(ctx, result.run, "the canary job")
    return result
