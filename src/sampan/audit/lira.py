"""LiRA (Carlini et al. 2022): shadow models trained with and without each row, and the likelihood-ratio attack.

Why apart: the shadows are the expensive, model-specific part of an audit; the ε bounds and ROC arithmetic they
feed are in `sampan.audit.membership` (whose docstring explains every number).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from sampan.audit.membership import _MAX_SCORE, _MIN_STD, _PROB_EPS, AttackResult, ScoreFn, TrainFn, _result_from_scores

__all__ = ["ShadowScores", "lira_attack", "lira_from_shadows", "logit_confidence", "train_shadow_models",
           "true_label_confidence"]


def true_label_confidence(p_positive: np.ndarray, y: np.ndarray) -> np.ndarray:
    """p(y_i | x_i) from a model's P(y = 1 | x): the helper most ScoreFns need."""
    p = np.asarray(p_positive, dtype=np.float64)
    return np.where(np.asarray(y) == 1, p, 1.0 - p)


def logit_confidence(p: np.ndarray) -> np.ndarray:
    """φ = log(p / (1 − p)): makes confidences near 0 and 1 roughly Gaussian across retrainings."""
    p = np.clip(np.asarray(p, dtype=np.float64), _PROB_EPS, 1.0 - _PROB_EPS)
    return np.log(p) - np.log1p(-p)


def _checked_confidence(score_fn: ScoreFn, model: Any, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.asarray(score_fn(model, X, y), dtype=np.float64)
    if p.shape != (len(X),):
        raise ValueError(f"score_fn must return one confidence per row, shape ({len(X)},), got {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("score_fn must return confidences p(y_i | x_i) in [0, 1]")
    return p


def _check_pool(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim < 1 or len(X) != len(y) or y.ndim != 1:
        raise ValueError(f"X and y must have the same number of rows, got {X.shape} and {y.shape}")
    if len(y) < 2:
        raise ValueError("the audit pool needs at least two rows")
    return X, y


def _check_mask(mask: np.ndarray, n: int) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (n,):
        raise ValueError(f"target_member_mask must be a boolean array of shape ({n},), got {m.dtype} {m.shape}")
    if m.all() or not m.any():
        raise ValueError("target_member_mask must mark at least one member and one non-member")
    return m


@dataclass(frozen=True)
class ShadowScores:
    """φ of every shadow model on every pool row, and which rows each shadow trained on.

    Kept apart from the attack so one set of (costly) shadows serves both LiRA variants."""

    phi: np.ndarray  # (n_shadow, n_rows) float64
    keep: np.ndarray  # (n_shadow, n_rows) bool: row was IN that shadow's training set

    def __post_init__(self) -> None:
        if self.phi.ndim != 2 or self.phi.shape != self.keep.shape or self.keep.dtype != bool:
            raise ValueError("ShadowScores needs phi and a boolean keep of the same (n_shadow, n_rows) shape")


def train_shadow_models(
    train_fn: TrainFn, score_fn: ScoreFn, X: np.ndarray, y: np.ndarray, *, n_shadow: int = 16, seed: int
) -> ShadowScores:
    """Train `n_shadow` models on random halves of the pool, balanced so each row is IN for exactly
    ⌊n_shadow/2⌋ of them (Carlini et al.'s sampling), and record every model's φ on every row."""
    X, y = _check_pool(X, y)
    if n_shadow < 2:
        raise ValueError(f"n_shadow must be >= 2 so every row has IN and OUT shadows, got {n_shadow}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x11A]))
    order = rng.random((n_shadow, len(y))).argsort(axis=0)
    keep = order < n_shadow // 2
    seeds = rng.integers(0, 2**31 - 1, size=n_shadow)
    phi = np.empty((n_shadow, len(y)))
    for s in range(n_shadow):
        if not keep[s].any():
            raise ValueError("a shadow model got no training rows; use a larger audit pool")
        model = train_fn(X[keep[s]], y[keep[s]], int(seeds[s]))
        phi[s] = logit_confidence(_checked_confidence(score_fn, model, X, y))
    return ShadowScores(phi=phi, keep=keep)


def _gaussian_fit(phi: np.ndarray, mask: np.ndarray, min_samples_own_std: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and std of φ over the shadows selected by `mask`; rows with fewer than
    `min_samples_own_std` samples get the pooled within-row std (a global variance)."""
    count = mask.sum(axis=0)
    if np.any(count == 0):
        raise ValueError("some rows have no shadow samples on one side; use more shadow models")
    values = np.where(mask, phi, 0.0)
    mean = values.sum(axis=0) / count
    sq_dev = np.where(mask, (phi - mean) ** 2, 0.0).sum(axis=0)
    dof = count - 1
    pooled_var = sq_dev.sum() / dof.sum() if dof.sum() > 0 else 0.0
    own_var = np.divide(sq_dev, dof, out=np.zeros_like(sq_dev), where=dof > 0)
    var = np.where(count >= max(min_samples_own_std, 2), own_var, pooled_var)
    return mean, np.maximum(np.sqrt(var), _MIN_STD)


def lira_from_shadows(
    shadows: ShadowScores, target_phi: np.ndarray, target_member_mask: np.ndarray, *, online: bool = True,
    delta: float = 1e-5, min_samples_own_std: int = 32,
) -> AttackResult:
    """LiRA scores for the target's φ on every pool row, given already-trained shadows."""
    target_phi = np.asarray(target_phi, dtype=np.float64)
    mask = _check_mask(target_member_mask, shadows.phi.shape[1])
    if target_phi.shape != (shadows.phi.shape[1],):
        raise ValueError("target_phi must have one value per pool row")
    mu_out, sd_out = _gaussian_fit(shadows.phi, ~shadows.keep, min_samples_own_std)
    if online:
        mu_in, sd_in = _gaussian_fit(shadows.phi, shadows.keep, min_samples_own_std)
        score = stats.norm.logpdf(target_phi, mu_in, sd_in) - stats.norm.logpdf(target_phi, mu_out, sd_out)
    else:  # one-sided: members have unusually high φ compared with models that never saw them
        score = -stats.norm.logsf(target_phi, mu_out, sd_out)
    score = np.clip(np.nan_to_num(score, nan=0.0), -_MAX_SCORE, _MAX_SCORE)
    name = "lira_online" if online else "lira_offline"
    return _result_from_scores(name, score[mask], score[~mask], delta)


def lira_attack(
    train_fn: TrainFn, score_fn: ScoreFn, X: np.ndarray, y: np.ndarray, *, target_model: Any,
    target_member_mask: np.ndarray, n_shadow: int = 16, seed: int, delta: float = 1e-5, online: bool = True,
    shadows: ShadowScores | None = None,
) -> AttackResult:
    """Carlini et al. 2022 likelihood-ratio attack on `target_model`, trained by the caller on
    X[target_member_mask]. Pass `shadows` to reuse models from :func:`train_shadow_models`."""
    X, y = _check_pool(X, y)
    mask = _check_mask(target_member_mask, len(y))
    if shadows is None:
        shadows = train_shadow_models(train_fn, score_fn, X, y, n_shadow=n_shadow, seed=seed)
    elif shadows.phi.shape[1] != len(y):
        raise ValueError("shadows were computed on a pool of a different size")
    target_phi = logit_confidence(_checked_confidence(score_fn, target_model, X, y))
    return lira_from_shadows(shadows, target_phi, mask, online=online, delta=delta)
