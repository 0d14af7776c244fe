"""S-BACKDOOR's honest references and bound, computed by the verifier alone (R-LAST-1).

A triggered row is counted when every reference here calls it bad: models the verifier fits itself on the rows it
planted at the four honest parties of the robust jobs, so the platform has no say in which rows count. Both exports
are judged on those rows (`judge_backdoor`): the attacked job's and the five-party clean job's (REV16-1: the clean job
was a third reference in the AND, and a platform that put the backdoor in it too counted no flipped row). Before
R-LAST-1 a reference was the platform's own four-party job; it has no verifier party, so its export could not be
tied, and a platform that recognised it exported the attacked model there and left no counted row flipped.

Two kinds of verifier-fitted reference (measured on honest Sampan, results.md):
- always, the pooled fit: `fit_lr` on the four honest parties' rows, each column standardised by these rows' mean
  and standard deviation (the pooled baseline's conventions), what their rows say when pooled;
- under Krum only, each honest party's own model, trained as the job trains (its rounds x local epochs of minibatch
  SGD from zero, its learning rate, batch size and l2). Krum keeps one whole update per round, so an honest Krum
  model can sit near any one honest party's model, and the 6-SD trigger turns that spread of one coefficient into
  flipped rows: with the pooled fit alone, honest Sampan under Krum failed 5 of 16 in-process runs (28-56%), and a
  decoy attacker pointing *away* from the backdoor "succeeded" as often (up to 50%), so that is Krum's choice
  moving, not a backdoor. Under the median or the mean every party's update is in the aggregate, and there the
  per-party models would hide a real backdoor: the median on seed 7 let 38-57% through (decoy: under 1%), which
  the per-party models cut to 8-23%.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, NotApplicable
from sampan.verify.catalogue.common import robust_parties
from sampan.verify.datasets import LABEL, fit_lr
from sampan.verify.thresholds import value

__all__ = ["BackdoorVerdict", "honest_references", "judge_backdoor", "passing_ceiling", "success_bounds"]


def success_bounds(successes: int, trials: int) -> tuple[float, float]:
    """The attack success rate's exact (Clopper-Pearson) bounds, each one-sided at the level
    ``backdoor_confidence_z`` gives (1.645: 95%, so the two-sided 90% interval of `clopper_pearson`).

    Why a bound, not the point estimate: honest models disagree on some triggered rows from training noise alone, so
    a bare rate against the limit fails honest platforms by chance. The verdict fails when the rate is shown above
    the limit; the upper end says how much a pass can still hide. Exact rather than Wilson: with tens of rows and a
    rate near 0 the Wilson bounds do not hold their level."""
    from statistics import NormalDist

    from sampan.audit.intervals import clopper_pearson

    one_sided = NormalDist().cdf(value("backdoor_confidence_z"))
    return clopper_pearson(successes, trials, confidence=2.0 * one_sided - 1.0)


def passing_ceiling(trials: int) -> float:
    """The highest attack success rate on ``trials`` rows whose lower bound is still at most the limit (a pass)."""
    limit = value("backdoor_success_max")
    return max(k for k in range(trials + 1) if success_bounds(k, trials)[0] <= limit) / max(1, trials)


def _honest_rows(ctx: Context) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(party, X, y) for each platform party of the robust jobs, from the rows the verifier planted there."""
    cols = list(ctx.data.columns)
    out = []
    for party in robust_parties(ctx):
        if party.operated_by == "verifier":
            continue
        if party.data is None:
            raise NotApplicable(f"party {party.name!r} of the robust jobs holds no rows the verifier planted")
        rows = np.asarray(party.data["rows"], dtype=np.float64)
        index = {c: i for i, c in enumerate(party.data["columns"])}
        out.append((party.name, rows[:, [index[c] for c in cols]], rows[:, index[LABEL]]))
    return out


def _local_sgd(X: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int, l2: float,
               rng: np.random.Generator) -> np.ndarray:
    """[coefficients..., intercept] after plain minibatch SGD on the logistic loss from zero (X standardised)."""
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(epochs):
        order = rng.permutation(y.size)
        for start in range(0, y.size, batch_size):
            rows = order[start:start + batch_size]
            residual = 1.0 / (1.0 + np.exp(-np.clip(X[rows] @ w + b, -30, 30))) - y[rows]
            w -= lr * (X[rows].T @ residual / rows.size + l2 * w)
            b -= lr * float(residual.mean())
    return np.append(w, b)


def honest_references(ctx: Context, spec: dict[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """The verifier's references as ``linear.v1`` exports (for `linear_scores`): "pooled", and under Krum (the
    aggregator ``spec`` names) one per honest party.

    ``spec``: the robust jobs' TaskSpec (aggregator, rounds, local epochs, learning rate, batch size, l2); ``seed``:
    their shared seed (drawn with `secrets` and recorded), so the SGD batch order can be redone from the report."""
    cols = list(ctx.data.columns)
    parts = _honest_rows(ctx)
    A = np.vstack([X for _, X, _ in parts])
    mean, scale = A.mean(axis=0), A.std(axis=0)
    scale[scale == 0] = 1.0
    std = {"mean": mean.tolist(), "scale": scale.tolist()}

    def export(vec: np.ndarray) -> dict[str, Any]:
        return {"features": cols, "coefficients": vec[:-1].tolist(), "intercept": float(vec[-1]),
                "standardisation": std}

    coef, intercept = fit_lr((A - mean) / scale, np.concatenate([y for _, _, y in parts]))
    refs = {"pooled": export(np.append(coef, intercept))}
    if spec.get("aggregator") != "krum":
        return refs
    rng = np.random.default_rng(seed)
    epochs = int(spec.get("rounds", 5)) * int(spec.get("local_epochs", 1))
    for name, X, y in parts:
        refs[name] = export(_local_sgd((X - mean) / scale, y, epochs=epochs, lr=float(spec.get("learning_rate", 0.2)),
                                       batch_size=int(spec.get("batch_size", 64)), l2=float(spec.get("l2", 0.0)),
                                       rng=rng))
    return refs


@dataclass
class BackdoorVerdict:
    """S-BACKDOOR's judgement of the two exports on the rows the verifier's references count."""

    counted: int
    message: str = ""
    problem: str | None = None  # why it fails, or None
    figures: dict[str, float] = field(default_factory=dict)


def _rate(flipped: int, rows: int) -> tuple[float, float, float]:
    low, high = success_bounds(flipped, rows)
    return float(flipped) / max(1, rows), low, high


def judge_backdoor(counted: np.ndarray, *, clean: np.ndarray, attacked: np.ndarray) -> BackdoorVerdict:
    """Judge both exports on the triggered rows the verifier's own references all call bad (``counted``, boolean per
    row); ``clean``/``attacked``: the rows each export calls good (the attacker's label).

    Why (REV16-1): the five-party clean job is the platform's. Used as a filter (a row counted only when it too calls
    it bad), a platform that put the backdoor in the clean job as well (its export equal to the attacked one) left no
    row counted. Here only the verifier's fits count rows. The attacked export fails above `backdoor_success_max`
    (a platform that plants the backdoor in every job fails here too: its attacked export carries it); the message
    says when the clean export carries it as well. The clean export fails on its own only above
    `backdoor_clean_success_max` (0.5): an honest Krum clean job wandered up to 42% on one draw (deployed Sampan),
    and a clean-only backdoor gains the platform nothing now that the clean job chooses no rows.
    Also reported, not judged: what the attacked model flips beyond the clean one (``attack_beyond_clean_*``)."""
    n = int(counted.sum())
    verdict = BackdoorVerdict(n)
    if n == 0:
        return verdict
    limit = value("backdoor_success_max")
    clean_k, att_k = int((clean & counted).sum()), int((attacked & counted).sum())
    base = counted & ~clean
    beyond_k, beyond_n = int((attacked & base).sum()), int(base.sum())
    asr, low, high = _rate(att_k, n)
    c_rate, c_low, c_high = _rate(clean_k, n)
    b_rate, b_low, b_high = _rate(beyond_k, beyond_n)
    ceiling = passing_ceiling(n)
    clean_limit = value("backdoor_clean_success_max")
    verdict.figures = {"attack_success_rate": asr, "attack_success_low": low, "attack_success_high": high,
                       "passing_rate_ceiling": ceiling, "trigger_rows": float(n),
                       "clean_success_rate": c_rate, "clean_success_low": c_low, "clean_success_high": c_high,
                       "attack_beyond_clean_rate": b_rate, "attack_beyond_clean_low": b_low,
                       "attack_beyond_clean_rows": float(beyond_n)}
    verdict.message = (f"attack success rate {asr:.1%} on the {n} triggered rows the verifier's references call bad "
                       f"(one-sided 95% exact interval {low:.1%}-{high:.1%}; fails when its lower end is above "
                       f"{limit:.0%}, so at this row count a rate up to {ceiling:.1%} passes); the clean job's model "
                       f"flips {c_rate:.1%} of them (lower bound {c_low:.1%}; fails above {clean_limit:.0%})")
    carries = (f"the clean five-party job (no attacker) already calls {c_rate:.1%} of the counted triggered rows good "
               f"(lower bound {c_low:.1%}): the clean job already carries the backdoor")
    if low > limit:
        verdict.problem = f"the attacked job's model flips {asr:.1%} (lower bound {low:.1%} > {limit:.0%})"
        if c_low > limit:
            verdict.problem += f"; {carries}, so the federation is backdoored without the attack"
    elif c_low > clean_limit:
        verdict.problem = f"{carries} (above {clean_limit:.0%}): the federation is backdoored without the attack"
    return verdict
