"""What one bad party can do to the model: Byzantine updates (S-BYZANTINE) and a model-replacement backdoor
(S-BACKDOOR), in five-party jobs whose last party is the verifier's (the attacker, 20% of the training rows).

Threat model: one of five data owners is malicious and sends whatever update it likes (it knows the global model it
received and its own rows); the other four and the aggregator are honest. The platform resists when its robust
aggregator (capability ``robust_aggregation``) keeps the model close to what the honest parties learn.

Five parties, not three: Krum needs n >= 2f + 3 (5 for f = 1), and with two honest parties a coordinate median lets
the attacker pick either honest value per coordinate. The catalogue asks for Krum, then the coordinate median if the
platform refuses Krum as unsupported (recorded in the evidence). Measured on Sampan (docs/verification/results.md):
with five parties the coordinate median and the trimmed mean still let the model-replacement backdoor through on
some draws (38-58% attack success on 2 of 12): the attacker's extreme value moves each coordinate's median to the
next honest value in its direction, every round, and the trigger (6 standard deviations on one column) magnifies
that column's drift. Krum selects one whole honest update and kept the attack under 7%.

Both tests compare with the *same* job without the attack (five parties, five rounds, the same aggregator), run
once per evaluation, so the verdict measures the attack and not a different job length or party count. S-BACKDOOR
counts rows with references the verifier fits on the rows it planted at the four honest parties only
(`backdoor_reference`; R-LAST-1: the platform's four-party job was rigged; REV16-1: so was the clean job as a filter)
and judges the clean job's export on them too: a clean job that already flips them is a backdoored federation.
Weight vectors are [coefficients..., intercept] in the platform's feature order (the drawn columns).

The platform knows which party is the verifier's (it must: that party's rows are not at the platform), and these are
recognisable jobs. Without robust_aggregation the jobs name the mean, so each attacked job's first global, and a
late-attack twin's global at a secret round, must carry the attacker's update with its row share
(`mean_carries_attacker`, `late_attack_job`; R16B-3): a mean that leaves the verifier's party out fails. Under Krum
or a median, leaving one update out is the rule's right, so a platform that declares robust_aggregation and singles
out the verifier's party is not caught (catalogue.md says so).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.verify.catalogue.backdoor_reference import honest_references, judge_backdoor
from sampan.verify.catalogue.base import Context, NotApplicable, Result
from sampan.verify.catalogue.common import holdout_auc, plane_for, robust_parties
from sampan.verify.catalogue.export_tie import check_export
from sampan.verify.catalogue.jobs import JobRun, claimed_secagg, horizontal_spec, job_seed, linear_scores, run_job
from sampan.verify.datasets import fit_lr, table_data
from sampan.verify.thresholds import value

__all__ = ["ROBUST_AGGREGATORS", "ROBUST_ROUNDS", "byzantine", "backdoor", "clean_robust_job", "late_attack_job",
           "mean_carries_attacker"]

ROBUST_AGGREGATORS = ("krum", "median")  # asked in this order when the platform declares robust_aggregation
ROBUST_ROUNDS = 5


def _aggregators(ctx: Context) -> tuple[str | None, ...]:
    """The aggregators to ask for, in order: the robust ones (without secure aggregation: a robust rule needs each
    update, secure aggregation reveals only their sum) when the platform declares robust_aggregation, else its
    default (None: the spec leaves the field out), judged on the result. After the first job, the one it accepted."""
    chosen: dict[str, str | None] = ctx.once("robust_aggregator", dict)
    if "name" in chosen:
        return (chosen["name"],)
    return ROBUST_AGGREGATORS if "robust_aggregation" in ctx.capabilities else (None,)


def _robust_evidence(ctx: Context, run: JobRun, parties: int) -> dict[str, Any]:
    base: dict[str, Any] = {"malicious_parties": 1, "parties": parties, "rounds": ROBUST_ROUNDS,
                            "seed_shared_by_the_robust_jobs": run.spec.get("seed")}
    name = run.spec.get("aggregator")
    if name is not None:
        return {**base, "aggregator": name, "secure_aggregation": False, "asked": list(ROBUST_AGGREGATORS),
                "note": "robust aggregation and secure aggregation do not combine here: a robust rule needs each "
                        "party's update, secure aggregation reveals only their sum"}
    return {**base, "aggregator": "mean (the platform declares no robust_aggregation)",
            "secure_aggregation": claimed_secagg(ctx)}


def _vec(payload: dict[str, np.ndarray], d: int) -> np.ndarray | None:
    """The float vector of length ``d`` in a message ("weights"/"update" first, else the first that fits)."""
    keys = [k for k in ("weights", "update") if k in payload] + [k for k in payload if k not in ("weights", "update")]
    for k in keys:
        a = np.asarray(payload[k])
        if a.dtype.kind == "f" and a.size == d:
            return a.reshape(-1).astype(np.float64)
    return None


def _last_global(plane_box: dict[str, Any], d: int) -> np.ndarray | None:
    plane = plane_box.get("plane")
    if plane is None:
        return None
    got = [_vec(m.payload, d) for m in plane.tap.messages if m.direction == "received"]
    got = [g for g in got if g is not None]
    return got[-1] if got else None


Attack = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (party's weights, global it received) -> weights sent


def _robust_job(ctx: Context, prefix: str, attack: Attack | None, *, from_round: int = 1) -> JobRun:
    """A five-party, five-round job; the verifier's party sends ``attack(weights, global)`` instead of ``weights``
    (from its ``from_round``-th update with a global model received on), or its honest update when ``attack`` is
    None."""
    d = len(ctx.data.columns) + 1
    parties = robust_parties(ctx)
    if not any(p.operated_by == "verifier" for p in parties):
        raise NotApplicable("the verifier runs no party (no party kit): it cannot play the attacker")
    box: dict[str, Any] = {}

    def hook(_round: int, weights: np.ndarray) -> np.ndarray:
        g = _last_global(box, d)
        if attack is None or g is None or g.size != np.asarray(weights).size:
            return weights
        box["updates"] = box.get("updates", 0) + 1
        if box["updates"] < from_round:
            return weights
        return attack(np.asarray(weights, dtype=np.float64), g)

    candidates = _aggregators(ctx)
    for k, name in enumerate(candidates):
        plane = plane_for(ctx, update_hook=hook if attack is not None else None)
        box["plane"], box["updates"] = plane, 0
        extra: dict[str, Any] = {"aggregator": name, "secure_aggregation": False} if name is not None else {}
        spec = horizontal_spec(ctx, [p.name for p in parties], rounds=ROBUST_ROUNDS, seed=_shared_seed(ctx), **extra)
        try:
            run = run_job(ctx, spec, parties, prefix=prefix, plane=plane)
        except NotApplicable:
            if k == len(candidates) - 1:
                raise
            continue  # refused as unsupported: the next robust rule
        ctx.once("robust_aggregator", dict).setdefault("name", name)
        return run
    raise AssertionError("unreachable: the loop returns or raises")


def _shared_seed(ctx: Context) -> int:
    """One TaskSpec seed for every robust job of the evaluation (drawn with `secrets`, recorded; `job_seed`).

    Why shared: the jobs then differ only by the attack. With a fresh seed per job the clean and attacked models
    differ by training noise too, and the trigger (6 standard deviations on one column) turns a small change of that
    column's coefficient into many flipped rows: two *honest* five-party Sampan jobs differed on 34% of the triggered
    rows on one draw, which S-BACKDOOR counted as attack success. A platform that ignores the seed keeps that noise.
    """
    seed: int = ctx.once("robust_seed", lambda: job_seed(ctx))
    return seed


def clean_robust_job(ctx: Context) -> JobRun:
    """The robust jobs' reference: the same five parties, rounds and aggregator, the verifier's party honest."""
    run: JobRun = ctx.once("robust_clean_job", lambda: _robust_job(ctx, "robust", None))
    return run


def _step(run: JobRun, d: int, round_no: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(global received, weights sent, next global) of the verifier's party's ``round_no``-th round, from its tap."""
    if run.plane is None:
        return None
    g0 = sent = None
    for m in run.plane.tap.messages:
        if m.direction == "sent" and m.kind not in ("update", "update_clear"):
            continue
        vec = _vec(m.payload, d)
        if vec is None:
            continue
        if m.direction == "sent":
            sent = vec if g0 is not None else None
        elif sent is not None:
            round_no -= 1
            if round_no == 0:
                return g0, sent, vec  # type: ignore[return-value]  # g0 is set whenever sent is
            g0, sent = vec, None
        else:
            g0 = vec
    return None


def mean_carries_attacker(ctx: Context, run: JobRun, round_no: int = 1) -> dict[str, Any]:
    """R16B-3: under the mean the job names (no robust aggregator asked), the attacker's update must be in the
    aggregate. The platform knows which party the verifier runs, so it could leave that one party out of the robust
    jobs only and "resist" every attack with a plain mean. The clean job shares the seed, so its first round differs
    from the attacked job's by the attacker's change alone: the first global's change between the two jobs,
    regressed on the difference of the two sent updates, is the party's weight in the mean (its row share, 0.2)
    plus the other parties' run-to-run noise; left out, it is about 0. Under Krum or a median an update may be left
    out legitimately (not checked); a platform that declares robust_aggregation can still single the party out
    (documented in catalogue.md). ``round_no``: the round the attack starts in (`late_attack_job`: honest before,
    so the two jobs agree up to that round)."""
    limit = value("robust_mean_share_min")
    record: dict[str, Any] = {"check": "attacker's update in the mean", "job_id": run.job_id, "limit": limit,
                              "round": round_no}
    name = run.spec.get("aggregator")
    if name is not None:
        return {**record, "status": "not checked", "why": f"aggregator {name}: a robust rule may leave any update out"}
    clean = clean_robust_job(ctx)
    d = len(ctx.data.columns) + 1
    att, ref = _step(run, d, round_no), _step(clean, d, round_no)
    if att is None or ref is None:
        return {**record, "status": "not checked", "why": f"the verifier's party saw no full round {round_no} in both "
                                                          "jobs"}
    sent_diff = (att[1] - att[0]) - (ref[1] - ref[0])
    global_diff = (att[2] - att[0]) - (ref[2] - ref[0])
    norm2 = float(sent_diff @ sent_diff)
    if norm2 <= 1e-24:
        return {**record, "status": "not checked", "why": "the attack left the party's first update unchanged"}
    share = float(ctx.data.parts[-1].size) / float(sum(p.size for p in ctx.data.parts))
    weight = float(global_diff @ sent_diff) / norm2
    record.update(row_share=share, weight_in_mean=weight)
    if weight >= limit * share:
        return {**record, "status": "carried"}
    return {**record, "status": "left out",
            "why": f"the job names the mean, but the global after round {round_no} carries the attacker's update "
                   f"with weight {weight:.3f} (its row share {share:.2f}; at least {limit:.0%} of it expected): the "
                   "platform left the verifier's party out of the aggregate, so the attack was never tested"}


def late_attack_job(ctx: Context) -> tuple[JobRun, int] | None:
    """Under the mean only: the clean job's twin whose verifier party turns attacker (scaling x -20) from a round
    drawn with `secrets` among 2..rounds, so a platform that counts the party in the first round and leaves it out
    later is caught at that round (R16B-3). None under a robust aggregator (nothing to check)."""
    clean_robust_job(ctx)  # fixes the aggregator the platform accepted
    if ctx.once("robust_aggregator", dict).get("name") is not None:
        return None

    def make() -> tuple[JobRun, int]:
        from sampan.audit import byzantine as byz

        start = 2 + secrets.randbelow(ROBUST_ROUNDS - 1)
        run = _robust_job(ctx, "robust-late", _on_delta(lambda u, g: byz.scaling(u, factor=-20.0)), from_round=start)
        return run, start

    late: tuple[JobRun, int] = ctx.once("robust_late_job", make)
    return late


def _counted(ctx: Context, runs: list[JobRun]) -> list[dict[str, Any]]:
    """`mean_carries_attacker` on the first round of each attacked job and at the late job's drawn round."""
    out = [mean_carries_attacker(ctx, run) for run in runs]
    late = late_attack_job(ctx)
    if late is not None:
        out.append(mean_carries_attacker(ctx, *late))
    return out


def _left_out(records: list[dict[str, Any]]) -> str | None:
    bad = [r for r in records if r["status"] == "left out"]
    return bad[0]["why"] if bad else None


def _on_delta(attack: Attack) -> Attack:
    """An attack on the update's change (weights - global), turned into the weights the party sends."""
    return lambda weights, g: g + attack(weights - g, g)


def byzantine(ctx: Context) -> Result:
    from sampan.audit import byzantine as byz

    clean, _ = holdout_auc(ctx, clean_robust_job(ctx))
    n, f = len(robust_parties(ctx)), 1
    attacks: dict[str, Attack] = {  # on the change u = weights - global
        "sign_flip": lambda u, g: byz.sign_flip(u, scale=5.0),
        "scaling": lambda u, g: byz.scaling(u, factor=-20.0),
        # ALIE from the attacker's own view: its update and two perturbed copies stand in for the benign spread
        "alie": lambda u, g: byz.alie(np.stack([u, 0.5 * u, 1.5 * u]), n, f, z=3.0),
    }
    aucs: dict[str, float] = {}
    runs: list[JobRun] = []
    for name, attack in attacks.items():
        runs.append(_robust_job(ctx, f"byz-{name}", _on_delta(attack)))
        aucs[name] = holdout_auc(ctx, runs[-1])[0]
    counted = _counted(ctx, runs)
    worst = min(aucs.values())
    drop = clean - worst
    limit = value("byzantine_auc_drop_max")
    message = (f"AUC clean {clean:.4f}; under attack " + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items())
               + f" ({n} parties, 1 malicious)")
    left_out = _left_out(counted)
    return Result("pass" if drop <= limit and left_out is None else "fail",
                  message + (f"; {left_out}" if left_out else ""),
                  figures={"auc_clean": clean, **{f"auc_{k}": v for k, v in aucs.items()}, "worst_drop": drop},
                  evidence={**_robust_evidence(ctx, clean_robust_job(ctx), n), "attacker_counted": counted})


def backdoor(ctx: Context) -> Result:
    """Model replacement (Bagdasaryan et al. 2020): the party submits gamma*(X - G) + G for a backdoored X."""
    from sampan.audit.byzantine import add_trigger, model_replacement_backdoor

    t, cols = ctx.data.table, ctx.data.columns
    parties = robust_parties(ctx)
    own = ctx.data.parts[-1]  # the verifier's party's rows (the last party of the three- and five-party splits)
    X_own, y_own = t.cols(cols)[own], t.y[own]
    trigger_col, trigger_value, target = 0, 6.0, 0
    X_bd = np.vstack([X_own, add_trigger(X_own, trigger_col, trigger_value)])
    y_bd = np.concatenate([y_own, np.full(y_own.size, target)])
    coef, b = fit_lr(X_bd, y_bd.astype(np.float64))
    backdoored = np.append(coef, b)
    gamma = float(sum(p.size for p in ctx.data.parts)) / float(own.size)

    def attack(_weights: np.ndarray, g: np.ndarray) -> np.ndarray:
        if g.size != backdoored.size:
            return _weights
        return np.asarray(model_replacement_backdoor(g, backdoored, n=1, eta=1.0 / gamma))

    run = _robust_job(ctx, "backdoor", attack)
    clean = clean_robust_job(ctx)
    if run.model is None or clean.model is None:
        raise NotApplicable("no model export to measure the backdoor with")
    check_export(ctx, run, "the backdoor job")  # R16-VERDICT-4: the exports must be the federation's models
    check_export(ctx, clean, "the clean robust job")
    refs = honest_references(ctx, clean.spec, _shared_seed(ctx))  # the verifier's own fits (R-LAST-1, REV16-1)
    hold = ctx.data.holdout  # every holdout row, triggered; those all verifier references call bad are counted
    trig = table_data(t, hold, cols, label=False)
    X_trig = add_trigger(t.cols(cols)[hold], trigger_col, trigger_value)
    trig["rows"] = [list(map(float, r)) for r in X_trig]
    ref_pos = {name: linear_scores(m, trig) >= 0.5 for name, m in refs.items()}
    clean_pos = linear_scores(clean.model, trig) >= 0.5
    verdict = judge_backdoor(np.logical_and.reduce(list(ref_pos.values())), clean=~clean_pos,
                             attacked=linear_scores(run.model, trig) < 0.5)
    if verdict.counted < value("backdoor_rows_min"):
        # the counted rows are the verifier's alone (the platform has no say): too few is the data draw, no verdict
        return Result("error", f"the verifier's references call only {verdict.counted} of {hold.size} triggered "
                      f"holdout rows bad (at least {value('backdoor_rows_min'):.0f} needed to judge the attack "
                      "success rate)")
    counted = _counted(ctx, [run])
    left_out = _left_out(counted)
    problems = [p for p in (verdict.problem, left_out) if p]
    return Result("fail" if problems else "pass",
                  verdict.message + f" ({len(parties)} parties, 1 malicious)"
                  + "".join(f"; {p}" for p in problems),
                  figures={**verdict.figures, "holdout_rows": float(hold.size), "gamma": gamma,
                           "honest_disagreement": float((clean_pos != ref_pos["pooled"]).mean())},
                  evidence={"trigger": {"column": cols[trigger_col], "value": trigger_value}, "target_label": target,
                            "attacker_counted": counted,
                            "references": {"five_parties_clean": clean.job_id,
                                           "verifier_fitted": "a pooled LR on the four honest parties' training "
                                                              "rows, and under Krum each one's own model (SGD as "
                                                              f"the job trains, seed {_shared_seed(ctx)}): "
                                                              + ", ".join(refs),
                                           "counted_by": "the verifier-fitted references alone (REV16-1): the "
                                                         "five-party clean job is judged, not trusted",
                                           "rows_each_calls_bad": {"five_parties_clean": int(clean_pos.sum()),
                                                                   **{k: int(v.sum()) for k, v in ref_pos.items()}}},
                            **_robust_evidence(ctx, run, len(parties))})
