"""DP2: differentially private SGD for the NumPy learners (Abadi et al. 2016).

Each step draws a Poisson sample (every row independently with probability q), computes exact
per-example gradient norms (ghost clipping: from activations and output gradients, vectorised, no
Python loop over examples), clips each gradient to L2 norm `max_grad_norm`, sums them, adds Gaussian
noise of standard deviation noise_multiplier · max_grad_norm, and divides by the expected batch size
q·n. Under add/remove-one-record adjacency the noised sum of one step is a Gaussian mechanism of
sensitivity max_grad_norm, subsampled with probability q; `steps` such steps compose into the
`PrivacyEvent` this module reports, which the ledger accounts (record-level DP within the training party).

Sampling and noise both come from the OS CSPRNG unless a test passes seeded generators: a
predictable sample would void the amplification-by-sampling argument, and predictable noise could be
subtracted. L2 regularisation and the optimiser state are functions of the noised gradients and the
public parameters only, so they cost no privacy.

What each role learns: the coordinator (and, after aggregation, every party) receives only the
party's noised model delta and the public settings it was trained under (steps, sampling rate computed
from the party's *released* row count, noise multiplier); never the exact row count, loss, or share of
clipped gradients. The party itself learns nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sampan.models.base import Model
from sampan.models.local_training import LocalOptimizer, TrainConfig, TrainResult
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.randomness import secure_generator


@dataclass(frozen=True)
class DPSGDConfig:
    noise_multiplier: float        # sigma / max_grad_norm
    max_grad_norm: float           # per-example L2 clipping bound C
    sampling_rate: float | None = None  # Poisson q; default batch_size / n
    public_rows: int | None = None  # a released (noised) row count: q and the batch divisor use it, not n

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.sampling_rate is not None and not 0 < self.sampling_rate <= 1:
            raise ValueError(f"sampling_rate must be in (0, 1], got {self.sampling_rate}")
        if self.public_rows is not None and self.public_rows < 1:
            raise ValueError(f"public_rows must be >= 1, got {self.public_rows}")


@dataclass(frozen=True)
class DPSGDResult:
    result: TrainResult
    steps: int
    sampling_rate: float
    noise_multiplier: float
    clipped_fraction: float  # share of sampled examples whose gradient was clipped (a tuning signal)


def clip_rows(grads: np.ndarray, max_norm: float) -> tuple[np.ndarray, int]:
    """Scale each row to L2 norm <= max_norm (in place); returns the array and how many were clipped.

    A row with a non-finite entry (a NaN or infinite gradient, e.g. from an infinite feature) becomes zero and
    counts as clipped (review R12-HOR-6): NaN cannot be clipped, and a NaN that survived into the noised sum would
    tell whether such a row exists. Zero is inside the clipping ball, so the sensitivity stays max_norm. A finite
    row whose norm overflows is scaled by its largest entry first, so it is clipped, not zeroed by inf."""
    bad = ~np.all(np.isfinite(grads), axis=1)
    grads[bad] = 0.0
    peak = np.max(np.abs(grads), axis=1) if grads.size else np.zeros(len(grads))
    safe = np.where(peak > 0, peak, 1.0)
    unit = grads / safe[:, None]
    norms = safe * np.sqrt(np.einsum("ij,ij->i", unit, unit))
    factors = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
    grads *= factors[:, None]
    return grads, int(np.count_nonzero(factors < 1.0) + np.count_nonzero(bad))  # a zeroed row has factor 1


def clipped_sum(model: Model, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                max_norm: float) -> tuple[np.ndarray, int, float]:
    """Σ of per-example gradients clipped to `max_norm`, each non-finite one mapped to zero (review R12-HOR-6).

    The model's ghost clipping gives Σ_i clip(g_i) in one pass. A NaN or infinite example (a coordinator-chosen
    scaler or global model can make features or logits infinite) makes that sum non-finite; then each example
    is clipped on its own by the same ghost computation and a non-finite one contributes zero (counted as
    clipped). Every example's contribution is thus a fixed function of that example alone, inside the
    max_norm ball, whichever path ran: the sensitivity stays max_norm, and no NaN tells that such a row exists."""
    with np.errstate(all="ignore"):
        summed, clipped, loss = model.clipped_grad_sum(params, X, y, max_norm)
        if np.all(np.isfinite(summed)):
            return summed, clipped, loss
        summed, clipped = np.zeros_like(summed), 0
        for i in range(len(X)):  # only a batch holding a non-finite example gets here
            part, k, _ = model.clipped_grad_sum(params, X[i:i + 1], y[i:i + 1], max_norm)
            finite = bool(np.all(np.isfinite(part)))
            summed += part if finite else 0.0
            clipped += k if finite else 1
    return summed, clipped, loss  # the loss never leaves under DP (`release_mod`)


def poisson_sample(rng: np.random.Generator, n: int, q: float, size: int | None = None) -> np.ndarray:
    """Row indices of a Poisson sample (each row independently with probability q).

    Drawn as a Binomial(n, q) size (or the given pre-drawn `size`), then that many distinct rows
    uniformly: the same distribution as n coin flips, at O(batch) instead of O(n) cost per step.
    """
    size = int(rng.binomial(n, q)) if size is None else size
    if size == 0:
        return np.empty(0, dtype=np.intp)
    return rng.choice(n, size=size, replace=False)


_NOISE_CHUNK = 256  # steps of noise drawn per mechanism call (bounded memory, no per-step overhead)


def planned_steps(n: int, config: TrainConfig, dp: DPSGDConfig) -> tuple[int, float]:
    """(steps, q) a DP-SGD call will run: known before training, so the ledger can check first.

    With `dp.public_rows` (a released row count) neither depends on the exact n, so neither the
    coordinator's plan nor the reply's steps and rate reveal more than the charged count did."""
    n = dp.public_rows if dp.public_rows is not None else n
    q = dp.sampling_rate if dp.sampling_rate is not None else min(1.0, config.batch_size / n)
    steps = config.max_steps if config.max_steps is not None else config.epochs * max(1, int(round(1 / q)))
    return steps, q


def dp_sgd_train(
    model: Model,
    params: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    dp: DPSGDConfig,
    *,
    sampling_rng: np.random.Generator | None = None,
    noise_rng: np.random.Generator | None = None,
    anchor: np.ndarray | None = None,
) -> DPSGDResult:
    """Train with DP-SGD from `params` (not modified). Generators default to the OS CSPRNG."""
    n = len(X)
    if n == 0:
        raise ValueError("cannot train on zero rows")
    sampling_rng = sampling_rng or secure_generator()
    noise_rng = noise_rng or secure_generator()
    steps, q = planned_steps(n, config, dp)
    params = model.check_params(params).copy()
    optimizer = LocalOptimizer(params, config, anchor)
    noise = GaussianMechanism(dp.max_grad_norm, dp.noise_multiplier * dp.max_grad_norm) if dp.noise_multiplier else None
    y = y.astype(np.float64, copy=False)
    expected_batch = q * (dp.public_rows if dp.public_rows is not None else n)
    clipped = sampled = 0
    loss_sum = 0.0
    sizes = sampling_rng.binomial(n, q, size=steps)
    noise_block = np.empty((0, len(params)))
    for step in range(steps):
        idx = poisson_sample(sampling_rng, n, q, size=int(sizes[step]))
        if idx.size:
            summed, k, batch_loss = clipped_sum(model, params, X[idx], y[idx], dp.max_grad_norm)
            clipped += k
            sampled += idx.size
            loss_sum += batch_loss
        else:
            summed = np.zeros_like(params)
        if noise is not None:
            if step % _NOISE_CHUNK == 0:  # one mechanism call per chunk of steps
                noise_block = noise.noise((min(_NOISE_CHUNK, steps - step), len(params)), rng=noise_rng)
            summed += noise_block[step % _NOISE_CHUNK]
        optimizer.step(params, summed / expected_batch)
    result = TrainResult(params=params, mean_loss=loss_sum / max(sampled, 1), steps=steps, examples=sampled)
    return DPSGDResult(result, steps, q, dp.noise_multiplier, clipped / max(sampled, 1))
