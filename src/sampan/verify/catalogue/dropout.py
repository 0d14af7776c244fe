"""F-DROPOUT-RESUME: the verifier's own party really leaves a job, and the verifier judges what it observed.

Why (R16-VERDICT-10): when the party that leaves is one the platform operates, the only sign that it left is the
platform's own round reports, and a platform that never drops it can simply edit them. Here the last of four parties is
the verifier's: its kit stops after round ``LEAVE_AFTER`` (the first message of a later round is not handled, no update
leaves, the kit is stopped and its connection closed: `dataplane.PartyLeft`). The TaskSpec still names it in ``dropout``
(the API's notice that it will leave); a platform that ignores the notice waits for an update that never comes. Pass:
the party sent updates in exactly rounds 1..``LEAVE_AFTER`` and none after (REV16-3: a platform that hides a round from
it does not run the job as specified), the job still succeeded, its final model moved on from the last model the party
received (training went on without it), and the verifier's holdout AUC of it is not significantly below the pooled AUC
minus the margin (the paired rule, `common.judge_auc_noninferior`), and the final model carries the mark the party put
on its last update about once, not once per later round (R16B-6, `dropout_mark`: a platform that never drops the party
and files that update again in every later round fails; the mark goes on the round-``LEAVE_AFTER`` update, and a party
that sent updates none of them marked fails). The platform's per-round party lists are recorded beside, never
trusted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, NotApplicable, Result
from sampan.verify.catalogue.common import horizontal_parties, judge_auc_noninferior, max_abs, plane_for
from sampan.verify.catalogue.dataplane import qualify_self_reported
from sampan.verify.catalogue.dropout_mark import Mark
from sampan.verify.catalogue.jobs import JobRun, PartySpec, horizontal_spec, run_job
from sampan.verify.datasets import table_data

__all__ = ["LEAVE_AFTER", "ROUNDS", "TIMEOUT_S", "dropout"]

ROUNDS = 6
LEAVE_AFTER = 2
TIMEOUT_S = 120  # a platform that waits for the party that left fails the job at this deadline
MOVED_MIN = 1e-9  # the final model differs from the party's last received model by more than this (any training)


def _parties(ctx: Context) -> list[PartySpec]:
    """Four data owners (the largest split in two, so secure aggregation goes on with three); the last, the
    verifier's."""
    t, first = ctx.data.table, ctx.data.parts[0]
    halves = np.array_split(first, 2)
    return [PartySpec("bank_a", "data_owner", table_data(t, halves[0], ctx.data.columns)),
            PartySpec("bank_d", "data_owner", table_data(t, halves[1], ctx.data.columns)),
            *horizontal_parties(ctx)[1:]]


def _run(ctx: Context, parties: list[PartySpec], mark: Mark) -> JobRun:
    names = [p.name for p in parties]
    spec = horizontal_spec(ctx, names, rounds=ROUNDS, timeout_s=TIMEOUT_S,
                           dropout={"party": names[-1], "after_round": LEAVE_AFTER})
    try:
        return run_job(ctx, spec, parties, prefix="dropout", plane=_plane(ctx, mark), require_success=False)
    except NotApplicable:
        if spec["secure_aggregation"] or "secure_aggregation" not in ctx.capabilities:
            raise
    spec["secure_aggregation"] = True  # some platforms absorb a leaving party only under secure aggregation
    return run_job(ctx, spec, parties, prefix="dropout", plane=_plane(ctx, mark), require_success=False)


def _plane(ctx: Context, mark: Mark) -> Any:
    plane = plane_for(ctx, leave_after=LEAVE_AFTER, update_hook=mark.hook)
    mark.reset(plane)
    return plane


def _received_models(plane: Any, d: int) -> list[tuple[int, np.ndarray]]:
    """(round, model) for every model-sized float vector the verifier's party received."""
    got = []
    for m in plane.tap.messages:
        if m.direction != "received":
            continue
        for key in ("weights", "params", *m.payload):
            a = np.asarray(m.payload.get(key, []))
            if a.dtype.kind == "f" and a.size == d:
                got.append((m.round, a.reshape(-1).astype(np.float64)))
                break
    return got


def _final_vector(ctx: Context, model: dict[str, Any] | None) -> np.ndarray | None:
    """The exported model as [coefficients in the drawn columns' order..., intercept], or None."""
    if not model or not model.get("features"):
        return None
    try:
        order = [list(model["features"]).index(c) for c in ctx.data.columns]
    except ValueError:
        return None
    return np.append(np.asarray(model["coefficients"], dtype=np.float64)[order], float(model["intercept"]))


def dropout(ctx: Context) -> Result:
    parties = _parties(ctx)
    mine = parties[-1]
    if mine.operated_by != "verifier":
        raise NotApplicable("no party kit: the verifier cannot make a party of its own leave, and a dropout the "
                            "platform only reports is not evidence")
    mark = Mark.plan(parties, list(ctx.data.columns), LEAVE_AFTER)
    run = _run(ctx, parties, mark)
    plane = run.plane
    leaving = plane.leaving
    updates = sorted({m.round for m in plane.tap.of("sent", "update")})
    before = [r for r in updates if r <= LEAVE_AFTER]
    after = [r for r in updates if r > LEAVE_AFTER]
    reports = [(r["round"], r.get("parties")) for r in ((run.results or {}).get("rounds") or [])]
    listed_after = [int(r) for r, names in reports if int(r) > LEAVE_AFTER and mine.name in (names or [])]
    evidence: dict[str, Any] = {
        "job_id": run.job_id, "job_state": run.job["state"], "left_after_round": LEAVE_AFTER,
        "party_update_rounds": updates,
        "asked_after_leaving": [list(a) for a in leaving.asked[:20]] if leaving is not None else [],
        "kit_ended": plane.error or "the kit ended without an error",
        "platform_round_parties": reports,
        "platform_lists_party_after_it_left": listed_after,
        "judged_on": "what the verifier's own party sent and received, the job's state, and the verifier's "
                     "holdout AUC of the exported model; the platform's round reports are recorded, not trusted"}
    if run.job["state"] != "succeeded":
        err = run.job.get("error") or {}
        return qualify_self_reported(Result(
            "fail", f"the job did not finish after the verifier's party left after round {LEAVE_AFTER}: "
            f"{run.job['state']} ({err.get('code', '')}: {err.get('message', '')})", evidence=evidence), plane)
    problems = []
    if not before:
        problems.append(f"the verifier's party sent no update in rounds 1-{LEAVE_AFTER}: the platform never used it, "
                        "so no party left")
    elif before != list(range(1, LEAVE_AFTER + 1)):
        problems.append(f"the verifier's party sent updates in rounds {before}, not in each of rounds "
                        f"1-{LEAVE_AFTER} before it left: the platform did not run the job as specified (REV16-3)")
    if after:
        problems.append(f"the verifier's party sent updates after it left (rounds {after})")
    d = len(ctx.data.columns) + 1
    last = [v for r, v in _received_models(plane, d) if r <= LEAVE_AFTER]
    final = _final_vector(ctx, run.model)
    moved = max_abs(final, last[-1]) if final is not None and last else None
    evidence["final_model_change_since_party_left"] = moved
    marked = mark.judge(final, last[-1] if last else None)
    evidence["mark"] = marked
    if marked["status"] == "repeated" or (marked.get("unmarked") and updates):
        problems.append(marked["why"])
    if moved is not None and moved <= MOVED_MIN:
        problems.append("the final model is the last model the verifier's party received: nothing trained after "
                        "it left")
    # the export tie (`export_tie`, R16-VERDICT-4) needs the final model at the verifier's party, which left before
    # it: "not checked", said; the verifier's own evidence that training went on is the model change above
    run.export_tie = {"check": "export tie", "job_id": run.job_id, "status": "not checked",  # type: ignore[attr-defined]
                      "why": f"the verifier's party left after round {LEAVE_AFTER}: it never received the final model"}
    result = judge_auc_noninferior(ctx, run, "auc_margin_dropout", cap_key="auc_max_deficit_wide")
    result.evidence.update(evidence)
    result.message = (f"the verifier's party sent updates in rounds {before} and left after round {LEAVE_AFTER}; "
                      f"the job went on without it; " + result.message)
    if "carried" in marked:
        result.message += (f"; the final model carries {marked['carried']:.2f} of the mark on the party's last "
                           f"update (its share {marked['share']:.2f}; fail above {marked['limit']:g} x that)")
    elif marked["status"] == "not checked" and marked["why"] not in problems:
        result.message += f"; dropout mark not checked: {marked['why']}"
    if problems:
        result.verdict = "fail"
        result.message += "; " + "; ".join(problems)
    if listed_after:
        result.message += (f"; note: the platform's round reports still list the party in rounds {listed_after} "
                           "(recorded, not judged)")
    return qualify_self_reported(result, plane)
