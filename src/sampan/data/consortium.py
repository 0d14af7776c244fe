"""The built-in Hong Kong SME lending consortium: synthetic data with a known default model.

The demo and the examples run on this generator so that they need no downloaded data and so that
every result can be checked against the truth that produced it. Nothing here is real data.

Generating process (all draws vectorised NumPy, deterministic for a given seed)
--------------------------------------------------------------------------------
**Population.** ``n_smes`` Hong Kong SMEs, each with a unique business-registration id ``BR`` + 8
digits and latent attributes:

* sector, one of ``retail``, ``food_beverage``, ``logistics``, ``trading``, ``professional_services``,
  ``manufacturing`` (shares 22/18/12/22/16/10%);
* years in business, log-normal (median about 7 years, 0.3-50);
* employees, log-normal by sector and rising with age (1-49, up to 99 in manufacturing: the HK SME
  definition);
* annual revenue in HKD, log-normal by sector, rising with headcount and health;
* two latent factors, independent of each other: **financial health** (balance-sheet strength,
  slightly higher for older firms) and **trading momentum** (recent cash-flow trend, with a
  sector-wide shock added so that sectors fare differently).

**Bank-observable features** (the same for every bank): ``log10_annual_revenue_hkd``,
``years_in_business``, ``employees``, ``log10_loan_amount_hkd`` (requested loan),
``loan_term_months``, ``debt_to_revenue`` (existing debt / revenue), ``credit_utilisation`` (share of
overdraft limits drawn), ``past_delinquencies`` (30+ days late in the last 24 months),
``has_guarantee`` (covered by the SME Financing Guarantee Scheme) and the one-hot ``sector``. Debt,
utilisation and delinquencies are noisy readings of financial health; utilisation also leaks a little
momentum.

**Default label** (``default_12m``: default within 12 months of the loan) is Bernoulli with the
**known logistic model** ``logit p = intercept + sum(coef * term)``, where the terms are
``latent:financial_health``, ``latent:trading_momentum`` and observable bank features (log loan-to-
revenue, log years in business, debt-to-revenue, past delinquencies, sector). The coefficients, and the
intercept that makes the population default rate about 6%, are in `Consortium.true_coefficients`: a
model trained on the data can be compared against this known signal.

**Horizontal view** (`Consortium.horizontal`): every SME banks with exactly one of three banks, drawn
from sector- and age-dependent affinities, so the banks hold different customer mixes and default
rates under one feature schema:

* ``bank_harbour``: the large commercial bank; trading, manufacturing and logistics; established firms;
* ``bank_kowloon``: a community bank; retail and food & beverage;
* ``bank_lionrock``: a virtual bank; young firms and professional services.

**Vertical view** (`Consortium.vertical`): a separate scenario over the same SMEs.

* ``bank``: about 55% of the SMEs, with the bank features above and the label;
* ``bank`` draws its customers uniformly at random, so its sector mix is the population's;
* ``payments``: a payment-service provider, covering about 70% of the bank's customers (more of
  retail and F&B) plus SMEs the bank does not have (about 40% of its rows). Features
  ``pay_log10_monthly_volume_hkd``, ``pay_monthly_txn_count``, ``pay_volume_volatility``,
  ``pay_volume_trend_6m``, ``pay_chargeback_rate``, ``pay_months_active``;
* ``delivery``: a delivery / food platform, mostly F&B and retail merchants, covering about 40% of
  the bank's customers plus merchants the bank does not have. Features ``dlv_log10_monthly_orders``,
  ``dlv_rating``, ``dlv_order_growth_3m``, ``dlv_cancellation_rate``, ``dlv_months_on_platform``.

Partner features are noisy readings of trading momentum (and a little of health), which drives
default but which the bank barely sees, so a vertical model beats the bank's own model on the overlap.
Only the bank holds the label; each party's rows are in its own shuffled order; the parties share
only the registration ids, which is what private set intersection aligns on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from sampan.data.sme_population import (
    _DLV_COVER,
    _PAY_COVER,
    SECTORS,
    TRUE_COEFFICIENTS,
    _delivery_features,
    _payments_features,
    _population,
    _registration_ids,
)
from sampan.data.table import ColumnSpec, PartyData, TableSchema

# The generating process (sectors, parameters, the true model): `sampan.data.sme_population`.
__all__ = ["Consortium", "make_sme_consortium", "PUBLIC_FEATURE_BOUNDS"]

# Public ranges of the banks' features (from the generator's documented design, not from any data):
# what `[privacy.dp1].bounds` needs so the standardisation statistics can be clipped and noised.
PUBLIC_FEATURE_BOUNDS: dict[str, tuple[float, float]] = {
    "log10_annual_revenue_hkd": (5.0, 9.0), "years_in_business": (0.0, 50.0), "employees": (0.0, 100.0),
    "log10_loan_amount_hkd": (4.0, 8.0), "loan_term_months": (0.0, 120.0), "debt_to_revenue": (0.0, 3.0),
    "past_delinquencies": (0.0, 10.0), "*": (0.0, 1.0)}


BANKS: tuple[str, ...] = ("bank_harbour", "bank_kowloon", "bank_lionrock")
# Affinity of each sector for each bank (rows: banks, columns: SECTORS).
_BANK_SECTOR = np.array(
    [
        [0.6, 0.5, 2.2, 3.0, 1.2, 3.0],
        [3.0, 3.2, 0.7, 0.6, 0.6, 0.6],
        [0.7, 0.6, 0.6, 0.5, 1.6, 0.4],
    ]
)

ID_COLUMN = "br_number"
LABEL_COLUMN = "default_12m"

BANK_SCHEMA = TableSchema(
    id_column=ID_COLUMN,
    label_column=LABEL_COLUMN,
    features=(
        ColumnSpec("log10_annual_revenue_hkd"),
        ColumnSpec("years_in_business"),
        ColumnSpec("employees", "int"),
        ColumnSpec("log10_loan_amount_hkd"),
        ColumnSpec("loan_term_months", "int"),
        ColumnSpec("debt_to_revenue"),
        ColumnSpec("credit_utilisation"),
        ColumnSpec("past_delinquencies", "int"),
        ColumnSpec("has_guarantee", "bool"),
        ColumnSpec("sector", "category", SECTORS),
    ),
)
PAYMENTS_SCHEMA = TableSchema(
    id_column=ID_COLUMN,
    label_column=None,
    features=(
        ColumnSpec("pay_log10_monthly_volume_hkd"),
        ColumnSpec("pay_monthly_txn_count", "int"),
        ColumnSpec("pay_volume_volatility"),
        ColumnSpec("pay_volume_trend_6m"),
        ColumnSpec("pay_chargeback_rate"),
        ColumnSpec("pay_months_active", "int"),
    ),
)
DELIVERY_SCHEMA = TableSchema(
    id_column=ID_COLUMN,
    label_column=None,
    features=(
        ColumnSpec("dlv_log10_monthly_orders"),
        ColumnSpec("dlv_rating"),
        ColumnSpec("dlv_order_growth_3m"),
        ColumnSpec("dlv_cancellation_rate"),
        ColumnSpec("dlv_months_on_platform", "int"),
    ),
)


@dataclass
class Consortium:
    """Synthetic SME lending consortium: horizontal banks, a vertical bank + partners, and the truth."""

    seed: int
    horizontal: dict[str, PartyData]
    vertical: dict[str, PartyData]
    true_coefficients: dict[str, float]
    schemas: dict[str, TableSchema] = field(repr=False)

    def schema_for(self, party: str) -> TableSchema:
        """The declared schema of any party in either view."""
        try:
            return self.schemas[party]
        except KeyError:
            raise KeyError(f"no party '{party}'; parties: {sorted(self.schemas)}") from None

    def write_csv(
        self, folder: str | Path, view: Literal["horizontal", "vertical"] = "horizontal"
    ) -> dict[str, Path]:
        """Write each party's table of one view as ``<folder>/<party>.csv``, matching its schema.

        Categories are written as their names (not one-hot), so `load_table` reads the files back
        into identical arrays.
        """
        parties = {"horizontal": self.horizontal, "vertical": self.vertical}.get(view)
        if parties is None:
            raise ValueError(f"view must be 'horizontal' or 'vertical', got {view!r}")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, data in parties.items():
            path = out / f"{name}.csv"
            pacsv.write_csv(_to_arrow(data, self.schema_for(name)), path)
            written[name] = path
        return written

    def describe(self) -> str:
        """A few lines for the demo: who holds what, rows and default rates."""
        lines = [
            f"SME lending consortium (seed {self.seed})",
            "  horizontal (same features, different SMEs):",
        ]
        for name, d in self.horizontal.items():
            assert d.y is not None
            rate = f"default rate {d.y.mean():6.2%}"
            lines.append(f"    {name:<14} {len(d):>6} SMEs  {rate}  {d.X.shape[1]} features")
        lines.append("  vertical (same SMEs, different features):")
        bank_ids = set(self.vertical["bank"].ids.tolist())
        for name, d in self.vertical.items():
            if d.y is not None:
                extra = f"default rate {d.y.mean():6.2%}"
            else:
                shared = len(bank_ids.intersection(d.ids.tolist()))
                extra = f"{shared} shared with bank ({shared / len(bank_ids):.0%} of bank)"
            lines.append(f"    {name:<14} {len(d):>6} SMEs  {extra}  {d.X.shape[1]} features")
        return "\n".join(lines)


def _to_arrow(data: PartyData, schema: TableSchema) -> pa.Table:
    """Undo the one-hot encoding so the CSV looks like a bank's own extract."""
    cols: dict[str, pa.Array] = {schema.id_column: pa.array(data.ids.astype(str).tolist(), pa.string())}
    if schema.label_column is not None and data.y is not None:
        cols[schema.label_column] = pa.array(data.y.astype(np.int64))
    j = 0
    for spec in schema.features:
        block = data.X[:, j : j + spec.width]
        if spec.kind == "category":
            assert spec.categories is not None
            names = np.asarray(spec.categories, dtype=object)[block.argmax(axis=1)]
            cols[spec.name] = pa.array(names.tolist(), pa.string())
        elif spec.kind == "int":
            cols[spec.name] = pa.array(block[:, 0].astype(np.int64))
        elif spec.kind == "bool":
            cols[spec.name] = pa.array(block[:, 0] != 0.0)
        else:
            cols[spec.name] = pa.array(block[:, 0])
        j += spec.width
    return pa.table(cols)


def _party(
    name: str,
    ids: np.ndarray,
    X: np.ndarray,
    y: np.ndarray | None,
    schema: TableSchema,
    rng: np.random.Generator,
) -> PartyData:
    """A party's table in its own shuffled row order."""
    order = rng.permutation(ids.size)
    return PartyData(
        party=name,
        ids=ids[order],
        X=np.round(X[order], 6),
        y=None if y is None else y[order],
        feature_names=schema.feature_names(),
    )


def make_sme_consortium(n_smes: int = 12000, seed: int | None = None) -> Consortium:
    """Generate the SME lending consortium (see the module docstring for the generating process)."""
    if isinstance(n_smes, bool) or int(n_smes) != n_smes or n_smes < 300:
        raise ValueError(f"n_smes must be an integer >= 300, got {n_smes!r}")
    n = int(n_smes)
    if seed is None:
        seed = secrets.randbits(63)
    rng = np.random.default_rng(seed)
    pop = _population(n, rng)
    ids = _registration_ids(n, rng)
    X_bank, y = pop["X_bank"], pop["y"]

    # Horizontal: each SME at exactly one bank, by sector and age affinity.
    young = pop["years"] < 3.0
    established = pop["years"] >= 5.0
    affinity = _BANK_SECTOR[:, pop["sector"]].T.copy()
    affinity[:, 0] *= np.where(established, 1.5, 0.6)
    affinity[:, 2] *= np.where(young, 3.5, 0.5)
    cum = np.cumsum(affinity / affinity.sum(axis=1, keepdims=True), axis=1)
    bank_of = (rng.random(n)[:, None] > cum).sum(axis=1)
    horizontal = {
        name: _party(name, ids[bank_of == b], X_bank[bank_of == b], y[bank_of == b], BANK_SCHEMA, rng)
        for b, name in enumerate(BANKS)
    }

    # Vertical: one bank and two partners with partial, sector-dependent coverage.
    at_bank = rng.random(n) < 0.55
    pay_cover = np.where(at_bank, _PAY_COVER[pop["sector"]], 0.8 * _PAY_COVER[pop["sector"]])
    at_pay = rng.random(n) < pay_cover
    at_dlv = rng.random(n) < _DLV_COVER[pop["sector"]]
    bank_rows, pay_rows, dlv_rows = (np.flatnonzero(m) for m in (at_bank, at_pay, at_dlv))
    vertical = {
        "bank": _party("bank", ids[bank_rows], X_bank[bank_rows], y[bank_rows], BANK_SCHEMA, rng),
        "payments": _party(
            "payments", ids[pay_rows], _payments_features(pop, pay_rows, rng), None, PAYMENTS_SCHEMA, rng
        ),
        "delivery": _party(
            "delivery", ids[dlv_rows], _delivery_features(pop, dlv_rows, rng), None, DELIVERY_SCHEMA, rng
        ),
    }
    schemas = {name: BANK_SCHEMA for name in (*BANKS, "bank")}
    schemas.update(payments=PAYMENTS_SCHEMA, delivery=DELIVERY_SCHEMA)
    return Consortium(
        seed=int(seed),
        horizontal=horizontal,
        vertical=vertical,
        true_coefficients=dict(TRUE_COEFFICIENTS),
        schemas=schemas,
    )
