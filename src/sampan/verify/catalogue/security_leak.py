"""Security tests of what messages reveal: gradient inversion, membership inference, one-run DP audit with canaries
and the secure-aggregation masking check (what a bad party can do, Byzantine updates and a backdoor, is in
`security_robust`).

The verifier's party (its kit, with a tap) sees its own messages in the clear; the attacks are `sampan.audit`'s.
Weight vectors are [coefficients..., intercept] in the platform's feature order (the drawn columns).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, NotApplicable, Result
from sampan.verify.catalogue.common import horizontal_parties, plane_for, quick_job
from sampan.verify.catalogue.data import HORIZONTAL_PARTIES
from sampan.verify.catalogue.dataplane import qualify_self_reported
from sampan.verify.catalogue.jobs import JobRun, PartySpec, horizontal_spec, run_job
from sampan.verify.datasets import table_data
from sampan.verify.thresholds import value

__all__ = ["grad_inversion", "mia", "mia_verdict", "dp_audit", "dp_audit_verdict", "secagg_masked"]


def _vec(payload: dict[str, np.ndarray], d: int, prefer: tuple[str, ...] = ("weights", "update")) -> np.ndarray | None:
    """The float vector of length ``d`` in a message (by preferred key, else the first that fits)."""
    keys = [k for k in prefer if k in payload] + [k for k in payload if k not in prefer]
    for k in keys:
        a = np.asarray(payload[k])
        if a.dtype.kind == "f" and a.size == d:
            return a.reshape(-1).astype(np.float64)
    return None


def _rounds(plane: Any, d: int) -> list[tuple[int, np.ndarray | None, np.ndarray | None]]:
    """(round, global model received, update sent) per round, as the verifier's party saw them."""
    got: dict[int, np.ndarray] = {}
    sent: dict[int, np.ndarray] = {}
    for m in plane.tap.messages:
        v = _vec(m.payload, d)
        if v is None:
            continue
        if m.direction == "received":
            got.setdefault(m.round, v)
        elif m.kind == "update":
            sent[m.round] = v
    return [(r, got.get(r), sent.get(r)) for r in sorted(set(got) | set(sent))]


def _verifier_job(ctx: Context, rows: dict[str, Any], spec_extra: dict[str, Any], prefix: str,
                  hook: Callable[[int, np.ndarray], np.ndarray] | None = None) -> JobRun:
    """Two platform parties with their rows plus the verifier's party holding ``rows``."""
    parties = horizontal_parties(ctx, verifier=False)[:2] + [PartySpec(HORIZONTAL_PARTIES[2], "data_owner", rows,
                                                                       "verifier")]
    plane = plane_for(ctx, update_hook=hook)
    spec = horizontal_spec(ctx, [p.name for p in parties], **spec_extra)
    return run_job(ctx, spec, parties, prefix=prefix, plane=plane)


def grad_inversion(ctx: Context) -> Result:
    planted_rows = ctx.data.parts[2][:3]
    run = _verifier_job(ctx, table_data(ctx.data.table, planted_rows, ctx.data.columns),
                        {"rounds": 4, "batch_size": 1_000_000, "local_epochs": 1, "learning_rate": 0.5}, "inversion")
    return qualify_self_reported(_inversion_verdict(ctx, run, planted_rows), run.plane)


def _inversion_verdict(ctx: Context, run: JobRun, planted_rows: np.ndarray) -> Result:
    from sampan.audit.gradient_inversion import DeltaObservation, probe_fedavg_delta

    t = ctx.data.table
    d = len(ctx.data.columns) + 1
    obs = [DeltaObservation(g[:-1], float(g[-1]), s[:-1] - g[:-1], float(s[-1] - g[-1]))
           for _, g, s in _rounds(run.plane, d) if g is not None and s is not None]
    if not obs:
        return Result("pass", "no message of the party carried a model-shaped vector in the clear",
                      evidence={"kinds": sorted({m.kind for m in run.plane.tap.messages})})
    planted = t.cols(ctx.data.columns)[planted_rows]
    labels = t.y[planted_rows].astype(np.float64)
    # R16-VERDICT-5: the step size is fitted, not assumed: the kit takes its learning rate from the platform's task
    # view, and a platform could tell it a larger one (a clear update, only scaled). Inversion is scale-free, so a
    # sent vector is a plain update when it is (close to) a multiple of the full-batch gradient of the party's
    # rows at the model it received; the rule's limit is `inversion_plain_residual_max` (thresholds.py).
    step, residual, round_residual = _fit_step(obs, planted, labels)
    limit_plain = value("inversion_plain_residual_max")
    biggest = max(float(np.abs(np.append(o.delta_w, o.delta_b)).max()) for o in obs)
    if not np.isfinite(residual) or residual > limit_plain or step == 0.0:
        return Result("pass", f"the party's sent vectors are not plain updates (relative residual {residual:.3g} "
                      f"against a scaled gradient step, limit {limit_plain}): nothing to invert",
                      figures={"max_abs_delta": biggest if np.isfinite(biggest) else None,
                               "plain_residual": residual if np.isfinite(residual) else None,
                               "fitted_step": step},
                      evidence={"rounds_observed": len(obs)})
    if step < 0:  # an ascent step carries the same gradient: invert its negation
        obs = [DeltaObservation(o.w_start, o.b_start, -o.delta_w, -o.delta_b) for o in obs]
    result = probe_fedavg_delta(obs, planted, labels, lr=abs(step), local_steps=1,
                                restarts=2, rng=np.random.default_rng(secrets.randbits(64)))
    best = float(np.nanmax(result.cosine)) if result.cosine else 0.0
    limit = value("inversion_cosine_max")
    # The probe's fit is a non-convex search with random restarts: it can miss an invertible update. A sent vector
    # that IS a scaled full-batch gradient of the party's rows (residual ~0) is the plain update whatever the probe
    # found this time, so a miss there is not a pass (the repeated loud-step runs missed 2 in 5).
    # per round too: the first round starts from the initial model, where the gradient is computed the same in
    # any precision; later rounds of a loud step start from saturated models whose rounding moves the joint fit
    exact = min(residual, round_residual) <= value("inversion_exact_step_max")
    recovered = f"{result.n_recovered}/{result.n_planted} planted records recovered; best cosine {best:.3f}"
    if best < limit and exact:
        recovered += (f"; but the sent vectors are the party's plain full-batch gradient step (relative residual "
                      f"{min(residual, round_residual):.2g} against a scaled gradient of its rows), which inverts: "
                      "this probe's fit "
                      "missed it")
    return Result("fail" if best >= limit or exact else "pass", recovered,
                  figures={"best_cosine": best, "recovery_rate": result.recovery_rate,
                           "fit_residual": result.fit_residual, "fitted_step": step, "plain_residual": residual,
                           "plain_residual_best_round": round_residual},
                  evidence={"inversion": result.to_dict(), "rounds_observed": len(obs),
                            "threat": "curious server reading the party's update"})


def _fit_step(obs: list[Any], planted: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """Least-squares step c with delta ~ -c x (full-batch logistic gradient of the planted rows at the received
    model), over all rounds; the relative residual |delta + c G| / |delta| (0: a plain step, ~1: masked); and the
    smallest such residual of one round with its own fitted step (a masked or noised round stays near 1)."""
    X1 = np.c_[planted, np.ones(planted.shape[0])]
    dots, norms, sent = 0.0, 0.0, 0.0
    pairs = []
    for o in obs:
        w = np.append(np.asarray(o.w_start, dtype=np.float64), float(o.b_start))
        d = np.append(np.asarray(o.delta_w, dtype=np.float64), float(o.delta_b))
        p = 1.0 / (1.0 + np.exp(-np.clip(X1 @ w, -500, 500)))
        g = X1.T @ (p - labels) / labels.size
        pairs.append((d, g))
        dots += float(d @ g)
        norms += float(g @ g)
        sent += float(d @ d)
    if not (np.isfinite(dots) and np.isfinite(norms) and np.isfinite(sent)) or norms == 0.0 or sent == 0.0:
        return 0.0, float("inf") if not np.isfinite(sent) else 1.0, 1.0
    step = -dots / norms
    residual = float(np.sqrt(sum(float(np.sum((d + step * g) ** 2)) for d, g in pairs) / sent))
    per_round = [float(np.linalg.norm(d + (-(d @ g) / (g @ g)) * g) / np.linalg.norm(d))
                 for d, g in pairs if np.all(np.isfinite(d)) and np.all(np.isfinite(g)) and g @ g > 0 and d @ d > 0]
    return float(step), residual, min(per_round, default=1.0)


def _dp_spec(ctx: Context) -> dict[str, Any] | None:
    claim = ctx.claims.get("dp")
    if not claim or "dp" not in ctx.capabilities:
        return None
    return {"epsilon": float(claim["epsilon"]), "delta": float(claim.get("delta", 1e-5)), "clip": 1.0}


def mia(ctx: Context) -> Result:
    """Membership of the canary rows (see `canaries`): members = included canaries, non-members = excluded ones,
    score = (2y - 1) x the change of the canary column's weight. About m/2 = 240 non-members cannot resolve an FPR
    of 0.1% (that needs 1,000): the TPR is reported at the lowest resolvable FPR, 1 / non-members, and said so."""
    from sampan.verify.catalogue.canaries import canary_job

    dp = _dp_spec(ctx)
    canary = canary_job(ctx, dp)
    if canary.run.model is None:
        raise NotApplicable("no model export to score the canaries with")
    return mia_verdict(canary, dp)


def mia_verdict(canary: Any, dp: dict[str, Any] | None) -> Result:
    """S-MIA's judgement of a canary job against the claimed ``dp`` (a negative control passes a DP-off job)."""
    from sampan.audit.membership_fpr import membership_at_fpr

    inc = canary.plan.included
    members, nonmembers = canary.scores[inc], canary.scores[~inc]
    fpr = max(0.001, 1.0 / max(1, nonmembers.size))
    claimed = dp["epsilon"] if dp else None
    result = membership_at_fpr(members, nonmembers, fpr=fpr, delta=dp["delta"] if dp else 1e-5,
                               claimed_epsilon=claimed)
    eps_lo = float(result.epsilon[1])
    fails = result.tpr > value("mia_tpr_at_low_fpr_max")
    if claimed is not None and eps_lo > claimed + value("eps_lower_bound_slack"):
        fails = True
    resolved = "0.1%" if fpr <= 0.001 else f"{fpr:.2%} (the lowest FPR {nonmembers.size} non-members resolve)"
    return Result("fail" if fails else "pass",
                  f"TPR {result.tpr:.3f} at FPR {resolved}; epsilon lower bound {eps_lo:.2f}"
                  + (f" vs claimed {claimed}" if claimed is not None else " (no DP claimed)"),
                  figures={"tpr": result.tpr, "fpr": result.fpr, "target_fpr": fpr, "eps_lower": eps_lo,
                           "eps_max_provable": result.eps_max_provable, "members": float(result.n_members),
                           "nonmembers": float(result.n_nonmembers)},
                  evidence={"attack": result.to_dict(), "dp_spec": dp, "canaries": len(canary.plan.names),
                            "start_model": canary.start_from, "job_id": canary.run.job_id,
                            "score": "(2y - 1) x change of the canary column's weight (exported model - start)",
                            "fpr_note": "FPR 0.1% needs >= 1,000 non-members; the API's 512-column limit allows "
                                        f"{len(canary.plan.names)} canaries, so the TPR is at FPR {fpr:.2%}"})


def dp_audit(ctx: Context) -> Result:
    """Steinke et al. 2023 on the canary columns (see `canaries`): guess "included" for the k highest scores and
    "excluded" for the k lowest (k = m / 6, fixed before the job), bound epsilon at 95%."""
    from sampan.verify.catalogue.canaries import canary_job

    dp = _dp_spec(ctx)
    if dp is None:
        raise NotApplicable("the platform claims no DP (or cannot run a DP job)")
    canary = canary_job(ctx, dp)
    if canary.run.model is None:
        return Result("error", "no model export to score the canaries with")
    return dp_audit_verdict(canary, dp)


def dp_audit_verdict(canary: Any, dp: dict[str, Any]) -> Result:
    """S-DP-AUDIT-ONE-RUN's judgement of a canary job against the claimed ``dp``."""
    from sampan.audit.one_run_audit import audit_from_scores

    m = len(canary.plan.names)
    k = max(1, m // 6)
    result = audit_from_scores(canary.scores, canary.plan.included, k, k, delta=dp["delta"],
                               claimed_epsilon=dp["epsilon"])
    refuted = result.eps_lower > dp["epsilon"] + value("eps_lower_bound_slack")
    return Result("fail" if refuted else "pass",
                  f"{result.correct}/{result.guesses} canary guesses right; epsilon lower bound "
                  f"{result.eps_lower:.2f} vs claimed {dp['epsilon']} (this audit can show at most "
                  f"{result.eps_max_provable:.2f})",
                  figures={"eps_lower": result.eps_lower, "claimed_epsilon": dp["epsilon"],
                           "eps_max_provable": result.eps_max_provable,
                           "correct": float(result.correct), "guesses": float(result.guesses)},
                  evidence={"audit": result.to_dict(), "canaries": m, "start_model": canary.start_from,
                            "job_id": canary.run.job_id, "canary_plan": canary.plan.record(),
                            "score": "(2y - 1) x change of the canary column's weight (exported model - start)"})


ASSUMED_FRAC_BITS = 32  # the fixed-point scale 2^f assumed for a ring payload whose kit does not tap it


def _ring_pairs(plane: Any, d: int) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """(round, sent vector, clear update or None) per round of the party's update messages."""
    clear_msgs = {m.round: m for m in plane.tap.of("sent", "update_clear")}
    out = []
    for m in plane.tap.of("sent", "update"):
        payload = {k: np.asarray(v) for k, v in m.payload.items()}
        clear_payload = clear_msgs[m.round].payload if m.round in clear_msgs else payload
        clear = _vec(dict(clear_payload), d, prefer=("update", "weights"))
        ring = next((payload[k] for k in ("masked_update", *payload) if k in payload
                     and payload[k].dtype.kind in "iu" and payload[k].size == d), None)
        sent = ring if ring is not None else _vec(payload, d, prefer=("update", "weights"))
        if sent is not None:
            out.append((m.round, sent.reshape(-1), clear))
    return out


def secagg_masked(ctx: Context) -> Result:
    """The mask is computed, not guessed: mask = sent - encode(clear) mod 2^bits per round (the clear update is the
    kit's ``update_clear`` tap), and `is_masked` tests every bit of it for uniformity, zero coordinates and reuse
    across rounds (rounds x values). A float payload is never masked. In-process, both come from the platform's own
    process calling the tap: the outcome says "self-reported" (R16-VERDICT-8)."""
    run = quick_job(ctx)
    if run.plane is None:
        raise NotApplicable("the verifier ran no party of the quick job")
    return qualify_self_reported(_masking_verdict(ctx, run), run.plane)


def _masking_verdict(ctx: Context, run: JobRun) -> Result:
    from sampan.audit.secure_agg_checks import is_masked

    d = len(ctx.data.columns) + 1
    pairs = [p for p in _ring_pairs(run.plane, d) if p[2] is not None]
    if not pairs:
        return Result("error", "the party's update messages carry no vector of the model's size",
                      evidence={"kinds": sorted({m.kind for m in run.plane.tap.messages})})
    ring = all(p[1].dtype.kind in "iu" for p in pairs)
    sent = np.stack([p[1] for p in pairs])
    clear = np.stack([np.asarray(p[2], dtype=np.float64) for p in pairs])
    if ring:
        bits = int(sent.dtype.itemsize * 8)
        result = is_masked(sent.astype(np.uint64), clear, ring_bits=bits, scale=2.0**ASSUMED_FRAC_BITS,
                           alpha=value("masked_alpha"))
    else:
        bits = None
        result = is_masked(sent.astype(np.float64), clear, alpha=value("masked_alpha"))
    evidence = {"masking": result.to_dict(), "rounds": len(pairs), "ring_payload": ring, "ring_bits": bits,
                "scale": f"2^{ASSUMED_FRAC_BITS} assumed" if ring else None,
                "why_scale_is_safe": "a genuine mask is uniform whatever scale is assumed; a payload that is only "
                "an encoding of the update leaves a mask of small encoding differences, which the bit tests "
                "reject, so a wrong scale cannot make a clear payload pass"}
    corr = abs(float(result.pearson_r)) if result.pearson_r == result.pearson_r else 0.0
    masked = bool(result.masked)
    figures: dict[str, float | None] = {"pearson_r": corr, "equal_fraction": result.equal_fraction,
                                       "values": float(result.n)}
    if not ctx.claims.get("secure_aggregation"):
        return Result("pass" if masked else "skip",
                      "no secure aggregation claimed; updates are " + ("masked" if masked else "in the clear"),
                      figures=figures, evidence=evidence)
    why = "; ".join(result.notes[:3])
    return Result("pass" if masked else "fail",
                  ("masked" if masked else "NOT masked") + f" over {len(pairs)} rounds x {d} values "
                  f"({'ring Z_2^' + str(bits) if ring else 'float payload'}): zero mask coordinates "
                  f"{result.equal_fraction:.1%}, |r| = {corr:.3f}" + (f"; {why}" if why and not masked else ""),
                  figures=figures, evidence=evidence)
