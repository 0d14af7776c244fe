"""Canary columns: the planted records of S-MIA and S-DP-AUDIT-ONE-RUN (one job serves both).

Why columns, not rows far outside the data: a logistic regression on a few hundred rows memorises nothing a
membership attack can see, and canaries at a huge norm are easy for a platform to filter. The verifier controls
its own party's data, so it appends ``m`` binary columns. Canary k is one row (an ordinary row of the party, its
label drawn at random) with 1.0 in column k and 0 in the other canary columns; each canary row is included with
probability 1/2 (Steinke et al. 2023, one-run audit). Every party lists the canary columns as features (the others
hold zeros there). The job itself is recognisable (about 500 opaque columns, unlike the catalogue's other jobs):
a platform that applies DP only to a job of this shape passes both audits while its other jobs train in the clear
(R16B-7; the audits show the platform CAN run its mechanism). S-DP-REPEAT (`dp_repeat`) fails such a platform on an
ordinary DP job run twice with one seed (identical exports); what it leaves is in docs/verification/catalogue.md.

Without DP an included canary pulls its own column's weight towards its label, and an excluded one leaves its
column (all zeros) untouched: the score (2y - 1) * (w_final - w_start) on the canary's column separates them. With
DP (clipping plus noise) the pull drowns in the noise. ``m`` is bounded by the API's column limit (512 per table).

What a platform can tell, and why freezing the canaries fails anyway (R16-VERDICT-2). A platform that picks out the
canary columns can keep their weights where they start (or drop them from the aggregate): both audits then pass
while its real columns train in the clear. Two defences:
- names and order give nothing away: every feature of the canary job, drawn columns included, gets a fresh
  ``attr_<6 hex>`` name, and the columns are shuffled (the verifier keeps the map in the plan's record);
- the values still do: a canary column holds zeros at every platform party. That cannot be hidden at no cost: a
  platform-held row with a nonzero value in column k pulls w_k as much as the canary does, so any background
  dense enough to hide a column drowns its canary and takes the audit's power with it (an audit that guesses only
  where the background is empty is back to columns the platform can see are empty). So the verifier checks the
  aggregate instead (`canary_trace`): it sees each global model g its party received, the weights v it sent from
  g, and the next global model g'. Where its update moved a canary column (v_k != g_k, an included canary's
  column), any mean of the parties' updates carries its row share of that change, beside a term common to all
  those columns (the other parties' rows hold the same standardised zero in each) and any DP noise. A platform
  whose global models carry clearly less than `canary_share_min` of that share (slope of g' - g on v - g within
  each round; frozen weights, frozen weights with a jitter, or canary columns averaged without the verifier's
  party) fails S-MIA and S-DP-AUDIT-ONE-RUN (`CanariesIgnored`); the
  export must be the last global model (`export_tie`), so freezing only the export is caught too.
The audits' statistics are unchanged: the coins are independent of everything the platform sees, the score rule is
fixed before the coins are read, and renaming or shuffling columns changes no canary's record. What remains open:
a platform that adds noise to the canary columns only (leaving the party's share in) passes both the trace and the
audits while its real columns are not protected; telling that apart needs the noise on the real columns, which the
verifier cannot separate from the other parties' updates. A coordinate-wise median also leaves the party's share
out (one party against two that agree) and fails the trace: the audit cannot measure such a platform, and says so
(the canary job asks for the default mean). Without a party kit the trace is not checked (said in the outcome).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, Gamed
from sampan.verify.catalogue.common import horizontal_parties, plane_for
from sampan.verify.catalogue.export_tie import check_export
from sampan.verify.catalogue.jobs import JobRun, PartySpec, horizontal_spec, run_job
from sampan.verify.thresholds import value

__all__ = ["CANARIES", "CanariesIgnored", "CanaryPlan", "CanaryRun", "canary_job", "canary_trace",
           "plan_canary_columns", "with_columns"]

CANARIES = 480  # at most; fewer when the drawn columns + canaries + the label would pass MAX_COLUMNS (512)
ROUNDS = 5


@dataclass(frozen=True)
class CanaryPlan:
    names: list[str]  # the canary columns, in order
    base_rows: np.ndarray  # the ordinary row each canary copies (indices into the table)
    labels: np.ndarray  # each canary's label (drawn at random)
    included: np.ndarray  # bool: the coin of each canary (included in the party's data or not)
    aliases: dict[str, str] = field(default_factory=dict)  # drawn column -> the name the platform sees
    order: list[str] = field(default_factory=list)  # the task's feature order: aliases and canaries shuffled

    def record(self) -> dict[str, Any]:
        """The plan as evidence (drawn from secret randomness, so the report keeps it for a re-check)."""
        return {"columns": list(self.names), "base_rows": [int(r) for r in self.base_rows],
                "labels": "".join(str(int(v)) for v in self.labels),
                "included": "".join("1" if v else "0" for v in self.included),
                "aliases": dict(self.aliases), "order": list(self.order)}


@dataclass
class CanaryRun:
    plan: CanaryPlan
    run: JobRun
    scores: np.ndarray  # (2y - 1) * change of each canary column's weight: higher = more likely included
    start_from: str  # where w_start came from
    dp: dict[str, Any] | None
    trace: dict[str, Any]  # did the global models carry the verifier's canary contributions? (`canary_trace`)


def plan_canary_columns(ctx: Context, m: int = CANARIES, rng: np.random.Generator | None = None) -> CanaryPlan:
    """Names, rows, labels and coins of up to ``m`` canaries (as many as the API's column limit leaves beside the
    drawn columns and the label; secret randomness unless a test passes ``rng``)."""
    from sampan.verify.api import MAX_COLUMNS

    m = min(m, MAX_COLUMNS - 1 - len(ctx.data.columns))
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    taken = set(ctx.data.columns) | set(ctx.data.table.columns)
    names: list[str] = []
    while len(names) < m + len(ctx.data.columns):
        name = f"attr_{int(rng.integers(16**6)):06x}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    aliases = dict(zip(ctx.data.columns, names[m:], strict=True))
    names = names[:m]
    order = [str(c) for c in rng.permutation(np.asarray([*aliases.values(), *names], dtype=object))]
    own = ctx.data.parts[-1]
    return CanaryPlan(names, rng.choice(own, size=m, replace=True), rng.integers(0, 2, size=m).astype(np.float64),
                      rng.random(m) < 0.5, aliases, order)


def _as_task(data: dict[str, Any], plan: CanaryPlan) -> dict[str, Any]:
    """``data`` (drawn columns, canaries, label last) under the plan's names, in the plan's shuffled order."""
    cols = [plan.aliases.get(c, c) for c in data["columns"]]
    pos = [cols.index(c) for c in plan.order] + [len(cols) - 1]
    return {"columns": [*plan.order, cols[-1]], "rows": [[r[i] for i in pos] for r in data["rows"]]}


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
        features = list(plan.order)
        out: list[PartySpec] = []
        for i, p in enumerate(parties):
            data = with_columns(p.data or {}, plan.names)
            if i == len(parties) - 1:
                keep = np.flatnonzero(plan.included)
                X = t.cols(list(ctx.data.columns))[plan.base_rows[keep]]
                rows = [[*map(float, X[j]), *(1.0 if c == k else 0.0 for c in range(len(plan.names))),
                         float(plan.labels[k])] for j, k in enumerate(keep)]
                data = {"columns": data["columns"], "rows": data["rows"] + rows}
            out.append(PartySpec(p.name, p.role, _as_task(data, plan), p.operated_by))
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
        counts = [len((p.data or {}).get("rows", [])) for p in out]
        share = min(counts[-1] / max(sum(counts), 1), 1.0 / len(counts))  # the party's weight under either mean
        return CanaryRun(plan, run, scores, where, dp, canary_trace(run, features, plan.names, share))

    key = "canary_job" if dp is None else f"canary_job:{dp['epsilon']}:{dp['delta']}:{dp['clip']}"
    result: CanaryRun = ctx.once(key, make)
    with ctx.lock:
        ctx.integrity.append(result.trace)
    if result.trace["status"] == "ignored":
        raise CanariesIgnored(result.trace["why"], result.trace)
    if result.run.model is not None:  # the scores come from the export: it must be the federation's model
        check_export(ctx, result.run, "the canary job")
    return result


class CanariesIgnored(Gamed):
    """The global models left out the verifier's party's contribution to the canary columns (see the module note)."""

    evidence_key = "canary_trace"


def _model_vectors(run: JobRun, d: int) -> list[tuple[str, np.ndarray]]:
    """("received" | "sent", [weights..., intercept]) of the verifier's party, in the order they happened: the
    global models it received and the full weights it sent (the clear ones under secure aggregation)."""
    out: list[tuple[str, np.ndarray]] = []
    for m in run.plane.tap.messages:
        if m.direction == "sent" and m.kind not in ("update", "update_clear"):
            continue
        for key in ("weights", "params", *m.payload):
            a = np.asarray(m.payload.get(key, []))
            if a.dtype.kind == "f" and a.size == d:
                out.append((m.direction, a.reshape(-1).astype(np.float64)))
                break
    return out


def canary_trace(run: JobRun, features: list[str], names: list[str], share: float = 0.0) -> dict[str, Any]:
    """Does each global model carry the verifier's party's change to the canary columns? For every round the party
    saw (global g, its sent weights v, the next global g'), over the canary coordinates its update moved (v != g),
    any mean gives g' - g = a + s (v - g) + noise: one term ``a`` common to those columns (the other parties' rows
    hold the same standardised zero in each) and the party's share ``s`` of its change (its row share under a
    weighted mean, 1 / n under a plain one; ``share`` is the smaller). The slope of (g' - g) on (v - g) within each
    round, pooled over the rounds, must not be shown to lie below `canary_share_min` x ``share``: a platform that
    keeps the canary weights where they were (with or without a jitter, R16B-4), or averages them without the
    verifier's party, leaves a slope near 0. The test is one-sided at `canary_share_z` standard errors, so noise
    (DP) widens the allowance instead of failing an honest platform; "ignored_fraction" is 1 - slope / share.
    """
    record: dict[str, Any] = {"check": "canary trace", "job_id": run.job_id, "limit": value("canary_share_min"),
                              "expected_share": share}
    if run.plane is None:
        return {**record, "status": "not checked", "why": "no party kit: the verifier cannot see the global models"}
    idx = np.asarray([features.index(n) for n in names])
    g = v = None
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for direction, vec in _model_vectors(run, len(features) + 1):
        if direction == "sent":
            v = vec if g is not None else None
            continue
        if g is not None and v is not None:
            dv, dg = (v - g)[idx], (vec - g)[idx]
            contributed = np.abs(dv) > 1e-12
            if contributed.sum() >= 2:  # centred within the round: the common term drops out
                xs.append(dv[contributed] - dv[contributed].mean())
                ys.append(dg[contributed] - dg[contributed].mean())
        g, v = vec, None
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    sxx = float(x @ x)
    if share <= 0 or x.size < 3 or sxx <= 0:
        return {**record, "status": "not checked",
                "why": "the verifier's party saw no round in which its update moved several canary columns"}
    slope = float(x @ y) / sxx
    dof = max(x.size - len(xs) - 1, 1)
    se = float(np.sqrt(max(float((y - slope * x) @ (y - slope * x)), 0.0) / dof / sxx))
    floor = record["limit"] * share
    upper = slope + value("canary_share_z") * se
    record.update(contributions=int(x.size), slope=slope, slope_se=se, slope_upper=upper, floor=floor,
                  ignored_fraction=float(np.clip(1.0 - slope / share, 0.0, 1.0)))
    if upper < floor:
        return {**record, "status": "ignored",
                "why": f"the global models carry a share of {slope:.3g} (upper bound {upper:.3g}) of the verifier's "
                       f"party's change to the canary columns over {x.size} changes, below "
                       f"{record['limit']:.0%} of its share {share:.3g}: the platform treats the canary columns apart "
                       "(e.g. keeps their weights frozen), so the audit cannot measure its privacy"}
    return {**record, "status": "carried"}
