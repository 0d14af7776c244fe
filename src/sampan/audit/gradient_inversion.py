"""Gradient-inversion probes for logistic regression: recover planted records from a party's captured updates.

Why: an FL platform that sends a party's update in the clear (no secure aggregation) lets the server read
that party's rows back out of it. The verifier runs one party, plants known records in its data, captures
what the party sends (the kit's tap, before encryption; or the bytes the server receives) and tries to
rebuild the planted records. Recovery proves the leak; failure on a masked payload is reported as failure.
For the probe round the verifier's party should hold only the planted records (one per batch for the analytic
probe, a few for the optimisation probe): the probe reads what that party's update reveals, not an average
over rows it does not know.

Threat model: an honest-but-curious server that sees one party's update for a round (and knows the global
model it sent, the learning rate and the number of local steps, as every FedAvg server does). The planted
records are used only to *score* a reconstruction, never to produce one.

Probes
- ``invert_lr_gradient`` (analytic). For one record, grad_w = (p − y)·x (+ l2·w) and grad_b = (p − y), so
  x = (grad_w − l2·w) / grad_b exactly. The same ratio holds for a weight delta of one record over any number
  of plain gradient steps without l2 (every step moves along (x, 1)). For a batch it gives a weighted average
  of the batch's records: the probe then recovers a record only if one dominates.
- ``probe_fedavg_delta`` (optimisation). Simulates the party's local training (full-batch gradient descent on
  k unknown records with the planted labels, l2, lr, local steps) and fits the records with
  scipy.optimize.least_squares so the simulated deltas match the observed ones over R rounds (k·d unknowns,
  R·(d + 1) equations: several rounds are needed for several records). Initialised from the analytic ratio
  and random restarts. A fit that cannot explain the observations (relative residual above `fit_tolerance`,
  e.g. on masked payloads) is reported as such. It assumes the mean (not summed) loss gradient and one step per
  local epoch when the party's rows fit one batch; a platform that standardises features gives back records in
  its standardised space (undo with the platform's exported mean/scale).

Quality per planted record: each planted record is matched one-to-one with a reconstruction (Hungarian
assignment on relative error; R16-AUDIT-6: one reconstruction no longer "recovers" several records), then
relative error ‖x̂ − x‖/‖x‖ and cosine similarity. Graded verdict (R16-AUDIT-5): `exact` = relative error ≤
`tolerance`; `recovered` = exact, or cosine ≥ `min_cosine` (default 0.9: the record's direction is read back,
e.g. through small non-DP noise). `success` = at least one record recovered at the graded level. With many
candidate rows in few dimensions a random row reaches the cosine by chance: `chance_cosine` gives that
probability for one random direction and a note warns when the candidates make a chance match likely. The
recovery rate has a Clopper–Pearson interval over the planted records of this one run, treated as independent
trials (they share a model and a round: read it as a heuristic spread, not an exact level).

Bounds (R16-AUDIT-7): `probe_fedavg_delta` refuses more than `max_unknowns` (k·d) unknowns or a Jacobian above
`_MAX_JACOBIAN_BYTES`, caps the function evaluations, and stops at `time_limit_s`, keeping the best fit so far
and saying it did not converge.

May import: numpy, scipy, sampan.errors.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special
from scipy.optimize import least_squares, linear_sum_assignment
from scipy.special import expit

from sampan.audit.intervals import (
    as_matrix,
    as_vector,
    check_confidence,
    check_count,
    check_number,
    clopper_pearson,
    json_float,
)
from sampan.errors import DataError

__all__ = ["DeltaObservation", "InversionResult", "invert_lr_gradient", "probe_fedavg_delta",
           "reconstruction_quality"]

_MAX_JACOBIAN_BYTES = 512 * 1024**2  # the optimisation probe's dense Jacobian blocks, all together
_MAX_NFEV = 5000  # function evaluations per start (the time limit bounds the whole probe as well)
_CHANCE_MAX = 0.01  # expected chance cosine matches above this: the cosine criterion is not used

_HUGE_COST = 1e300  # stands in for an overflowed distance in the matching


@dataclass(frozen=True)
class InversionResult:
    """How well the planted records were rebuilt; lists are per planted record, in the planted order."""

    method: str  # "analytic" | "optimisation" | "given"
    n_planted: int
    n_recovered: int  # graded: exact, or cosine ≥ min_cosine (see module doc)
    recovery_rate: float
    recovery_ci: tuple[float, float]  # Clopper–Pearson over the planted records of this run
    relative_error: list[float]
    cosine: list[float]
    recovered: list[bool]
    tolerance: float
    confidence: float
    reconstructions: list[list[float]]
    fit_residual: float | None = None  # optimisation: ‖simulated − observed‖ / ‖observed‖
    notes: list[str] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)  # relative error ≤ tolerance
    n_exact: int = 0
    min_cosine: float = 0.9
    n_candidates: int = 0  # finite reconstruction rows offered for the one-to-one matching
    chance_cosine: float | None = None  # P[a random direction reaches min_cosine with one record]
    converged: bool | None = None  # optimisation: the fit ended by its tolerances (not by a cap or the clock)

    @property
    def success(self) -> bool:
        """True when at least one planted record was recovered at the graded level (the leak is shown)."""
        return self.n_recovered > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures for a report (the reconstructions included)."""
        out = {k: v for k, v in self.__dict__.items()}
        out["relative_error"] = [json_float(x) for x in self.relative_error]
        out["cosine"] = [json_float(x) for x in self.cosine]
        out["recovery_ci"] = list(self.recovery_ci)
        out["fit_residual"] = None if self.fit_residual is None else json_float(self.fit_residual)
        out["chance_cosine"] = None if self.chance_cosine is None else json_float(self.chance_cosine)
        out["reconstructions"] = [[json_float(x) for x in row] for row in self.reconstructions]
        out["success"] = self.success
        return out


def _chance_cosine(d: int, c: float) -> float:
    """P[cos(u, x) ≥ c] for a uniformly random direction u in d dimensions (regularised incomplete beta)."""
    if d == 1:
        return 0.5
    return 0.5 * float(special.betainc((d - 1) / 2.0, 0.5, 1.0 - c * c))


def reconstruction_quality(
    reconstructions: Any, planted: Any, *, tolerance: float = 0.05, confidence: float = 0.95, method: str = "given",
    min_cosine: float = 0.9,
) -> InversionResult:
    """Score reconstructions (rows; NaN rows = nothing rebuilt) against the planted records (rows), one-to-one."""
    check_confidence(confidence)
    tolerance = check_number(tolerance, "tolerance (relative error)", low=0.0, high=1.0)
    if tolerance >= 1.0:  # an all-zero reconstruction has relative error 1
        raise DataError(f"tolerance must be below 1 (a zero vector has relative error 1), got {tolerance:g}")
    min_cosine = check_number(min_cosine, "min_cosine", low=0.0, high=1.0)
    P = as_matrix(planted, "planted records")
    R = np.asarray(reconstructions, dtype=np.float64)
    R = R[None, :] if R.ndim == 1 else R
    if R.ndim != 2 or R.shape[1] != P.shape[1]:
        raise DataError(f"reconstructions must have {P.shape[1]} features per row, got shape {R.shape}")
    finite = R[np.all(np.isfinite(R), axis=1)]
    n_p, d = P.shape
    rel, cos = [math.inf] * n_p, [0.0] * n_p
    if finite.shape[0]:
        px = np.maximum(np.linalg.norm(P, axis=1), 1e-12)
        with np.errstate(over="ignore", invalid="ignore"):  # a wild reconstruction overflows: it matches last
            sq = (P * P).sum(axis=1)[:, None] + (finite * finite).sum(axis=1)[None, :] - 2.0 * (P @ finite.T)
            cost = np.sqrt(np.maximum(sq, 0.0)) / px[:, None]  # n_planted × n_candidates, no d-sized broadcast
        cost = np.nan_to_num(cost, nan=_HUGE_COST, posinf=_HUGE_COST)  # linear_sum_assignment refuses inf
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows, cols, strict=True):
            with np.errstate(over="ignore", invalid="ignore"):
                rel[i] = float(np.linalg.norm(finite[j] - P[i]) / px[i])  # exact (the Gram form cancels digits)
                cos[i] = float(finite[j] @ P[i]) / max(float(px[i] * np.linalg.norm(finite[j])), 1e-300)
    chance = _chance_cosine(d, min_cosine)
    cosine_usable = finite.shape[0] * chance <= _CHANCE_MAX
    exact = [e <= tolerance for e in rel]
    ok = [ex or (cosine_usable and c >= min_cosine) for ex, c in zip(exact, cos, strict=True)]
    k = int(sum(ok))
    notes: list[str] = []
    if not cosine_usable:
        notes.append(f"{finite.shape[0]} candidate row(s) in {d} dimensions: a random row reaches cosine "
                     f"{min_cosine:g} with probability {chance:.2g} each, so only exact matches (relative error ≤ "
                     f"{tolerance:g}) count; with many candidates even those can be chance.")
    if finite.shape[0] < n_p:
        notes.append(f"{finite.shape[0]} usable reconstruction(s) for {n_p} planted records: matched one-to-one, "
                     "the rest are not recovered.")
    return InversionResult(
        method=method, n_planted=n_p, n_recovered=k, recovery_rate=k / n_p,
        recovery_ci=clopper_pearson(k, n_p, confidence), relative_error=rel, cosine=cos, recovered=ok,
        tolerance=tolerance, confidence=confidence, reconstructions=[[float(v) for v in row] for row in R],
        notes=notes, exact=exact, n_exact=int(sum(exact)), min_cosine=min_cosine, n_candidates=int(finite.shape[0]),
        chance_cosine=chance,
    )


def invert_lr_gradient(
    grad_w: Any, grad_b: Any, planted: Any, *, l2: float = 0.0, weights: Any = None,
    tolerance: float = 0.05, confidence: float = 0.95, min_cosine: float = 0.9,
) -> InversionResult:
    """x̂ = (grad_w − l2·w) / grad_b for each observed gradient (rows of grad_w; grad_b one per row).

    Also valid on weight deltas of one record without l2 (Δw/Δb = grad_w/grad_b). A |grad_b| too small to
    divide by gives no reconstruction for that row."""
    G = as_matrix(grad_w, "gradient (weights)")
    gb = as_vector(grad_b, "gradient (intercept)")
    if gb.size != G.shape[0]:
        raise DataError(f"{G.shape[0]} weight gradients but {gb.size} intercept gradients")
    l2 = check_number(l2, "l2", low=0.0, low_open=False)
    if l2:
        if weights is None:
            raise DataError("l2 > 0 needs the model weights the gradient was taken at")
        w = as_vector(weights, "model weights")
        if w.size != G.shape[1]:
            raise DataError(f"model weights have {w.size} values, the gradient {G.shape[1]}")
        G = G - l2 * w[None, :]
    scale = np.maximum(np.abs(G).max(axis=1), 1e-300)
    usable = np.abs(gb) > 1e-12 * scale
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        R = np.where(usable[:, None], G / np.where(usable, gb, 1.0)[:, None], np.nan)
    result = reconstruction_quality(R, planted, tolerance=tolerance, confidence=confidence, method="analytic",
                                    min_cosine=min_cosine)
    if not usable.all():
        result.notes.append(f"{int((~usable).sum())} observation(s) had an intercept gradient of ~0: no ratio.")
    if G.shape[0] == 1 and as_matrix(planted, "planted records").shape[0] > 1:
        result.notes.append("one gradient of several records: the ratio is their weighted average, not a record.")
    return result


@dataclass(frozen=True)
class DeltaObservation:
    """One round seen by the server: the global model sent (w, b) and the party's change to it."""

    w_start: np.ndarray
    b_start: float
    delta_w: np.ndarray  # w_after − w_start
    delta_b: float


def _simulate(X: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: float, lr: float, steps: int,
              l2: float) -> tuple[np.ndarray, float]:
    w, b = w0.copy(), float(b0)
    for _ in range(steps):
        r = expit(X @ w + b) - y
        w = w - lr * (X.T @ r / len(y) + l2 * w)
        b = b - lr * float(r.mean())
    return w - w0, b - b0


def _simulate_jac(X: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: float, lr: float, steps: int,
                  l2: float) -> tuple[np.ndarray, np.ndarray]:
    """(Δw, Δb) appended, and its Jacobian with respect to X.ravel() (forward mode through the GD steps)."""
    k, d = X.shape
    w, b = w0.copy(), float(b0)
    jw, jb = np.zeros((d, k * d)), np.zeros(k * d)
    eye_k, eye_d = np.eye(k), np.eye(d)
    for _ in range(steps):
        p = expit(X @ w + b)
        r, slope = p - y, p * (1.0 - p)
        jz = X @ jw + jb[None, :] + np.kron(eye_k, w[None, :])  # dz_i/dθ
        jr = slope[:, None] * jz
        jgw = (X.T @ jr + np.kron(r[None, :], eye_d)) / k + l2 * jw
        jw, jb = jw - lr * jgw, jb - lr * jr.mean(axis=0)
        w = w - lr * (X.T @ r / k + l2 * w)
        b = b - lr * float(r.mean())
    return np.append(w - w0, b - b0), np.vstack([jw, jb[None, :]])


class _OutOfTime(Exception):
    """The probe's wall-clock budget is spent: stop the optimiser, keep the best point seen."""


def probe_fedavg_delta(
    observations: Sequence[DeltaObservation], planted: Any, labels: Any, *, lr: float, local_steps: int,
    l2: float = 0.0, tolerance: float = 0.05, fit_tolerance: float = 1e-3, restarts: int = 4,
    confidence: float = 0.95, rng: np.random.Generator | None = None, min_cosine: float = 0.9,
    max_unknowns: int = 2000, time_limit_s: float = 60.0,
) -> InversionResult:
    """Fit k = len(labels) records whose simulated local training reproduces every observed delta.

    `planted` scores the result only. `rng` seeds the random restarts (a test may pass a seeded one). Refuses
    more than `max_unknowns` (k·d) unknowns or Jacobians above 512 MiB; stops after `time_limit_s` seconds with
    the best fit so far (converged = False)."""
    if not observations:
        raise DataError("probe_fedavg_delta needs at least one observed round")
    lr = check_number(lr, "lr", low=0.0)
    l2 = check_number(l2, "l2", low=0.0, low_open=False)
    fit_tolerance = check_number(fit_tolerance, "fit_tolerance", low=0.0)
    time_limit_s = check_number(time_limit_s, "time_limit_s", low=0.0)
    local_steps = check_count(local_steps, "local_steps", low=1)
    restarts = check_count(restarts, "restarts", low=0)
    max_unknowns = check_count(max_unknowns, "max_unknowns", low=1)
    y = as_vector(labels, "planted labels")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise DataError("planted labels must be 0 or 1")
    d = as_vector(observations[0].w_start, "w_start").size
    obs = []
    for i, o in enumerate(observations):
        w0, dw = as_vector(o.w_start, f"round {i} w_start"), as_vector(o.delta_w, f"round {i} delta_w")
        if w0.size != d or dw.size != d:
            raise DataError(f"round {i}: w_start and delta_w must have {d} values")
        target = np.append(dw, float(o.delta_b))
        if not np.all(np.isfinite(target)):
            raise DataError(f"round {i}: delta contains NaN or infinite values")
        obs.append((w0, float(o.b_start), target, max(float(np.linalg.norm(target)), 1e-300)))
    k = y.size
    jac_bytes = 8 * k * d * (len(obs) * (d + 1) + 4 * d)  # the stacked Jacobian and the per-step (d, k·d) blocks
    if k * d > max_unknowns or jac_bytes > _MAX_JACOBIAN_BYTES:
        raise DataError(f"probe_fedavg_delta: k·d = {k}·{d} = {k * d} unknowns over {len(obs)} round(s) need "
                        f"about {jac_bytes / 1024**2:.0f} MiB of dense Jacobians (limits: {max_unknowns} unknowns, "
                        f"{_MAX_JACOBIAN_BYTES // 1024**2} MiB): probe fewer records or a narrower model")
    deadline = time.monotonic() + time_limit_s
    seen: dict[str, Any] = {"cost": math.inf, "x": None}

    def residuals(theta: np.ndarray) -> np.ndarray:
        if time.monotonic() > deadline:
            raise _OutOfTime
        X = theta.reshape(k, d)
        out = []
        for w0, b0, target, norm in obs:
            dw, db = _simulate(X, y, w0, b0, lr, local_steps, l2)
            out.append((np.append(dw, db) - target) / norm)
        res = np.concatenate(out)
        cost = 0.5 * float(res @ res)
        if cost < seen["cost"]:
            seen["cost"], seen["x"] = cost, theta.copy()
        return res

    def jacobian(theta: np.ndarray) -> np.ndarray:
        if time.monotonic() > deadline:
            raise _OutOfTime
        X = theta.reshape(k, d)
        return np.vstack([_simulate_jac(X, y, w0, b0, lr, local_steps, l2)[1] / norm for w0, b0, _, norm in obs])

    gen = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    t0 = obs[0][2]
    ratio = t0[:d] / t0[d] if abs(t0[d]) > 1e-12 * np.abs(t0[:d]).max(initial=1e-300) else np.zeros(d)
    ratio = np.clip(np.nan_to_num(ratio), -1e6, 1e6)
    spread = max(float(np.std(ratio)), 1.0)
    starts = [np.tile(ratio, k) + 0.01 * spread * gen.standard_normal(k * d)]
    starts += [gen.standard_normal(k * d) * spread for _ in range(restarts)]
    # MINPACK's Levenberg–Marquardt (no BLAS-threaded SVD per step) when there are at least as many observed
    # values as unknowns; trust-region with an iterative solver otherwise (LM refuses underdetermined fits).
    determined = len(obs) * (d + 1) >= k * d
    method = "lm" if determined else "trf"
    extra: dict[str, Any] = {} if determined else {"tr_solver": "lsmr"}
    best, timed_out = None, False
    for x0 in starts:
        try:
            fit = least_squares(residuals, x0, jac=jacobian, method=method, max_nfev=min(100 * k * d, _MAX_NFEV),
                                xtol=1e-12, ftol=1e-12, **extra)
        except _OutOfTime:
            timed_out = True
            break
        except (ValueError, FloatingPointError):
            continue
        if best is None or fit.cost < best.cost:
            best = fit
        if np.sqrt(2.0 * best.cost / len(obs)) <= 1e-3 * fit_tolerance:
            break  # explained to well below the tolerance: more restarts cannot say more
    converged: bool | None = None
    if timed_out and seen["x"] is not None and (best is None or seen["cost"] < best.cost):
        R, resid, converged = seen["x"].reshape(k, d), float(np.sqrt(2.0 * seen["cost"] / len(obs))), False
    elif best is None:
        R, resid, converged = np.full((k, d), np.nan), float("inf"), False
    else:
        R, resid = best.x.reshape(k, d), float(np.sqrt(2.0 * best.cost / len(obs)))
        converged = bool(best.status > 0) and not timed_out
    result = reconstruction_quality(R, planted, tolerance=tolerance, confidence=confidence, method="optimisation",
                                    min_cosine=min_cosine)
    result = InversionResult(**{**result.__dict__, "fit_residual": resid, "converged": converged})
    if timed_out:
        result.notes.append(f"stopped at the time limit ({time_limit_s:g} s): the best fit so far is reported, "
                            "not converged; a miss says nothing.")
    elif best is not None and best.status == 0:
        result.notes.append("the fit stopped at its evaluation cap without converging; a miss says nothing.")
    if not resid <= fit_tolerance:
        result.notes.append(f"the fit does not explain the observed deltas (relative residual {resid:.3g} > "
                            f"{fit_tolerance:g}): the payload is not a clear update of this model, or the "
                            "assumed training (lr, steps, l2, records) differs.")
    if k * d > len(obs) * (d + 1):
        result.notes.append(f"{k * d} unknowns from {len(obs) * (d + 1)} observed values: underdetermined, "
                            "a miss may be ambiguity, not protection.")
    return result
