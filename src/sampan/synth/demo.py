"""Public schemas for the built-in SME consortium and the public credit datasets, and table helpers.

Bounds here are domain knowledge written down before looking at any record (regulatory or product
limits, data dictionaries), rounded generously: that is what makes them public and the DP guarantee
cover the whole model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sampan.data import load_german_credit, load_taiwan_default, make_sme_consortium
from sampan.data.public import GERMAN_SCHEMA, TAIWAN_SCHEMA
from sampan.data.sme_population import SECTORS
from sampan.synth.schema import SynthColumn, SynthSchema
from sampan.synth.table import Table, table_from_party_data

__all__ = ["GERMAN_SYNTH_SCHEMA", "SME_SYNTH_SCHEMA", "TAIWAN_SYNTH_SCHEMA", "consortium_tables", "german_table",
           "taiwan_table"]

_BINARY = ("0", "1")

SME_SYNTH_SCHEMA = SynthSchema(
    columns=(
        SynthColumn("default_12m", "categorical", _BINARY),
        SynthColumn("log10_annual_revenue_hkd", "numeric", bounds=(5.0, 9.5)),
        SynthColumn("years_in_business", "numeric", bounds=(0.0, 60.0)),
        SynthColumn("employees", "numeric", bounds=(1, 99), integer=True),  # HK SME definition: < 100
        SynthColumn("log10_loan_amount_hkd", "numeric", bounds=(4.0, 8.5)),
        SynthColumn("loan_term_months", "numeric", bounds=(1, 120), integer=True),
        SynthColumn("debt_to_revenue", "numeric", bounds=(0.0, 5.0)),
        SynthColumn("credit_utilisation", "numeric", bounds=(0.0, 1.0)),
        SynthColumn("past_delinquencies", "numeric", bounds=(0, 24), integer=True),  # months in 24
        SynthColumn("has_guarantee", "categorical", ("false", "true")),
        SynthColumn("sector", "categorical", SECTORS),
    ),
    label="default_12m",
    positive="1",
)

_PAY_STATUS = tuple(str(i) for i in range(-2, 10))  # -2..0 as found, -1 paid duly, 1..9 months late
TAIWAN_SYNTH_SCHEMA = SynthSchema(
    columns=(
        SynthColumn("default.payment.next.month", "categorical", _BINARY),
        SynthColumn("LIMIT_BAL", "numeric", bounds=(0, 1_000_000), integer=True),
        SynthColumn("SEX", "categorical", ("1", "2")),
        SynthColumn("EDUCATION", "categorical", tuple(str(i) for i in range(7))),
        SynthColumn("MARRIAGE", "categorical", tuple(str(i) for i in range(4))),
        SynthColumn("AGE", "numeric", bounds=(18, 100), integer=True),
        *(SynthColumn(f"PAY_{i}", "numeric", bounds=(-2, 9), integer=True) for i in (0, 2, 3, 4, 5, 6)),
        *(SynthColumn(f"BILL_AMT{i}", "numeric", bounds=(-500_000, 2_000_000), integer=True) for i in range(1, 7)),
        *(SynthColumn(f"PAY_AMT{i}", "numeric", bounds=(0, 2_000_000), integer=True) for i in range(1, 7)),
    ),
    label="default.payment.next.month",
    positive="1",
)

_GERMAN_NUMERIC = {
    "duration": (1, 120), "amount": (0, 25_000), "installment_rate": (1, 4), "present_residence": (1, 4),
    "age": (18, 100), "number_credits": (1, 4), "people_liable": (1, 2),
}
GERMAN_SYNTH_SCHEMA = SynthSchema(
    columns=(
        SynthColumn("default", "categorical", _BINARY),
        *(SynthColumn(spec.name, "numeric", bounds=_GERMAN_NUMERIC[spec.name], integer=True)
          if spec.name in _GERMAN_NUMERIC else SynthColumn(spec.name, "categorical", spec.categories)
          for spec in GERMAN_SCHEMA.features),
    ),
    label="default",
    positive="1",
)


def consortium_tables(n_smes: int, seed: int | None) -> dict[str, Table]:
    """The built-in consortium's banks (horizontal view) as synthesiser tables."""
    consortium = make_sme_consortium(n_smes, seed=seed)
    return {name: table_from_party_data(data, consortium.schema_for(name))
            for name, data in consortium.horizontal.items()}


def taiwan_table(path: str | Path) -> Table:
    """Taiwan default table with integer-coded categoricals as text."""
    data = load_taiwan_default(path)
    table = table_from_party_data(data, TAIWAN_SCHEMA, TAIWAN_SYNTH_SCHEMA.label)
    for name in ("SEX", "EDUCATION", "MARRIAGE"):
        table[name] = np.array([str(int(v)) for v in table[name]], dtype=object)
    return table


def german_table(path: str | Path) -> Table:
    return table_from_party_data(load_german_credit(path), GERMAN_SCHEMA, GERMAN_SYNTH_SCHEMA.label)
