"""The generating process of the built-in SME consortium: sectors, their parameters, the true default model.

Why apart from `sampan.data.consortium`: this is the population itself (what a real SME looks like to a bank,
a payments provider and a delivery platform); the consortium module splits it into parties and schemas. The
process is described in `sampan.data.consortium`'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["SECTORS", "TRUE_COEFFICIENTS"]

SECTORS: tuple[str, ...] = (
    "retail",
    "food_beverage",
    "logistics",
    "trading",
    "professional_services",
    "manufacturing",
)
_SECTOR_SHARE = np.array([0.22, 0.18, 0.12, 0.22, 0.16, 0.10])
# Per sector: log-employee mean, log-revenue mean (HKD), card share of revenue, mean ticket (HKD),
# delivery-platform coverage, payments coverage, delivery orders base (log10 per month).
_EMP_MU = np.array([1.3, 1.7, 1.8, 1.4, 1.5, 2.3])
_REV_MU = np.log(np.array([4.0e6, 5.0e6, 9.0e6, 12.0e6, 5.0e6, 15.0e6]))
_CARD_SHARE = np.array([0.55, 0.65, 0.15, 0.10, 0.20, 0.05])
_TICKET = np.array([280.0, 110.0, 2500.0, 9000.0, 3500.0, 15000.0])
_DLV_COVER = np.array([0.75, 0.95, 0.20, 0.10, 0.08, 0.05])
_PAY_COVER = np.array([0.90, 0.92, 0.60, 0.55, 0.58, 0.50])
_DLV_ORDERS = np.array([2.3, 3.2, 2.6, 1.6, 1.2, 1.3])
_EMP_CAP = np.array([49, 49, 49, 49, 49, 99])


TRUE_COEFFICIENTS: dict[str, float] = {
    "intercept": -3.65,
    "latent:financial_health": -0.95,
    "latent:trading_momentum": -1.05,
    "log_loan_to_revenue": 0.35,
    "log_years_in_business": -0.20,
    "debt_to_revenue": 0.45,
    "past_delinquencies": 0.25,
    "sector=retail": 0.15,
    "sector=food_beverage": 0.35,
    "sector=logistics": 0.10,
    "sector=trading": 0.0,
    "sector=professional_services": -0.30,
    "sector=manufacturing": 0.05,
}
"""Known signal: coefficients of the logistic model that generates ``default_12m`` (see module doc)."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _population(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Latent attributes, bank features and the default label of every SME."""
    sector = rng.choice(len(SECTORS), size=n, p=_SECTOR_SHARE)
    years = np.clip(np.round(np.exp(rng.normal(np.log(7.0), 0.85, n)), 1), 0.3, 50.0)
    z_years = (np.log(years) - np.log(7.0)) / 0.85
    health = 0.3 * z_years + np.sqrt(1 - 0.09) * rng.standard_normal(n)
    momentum = rng.standard_normal(n)
    sector_shock = rng.normal(0.0, 0.25, len(SECTORS))[sector]
    momentum = momentum + sector_shock

    log_emp = _EMP_MU[sector] + 0.3 * z_years + rng.normal(0.0, 0.7, n)
    employees = np.clip(np.round(np.exp(log_emp)), 1, _EMP_CAP[sector]).astype(np.int64)
    log_rev = (
        _REV_MU[sector]
        + 0.75 * (np.log(employees) - _EMP_MU[sector])
        + 0.25 * health
        + 0.10 * momentum
        + rng.normal(0.0, 0.45, n)
    )
    revenue = np.round(np.exp(log_rev), -3)

    log_loan_to_rev = np.log(0.25) + rng.normal(0.0, 0.55, n)
    loan = np.maximum(np.round(revenue * np.exp(log_loan_to_rev), -4), 50_000.0)
    log_loan_to_rev = np.log(loan / revenue)
    term = rng.choice(np.array([12, 24, 36, 48, 60]), size=n, p=[0.15, 0.25, 0.3, 0.15, 0.15])
    debt_to_rev = np.exp(np.log(0.3) - 0.45 * health + rng.normal(0.0, 0.5, n))
    debt_to_rev = np.round(np.clip(debt_to_rev, 0.0, 5.0), 3)
    utilisation = np.round(_sigmoid(-0.3 - 0.8 * health - 0.2 * momentum + rng.normal(0.0, 0.7, n)), 3)
    delinquencies = np.minimum(rng.poisson(np.exp(-1.7 - 0.8 * health)), 12)
    guarantee = rng.random(n) < np.where(years < 3, 0.45, 0.25)

    c = TRUE_COEFFICIENTS
    sector_coef = np.array([c[f"sector={s}"] for s in SECTORS])
    logit = (
        c["intercept"]
        + c["latent:financial_health"] * health
        + c["latent:trading_momentum"] * momentum
        + c["log_loan_to_revenue"] * (log_loan_to_rev - np.log(0.25))
        + c["log_years_in_business"] * np.log(years)
        + c["debt_to_revenue"] * debt_to_rev
        + c["past_delinquencies"] * delinquencies
        + sector_coef[sector]
    )
    default = rng.random(n) < _sigmoid(logit)

    onehot = np.zeros((n, len(SECTORS)))
    onehot[np.arange(n), sector] = 1.0
    X_bank = np.column_stack(
        [
            np.log10(revenue),
            years,
            employees,
            np.log10(loan),
            term,
            debt_to_rev,
            utilisation,
            delinquencies,
            guarantee,
            onehot,
        ]
    ).astype(np.float64)
    return {
        "sector": sector,
        "years": years,
        "health": health,
        "momentum": momentum,
        "revenue": revenue,
        "X_bank": X_bank,
        "y": default.astype(np.int8),
    }


def _payments_features(
    pop: Mapping[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A payment provider's view: card/wallet takings, their trend, volatility and chargebacks."""
    n = rows.size
    s, h, m = pop["sector"][rows], pop["health"][rows], pop["momentum"][rows]
    monthly = pop["revenue"][rows] / 12.0 * _CARD_SHARE[s] * np.exp(0.15 * m + rng.normal(0.0, 0.35, n))
    volume = np.maximum(np.round(monthly, -2), 100.0)
    txn = np.maximum(np.round(volume / (_TICKET[s] * np.exp(rng.normal(0.0, 0.25, n)))), 1)
    volatility = np.round(np.exp(np.log(0.25) - 0.45 * m - 0.10 * h + rng.normal(0.0, 0.3, n)), 4)
    trend = np.round(0.07 * m + rng.normal(0.0, 0.045, n), 4)
    chargeback = np.round(np.exp(np.log(0.002) - 0.35 * h - 0.25 * m + rng.normal(0.0, 0.5, n)), 5)
    months = np.minimum(np.round(pop["years"][rows] * 12), rng.integers(6, 97, n))
    return np.column_stack([np.log10(volume), txn, volatility, trend, chargeback, np.maximum(months, 3)])


def _delivery_features(
    pop: Mapping[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A delivery platform's view: orders, their growth, ratings and cancellations."""
    n = rows.size
    s, h, m = pop["sector"][rows], pop["health"][rows], pop["momentum"][rows]
    size = np.log10(pop["revenue"][rows] / 5.0e6)
    log_orders = _DLV_ORDERS[s] + 0.35 * size + 0.12 * m + rng.normal(0.0, 0.3, n)
    rating = np.round(np.clip(4.2 + 0.12 * h + 0.15 * m + rng.normal(0.0, 0.25, n), 1.0, 5.0), 2)
    growth = np.round(0.09 * m + rng.normal(0.0, 0.06, n), 4)
    cancel = np.round(_sigmoid(np.log(0.03 / 0.97) - 0.50 * m - 0.15 * h + rng.normal(0.0, 0.4, n)), 4)
    months = np.minimum(np.round(pop["years"][rows] * 12), rng.integers(3, 85, n))
    return np.column_stack([np.round(log_orders, 4), rating, growth, cancel, np.maximum(months, 1)])


def _registration_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unique ``BR`` + 8-digit ids (sampled without replacement)."""
    numbers = rng.choice(100_000_000, size=n, replace=False)
    return np.char.add("BR", np.char.zfill(numbers.astype(str), 8)).astype(object)
