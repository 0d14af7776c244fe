"""S-DP-REPEAT: an ordinary DP job, run twice on the same input, must not export the same model twice (R16B-7).

Why: S-MIA and S-DP-AUDIT-ONE-RUN measure the platform's mechanism in the canary job, which a platform can recognise
(about 500 ``attr_<6 hex>`` columns, unlike every other job): one that adds noise only in a job of that shape passes
both audits while its other DP jobs train in the clear (`DpOnlyWhenAudited` in the review fakes). This test looks at a
job of the ordinary shape instead: P-PRIVACY-COST's DP job (the three platform-held parties, the ~30 drawn columns
under their own names, 5 rounds, no secure aggregation, ``dp`` as claimed), submitted twice with the same TaskSpec,
seed included, and the same data, both started before either is waited for.

What is sound, and what is not (the rule is deliberately the minimum):
- Sound: a mechanism whose output is a function of its public inputs (the data and the TaskSpec, whose seed the
  submitter chose) is epsilon-DP for a finite epsilon only if that output is the same for neighbouring data sets;
  so every DP mechanism that trains on the data must draw randomness the TaskSpec does not fix, and any continuous
  noise (Gaussian, Laplace, a fine discrete Gaussian) makes two exports coincide with probability ~0. Two exports
  equal to within `dp_repeat_identical_tol` therefore mean no noise in this job: fail. (A DP mechanism that mostly
  publishes one fixed, data-independent model could repeat itself; such a model fails the F-AUC tests.) Sampan draws
  its DP noise from the OS CSPRNG (`sampan.privacy.randomness.secure_generator`), never from the job seed, so its two
  runs differ.
- Not sound, so not a pass rule: a floor on how much the two exports must differ. epsilon-DP bounds how the output
  distribution moves between neighbouring data sets, not its spread on one: the noise a mechanism needs scales with
  its sensitivity, which the platform sets (what it clips and to what, the learning rate, sampling that amplifies
  privacy, how the budget is split over rounds, noise per round or on the output only). A floor computed for one
  mechanism (e.g. the Gaussian mechanism on a mean of updates clipped to ``clip``, no amplification) would fail
  an honest platform running another. The difference is reported (figures), not judged.
What a platform still gets (catalogue.md, R16B-7): one that perturbs a job only when it repeats an earlier one (same
data, same seed), or adds a jitter just above the tolerance to every DP job, passes. So does one that adds no noise
but whose training is not reproducible from the seed (REV16-2: unseeded shuffles, thread timing, non-deterministic
kernels): a pass means "the DP job is not a deterministic function of the data and the TaskSpec", randomness, not
noise. Twin non-DP jobs do not close this: such a platform may ignore the seed in DP jobs only (the REV16-2 fake does),
and then its non-DP twins agree while its DP twins differ by the shuffle, as a platform with honest small noise would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, NotApplicable, Result, Test
from sampan.verify.catalogue.common import horizontal_parties
from sampan.verify.catalogue.jobs import JobRun, PartySpec, complete_job, horizontal_spec, start_job
from sampan.verify.thresholds import value

__all__ = ["DP_REPEAT", "ROUNDS", "dp_repeat", "export_vector"]

ROUNDS = 5  # P-PRIVACY-COST's DP job


def _claimed_dp(ctx: Context) -> dict[str, Any]:
    """The DP block of the job: the claimed (epsilon, delta), clip 1 (as S-MIA's and P-PRIVACY-COST's DP jobs)."""
    claim = ctx.claims.get("dp")
    if not claim or "dp" not in ctx.capabilities:
        raise NotApplicable("the platform claims no DP (or cannot run a DP job)")
    return {"epsilon": float(claim["epsilon"]), "delta": float(claim.get("delta", 1e-5)), "clip": 1.0}


def export_vector(model: dict[str, Any] | None, features: list[str]) -> np.ndarray | None:
    """[coefficients in ``features`` order..., intercept] of an exported linear model, or None without one."""
    if not model or not model.get("features"):
        return None
    try:
        order = [list(model["features"]).index(c) for c in features]
    except ValueError:
        return None
    return np.append(np.asarray(model["coefficients"], dtype=np.float64)[order], float(model["intercept"]))


def _twins(ctx: Context, spec: dict[str, Any], parties: list[PartySpec]) -> tuple[JobRun, JobRun]:
    """Both jobs started before either is waited for (neither is a repeat of a finished job), then both waited."""
    first = start_job(ctx, spec, parties, prefix="dp-repeat")
    try:
        second = start_job(ctx, dict(spec), parties, prefix="dp-repeat")
    except BaseException:
        complete_job(ctx, first, require_success=False)
        raise
    return complete_job(ctx, first), complete_job(ctx, second)


def dp_repeat(ctx: Context) -> Result:
    dp = _claimed_dp(ctx)
    parties = horizontal_parties(ctx, verifier=False)
    spec = horizontal_spec(ctx, [p.name for p in parties], rounds=ROUNDS, secure_aggregation=False, dp=dp)
    try:
        runs = _twins(ctx, spec, parties)
    except NotApplicable:
        if "secure_aggregation" not in ctx.capabilities:
            raise
        spec["secure_aggregation"] = True  # a platform may offer DP only under secure aggregation
        runs = _twins(ctx, spec, parties)
    features = list(ctx.data.columns)
    a, b = (export_vector(r.model, features) for r in runs)
    if a is None or b is None:
        raise NotApplicable("no model export (over the drawn columns) to compare the two DP runs with")
    diff = float(np.max(np.abs(a - b)))
    size = max(1.0, float(np.max(np.abs(a))))
    tol = value("dp_repeat_identical_tol")
    relative = float(np.linalg.norm(a - b) / max(float(np.linalg.norm(a)), 1e-12))
    evidence = {"job_ids": [r.job_id for r in runs], "seed": spec["seed"], "dp_spec": dp, "rounds": ROUNDS,
                "secure_aggregation": spec["secure_aggregation"], "parties": [p.name for p in parties],
                "judged_on": "the two model exports (coefficients over the drawn columns, intercept)",
                "not_judged": "how much they differ: no noise floor holds for every epsilon-DP mechanism (see "
                              "catalogue.md, R16B-7); the difference is reported"}
    figures: dict[str, float | None] = {"max_abs_difference": diff, "relative_difference": relative,
                                        "tolerance": tol * size}
    if diff <= tol * size:
        return Result("fail", f"two runs of the same {ROUNDS}-round DP job (epsilon {dp['epsilon']}, same data, same "
                      f"TaskSpec seed) exported the same model (max |difference| {diff:.3g} <= {tol * size:.3g}): "
                      "the same inputs gave the same model, so this ordinary DP job drew no noise that its "
                      "TaskSpec does not fix: it was not trained with DP", figures=figures, evidence=evidence)
    return Result("pass", f"two runs of the same {ROUNDS}-round DP job (same data, same TaskSpec seed) exported "
                  f"different models (max |difference| {diff:.3g}, relative {relative:.3g}): the DP job is not a "
                  "deterministic function of the data and the TaskSpec (randomness, not shown to be DP noise: a "
                  "platform whose training is not reproducible from the seed passes without noise; how much noise is "
                  "not judged: no floor is sound for every mechanism)", figures=figures, evidence=evidence)


DP_REPEAT: list[Test] = [
    Test("S-DP-REPEAT", "An ordinary DP job is randomised (run twice, two models)", "security",
         frozenset({"standard", "full"}), dp_repeat, requires=("horizontal", "dp"), claim="dp",
         inputs=f"P-PRIVACY-COST's DP job ({ROUNDS} rounds, three platform-held parties, the drawn columns, dp as "
         "claimed, no secure aggregation) submitted twice with one TaskSpec (one seed) and the same data",
         pass_rule="the two exports differ by more than the tolerance (identical exports: no DP noise in this job)",
         thresholds=("dp_repeat_identical_tol",), timeout_s=600),
]
