"""The synthesiser's privacy budget: one zCDP total, split over phases, charged to the ledger per release.

Every release of the synthesiser is a Gaussian measurement (rho = sensitivity² / (2 sigma²)) or an
exponential-mechanism selection, which is eps²/8-zCDP (bounded range; Cesar & Rogers 2021). Both have
the RDP curve ``rho * alpha``, i.e. that of a Gaussian with noise multiplier ``1 / sqrt(2 rho)``, so the
ledger (RDP accountant) composes them exactly by adding rhos. The total rho is the largest whose RDP
curve the ledger converts to at most the requested epsilon at delta: calibration uses the ledger's own
accountant, so what is planned is what the ledger will charge.

PLD accounting is refused here: the PLD of a Gaussian is not a valid bound for the exponential
mechanism, only its RDP/zCDP curve is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sampan.privacy.ledger import Budget, BudgetExceeded, Ledger, Level, PrivacyEvent

__all__ = ["BudgetWeights", "em_event", "gaussian_event", "rho_for_budget", "sigma_for_rho"]

LEVEL: Level = "DP1"  # releases by the data owner of statistics of its own records


@dataclass(frozen=True)
class BudgetWeights:
    """Relative zCDP weight of ONE release of each kind; a release gets rho * weight / (sum of the plan's
    weights). Weighting per release (not per phase) keeps the split sensible whatever the mix of columns:
    a table with few numeric columns does not pour a fixed share into their few quantile histograms."""

    label: float = 1.0  # the label histogram (or row count)
    one_way: float = 0.5  # the fine histogram of one binned numeric column (DP quantiles)
    label_pair: float = 1.0  # one (label, feature) 2-way (a 1-way for a direct column without a label)
    select: float = 0.3  # one exponential-mechanism round of the tree selection
    pair: float = 0.6  # one (feature, parent) 2-way

    def __post_init__(self) -> None:
        for name in ("label", "one_way", "label_pair", "select", "pair"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"budget weight '{name}' must be a finite number > 0, got {value!r}")

    def split(self, rho: float, counts: dict[str, int]) -> dict[str, float]:
        """rho of one release of each kind, given how many releases of each kind the plan makes."""
        total = sum(getattr(self, k) * n for k, n in counts.items())
        return {k: rho * getattr(self, k) / total for k in counts}


def sigma_for_rho(rho: float, sensitivity: float = 1.0) -> float:
    """Gaussian noise sigma spending exactly ``rho`` (zCDP) at L2 ``sensitivity``."""
    return sensitivity / math.sqrt(2.0 * rho)


def gaussian_event(party: str, sigma: float, sensitivity: float, step: int, note: str) -> PrivacyEvent:
    return PrivacyEvent(party=party, level=LEVEL, mechanism="gaussian", noise_multiplier=sigma / sensitivity,
                        step=step, note=note)


def em_event(party: str, epsilon: float, step: int, note: str) -> PrivacyEvent:
    """Exponential mechanism with pure ``epsilon``: eps²/8-zCDP, the RDP curve of a Gaussian with z = 2/eps."""
    return PrivacyEvent(party=party, level=LEVEL, mechanism="gaussian", noise_multiplier=2.0 / epsilon,
                        step=step, note=f"{note} [exponential mechanism eps={epsilon:.6g}, accounted as "
                        f"its eps^2/8-zCDP bound]")


def rho_for_budget(epsilon: float, delta: float, *, rel_tol: float = 1e-6) -> float:
    """Largest rho whose composition the ledger reads as at most (epsilon, delta) under RDP.

    Bisection on a scratch ledger with a single Gaussian of that rho (all our events compose to one),
    then shaved by ``rel_tol`` so floating-point sums of many small rhos cannot overshoot the budget.
    """
    budget = Budget(epsilon, delta)

    def fits(rho: float) -> bool:
        event = PrivacyEvent(party="p", level=LEVEL, mechanism="gaussian", noise_multiplier=1.0 / math.sqrt(2 * rho))
        try:
            Ledger({"p": budget}, accountant="rdp").check([event])
        except BudgetExceeded:
            return False
        return True

    lo, hi = 1e-12, max(1.0, epsilon)
    while fits(hi):
        lo, hi = hi, hi * 4
        if hi > 1e6:
            raise ValueError(f"epsilon {epsilon} is too large to calibrate")
    if not fits(lo):
        raise ValueError(f"budget (epsilon={epsilon}, delta={delta}) is too small for any release")
    while hi / lo > 1 + rel_tol:
        mid = math.sqrt(lo * hi)
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo * (1 - 1e-6)
