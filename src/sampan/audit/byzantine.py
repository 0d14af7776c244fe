"""Byzantine clients as update transforms, reference defences, and the figures that measure an attack.

Why: the verifier runs one party; it can make that party misbehave and measure what the platform's aggregate
does: accuracy under attack and, for a backdoor, the attack success rate (fraction of trigger rows given
the attacker's target label). A platform that aggregates blindly loses accuracy or takes the backdoor.

Threat model: f of n clients are malicious and collude; they may know the benign updates' mean and spread
(ALIE) or the global model (model replacement). They control only what they send, not the server.

Attacks (each returns what the malicious client sends; "update" = model delta, "model" = full weights):
- sign_flip: −s·u (gradient ascent).
- scaling: factor·u (a boosted update that dominates an unweighted mean).
- alie: "A Little Is Enough" (Baruch, Baruch & Goldberg 2019): per coordinate μ − z·σ of the benign
  updates, with z = Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f, so the value stays inside the benign spread
  and passes median/Krum-style filters while shifting every coordinate the same way.
  Defined for s ≥ 1 (f < ⌊n/2 + 1⌋); a malicious majority is refused (it needs no ALIE).
- model_replacement_backdoor (Bagdasaryan et al. 2020, "How To Backdoor Federated Learning"): with
  FedAvg G' = G + (η/n)·Σ(Lᵢ − G), the attacker submits L = γ(X − G) + G, γ = n/η, so that G' ≈ X, the
  backdoored model it trained.

Defences (reference only, for negative controls): coordinate_median, norm_clip (Sun et al. 2019).
Every numeric parameter must be finite (and counts integers): a NaN scale or rate would silently make a NaN
update (R16-AUDIT-9).

May import: numpy, scipy, sampan.errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import expit

from sampan.audit.intervals import as_matrix, as_vector, check_confidence, check_count, check_number, clopper_pearson
from sampan.errors import DataError

__all__ = [
    "AttackImpact", "add_trigger", "alie", "alie_z", "coordinate_median", "fedavg", "measure_attack",
    "model_replacement_backdoor", "norm_clip", "scaling", "sign_flip",
]


def sign_flip(update: Any, scale: float = 1.0) -> np.ndarray:
    """−scale·update: the client pushes the model uphill on its loss."""
    s = check_number(scale, "sign_flip scale", low=0.0)
    return -s * as_vector(update, "update")


def scaling(update: Any, factor: float) -> np.ndarray:
    """factor·update: one boosted update dominates an unweighted or count-weighted mean."""
    f = check_number(factor, "scaling factor", low=-math.inf)
    return f * as_vector(update, "update")


def alie_z(n: int, f: int) -> float:
    """z_max of Baruch et al. 2019: s = ⌊n/2 + 1⌋ − f supporters needed, z = Φ⁻¹((n − s)/n).

    Defined for s ≥ 1 only: with f ≥ ⌊n/2 + 1⌋ the malicious clients are a majority and need no benign
    supporters (z would be inf or NaN; R16-AUDIT-8), so that is refused."""
    n, f = check_count(n, "n (clients)", low=1), check_count(f, "f (malicious clients)", low=0)
    if not 0 < f < n:
        raise DataError(f"ALIE needs 0 < f < n malicious clients, got f={f}, n={n}")
    s = math.floor(n / 2 + 1) - f
    if s < 1:
        raise DataError(f"f={f} malicious clients of n={n} are a majority (s = ⌊n/2 + 1⌋ − f = {s} < 1): ALIE is "
                        "not needed, and its z is undefined")
    return float(stats.norm.ppf((n - s) / n))


def alie(benign_updates: Any, n: int, f: int, *, z: float | None = None) -> np.ndarray:
    """The update each of the f colluding clients sends: μ − z·σ per coordinate of the benign updates."""
    U = as_matrix(benign_updates, "benign updates")
    zz = alie_z(n, f) if z is None else check_number(z, "ALIE z", low=-math.inf)
    return U.mean(axis=0) - zz * U.std(axis=0)


def model_replacement_backdoor(global_model: Any, backdoor_model: Any, n: int, eta: float = 1.0) -> np.ndarray:
    """The model the attacker submits, L = (n/η)(X − G) + G, so FedAvg with server rate η lands near X."""
    G, X = as_vector(global_model, "global model"), as_vector(backdoor_model, "backdoor model")
    if G.size != X.size:
        raise DataError(f"global model has {G.size} weights but the backdoor model has {X.size}")
    n = check_count(n, "n (clients)", low=1)
    eta = check_number(eta, "server rate eta", low=0.0)
    return (n / eta) * (X - G) + G


def fedavg(updates: Any, weights: Any = None) -> np.ndarray:
    """(Weighted) mean of the rows: the undefended aggregate."""
    U = as_matrix(updates, "updates")
    if weights is None:
        return U.mean(axis=0)
    w = as_vector(weights, "weights")
    if w.size != U.shape[0] or w.min() < 0 or w.sum() <= 0:
        raise DataError(f"weights must be {U.shape[0]} non-negative numbers with a positive sum")
    return (w[:, None] * U).sum(axis=0) / w.sum()


def coordinate_median(updates: Any) -> np.ndarray:
    """Coordinate-wise median (Yin et al. 2018): robust to a minority of arbitrary values per coordinate."""
    return np.median(as_matrix(updates, "updates"), axis=0)


def norm_clip(updates: Any, max_norm: float) -> np.ndarray:
    """Each row scaled down to L2 norm ≤ max_norm (Sun et al. 2019), before averaging."""
    max_norm = check_number(max_norm, "max_norm", low=0.0)
    U = as_matrix(updates, "updates")
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    return U * np.minimum(1.0, max_norm / np.maximum(norms, 1e-300))


def add_trigger(X: Any, feature: int | list[int], value: float) -> np.ndarray:
    """A copy of X with the trigger: the given feature column(s) set to `value` (a pattern no honest row has)."""
    A = as_matrix(X, "rows").copy()
    value = check_number(value, "trigger value", low=-math.inf)
    cols = [feature] if isinstance(feature, int) else list(feature)
    if not cols or min(cols) < 0 or max(cols) >= A.shape[1]:
        raise DataError(f"trigger feature index out of range 0..{A.shape[1] - 1}: {cols}")
    A[:, cols] = value
    return A


@dataclass(frozen=True)
class AttackImpact:
    """Accuracy with and without the attack, and the backdoor's success rate; counts and CIs included."""

    accuracy_clean: float
    accuracy_attacked: float
    accuracy_drop: float
    accuracy_clean_ci: tuple[float, float]
    accuracy_attacked_ci: tuple[float, float]
    n_rows: int
    attack_success_rate: float | None
    attack_success_ci: tuple[float, float] | None
    n_trigger_rows: int
    target_label: int | None
    confidence: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures for a report."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _predict(model: Any, X: np.ndarray) -> np.ndarray:
    w = as_vector(model, "model")
    if w.size != X.shape[1] + 1:
        raise DataError(f"a linear model for {X.shape[1]} features needs {X.shape[1] + 1} weights "
                        f"(coefficients then intercept), got {w.size}")
    return (expit(X @ w[:-1] + w[-1]) >= 0.5).astype(np.int64)


def measure_attack(
    clean_model: Any, attacked_model: Any, X: Any, y: Any, *, trigger_rows: Any = None,
    target_label: int | None = None, confidence: float = 0.95,
) -> AttackImpact:
    """Accuracy of two logistic models (weights = coefficients then intercept) on (X, y), and with
    `trigger_rows` the fraction of those rows the attacked model gives `target_label` (rows whose true
    label already is the target should be left out by the caller: they inflate the rate)."""
    check_confidence(confidence)
    A = as_matrix(X, "evaluation rows")
    labels = as_vector(y, "labels")
    if labels.size != A.shape[0] or not np.all(np.isin(labels, (0.0, 1.0))):
        raise DataError(f"labels must be {A.shape[0]} values in {{0, 1}}")
    n = A.shape[0]
    ok_clean = int((_predict(clean_model, A) == labels).sum())
    ok_att = int((_predict(attacked_model, A) == labels).sum())
    asr = asr_ci = None
    n_trig = 0
    notes: list[str] = []
    if trigger_rows is not None:
        if target_label not in (0, 1):
            raise DataError(f"target_label must be 0 or 1 with trigger_rows, got {target_label!r}")
        T = as_matrix(trigger_rows, "trigger rows")
        n_trig = T.shape[0]
        hits = int((_predict(attacked_model, T) == target_label).sum())
        base = int((_predict(clean_model, T) == target_label).sum())
        asr, asr_ci = hits / n_trig, clopper_pearson(hits, n_trig, confidence)
        notes.append(f"the clean model already gives the target label to {base}/{n_trig} trigger rows.")
    return AttackImpact(
        accuracy_clean=ok_clean / n, accuracy_attacked=ok_att / n, accuracy_drop=(ok_clean - ok_att) / n,
        accuracy_clean_ci=clopper_pearson(ok_clean, n, confidence),
        accuracy_attacked_ci=clopper_pearson(ok_att, n, confidence), n_rows=n, attack_success_rate=asr,
        attack_success_ci=asr_ci, n_trigger_rows=n_trig, target_label=target_label, confidence=confidence,
        notes=notes,
    )
