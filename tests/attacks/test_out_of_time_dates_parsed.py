"""Review (issue 13) of the out-of-time holdout (`sampan.horizontal.holdout_split.dated_split`, `[data] date_column`).

R13-OOT-1: a date that is not a number sorts as TEXT (`_order_key`), with no check that the text is an
order-preserving format. A bank's file with day-first dates (31/12/2025, the usual European format) is split
silently on the wrong rows: 31/01/2025 sorts after 01/12/2025, so the "newest" rows held out are the rows
with the latest day of month, not the latest dates. The validation pack then states "the holdout at each party
is its newest rows by 'month'", an out-of-time claim that is false. It should hold out the newest rows or
refuse a date it cannot order (naming the party, file, column and rows).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from sampan.data import DataValidationError, PartyData
from sampan.horizontal.holdout_split import dated_split


def test_day_first_dates_hold_out_the_newest_rows_or_are_refused() -> None:
    days = [date(2025, 1, 1) + timedelta(days=7 * i) for i in range(40)]  # 2025-01-01 .. 2025-09-30, in order
    dates = np.array([d.strftime("%d/%m/%Y") for d in days], dtype=object)
    table = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(40)], dtype=object),
                      X=np.zeros((40, 1)), y=np.zeros(40, dtype=np.int8), feature_names=["a"])
    try:
        _, test = dated_split("bank", table, dates, 0.25)
    except DataValidationError:
        return  # refusing a date it cannot order is fine
    assert sorted(test.ids) == sorted(f"r{i}" for i in range(30, 40)), sorted(test.ids)


def _dated(fmt: str) -> tuple[PartyData, np.ndarray]:
    days = [date(2025, 1, 1) + timedelta(days=7 * i) for i in range(40)]
    table = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(40)], dtype=object),
                      X=np.zeros((40, 1)), y=np.zeros(40, dtype=np.int8), feature_names=["a"])
    return table, np.array([d.strftime(fmt) for d in days], dtype=object)


def test_a_named_date_format_and_iso_dates_hold_out_the_newest_rows() -> None:
    newest = sorted(f"r{i}" for i in range(30, 40))
    table, dates = _dated("%d/%m/%Y")
    assert sorted(dated_split("bank", table, dates, 0.25, date_format="%d/%m/%Y")[1].ids) == newest
    table, dates = _dated("%Y-%m-%d")
    assert sorted(dated_split("bank", table, dates, 0.25)[1].ids) == newest


def test_an_unparseable_date_names_the_party_file_column_and_rows() -> None:
    table, dates = _dated("%d/%m/%Y")
    with pytest.raises(DataValidationError, match=r"party 'bank': file 'b.csv', column 'month': rows \[2, 3"):
        dated_split("bank", table, dates, 0.25, column="month", path="b.csv")
