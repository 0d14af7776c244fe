"""Found in review (issue 13), fixed: the DP1 imputation release (`sampan.privacy.imputation`,
`sampan.horizontal.imputation`), through a bank's public `impute_stats` handler, as a malicious coordinator. The defence
(`sampan.privacy.imputation_request`): a bank checks every request against its OWN schema (its imputed columns,
each once, with its declared statistic, bounds and the run's bin count) before any charge, and clips each z.

R13-IMP-1: the party noises [count, sum, hist] with sensitivity sqrt(2·k_mean + k_median), counting only the
columns whose requested `statistic` is exactly "mean" or "median"; the exact handler computes a histogram for
EVERY column that is not "mean". A column asked with any other statistic ("sketch") adds a histogram (one more
unit of L2 sensitivity per copy, the same column may be asked again and again) but nothing to the sensitivity the
noise is scaled by. One median column plus 399 "sketch" copies of it is noised as if it were one histogram: the
coordinator averages the 400 independently noised copies and reads the exact histogram of the bank's present
values, in ONE charged release (charged at the requested noise multiplier, true multiplier 20x smaller).
(privacy/imputation.py `imputation_sensitivity`; horizontal/imputation.py `impute_statistics` else-branch.)

R13-IMP-2: the mean's clipped z = (clip(x, lo, hi) − mid)/half-width is assumed to lie in [−1, 1] (sum
sensitivity 1), but `mid = (lo + hi)/2` is rounded: with bounds one ulp apart ([1, nextafter(1, 2)]) mid rounds to
lo and a value at hi contributes z = 2. The coordinator picks the bounds (they are only required to be present),
so the sum's sensitivity is 2 while the release is charged for 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.data import PartyData, TableSchema
from sampan.data.missing import missing_columns
from sampan.horizontal.party import HorizontalParty
from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused
from sampan.wire import Message

SCHEMA = TableSchema(id="id", label="y", features=[
    {"name": "income", "impute": "median", "bounds": [0, 100]}, {"name": "debt", "impute": "mean", "bounds": [0, 50]}])
MEDIAN = {"index": 0, "name": "income", "statistic": "median", "bounds": [0.0, 100.0], "bins": 32}


def _bank() -> HorizontalParty:
    rng = np.random.default_rng(13)
    X = np.column_stack([rng.uniform(0, 100, 60), rng.uniform(1, 50, 60)])
    X[::7, 0] = np.nan
    X[::5, 1] = np.nan
    data = PartyData("bank_a", np.array([f"r{i}" for i in range(60)], dtype=object), X,
                     (rng.random(60) < 0.3).astype(np.int8), SCHEMA.feature_names(), missing_columns(SCHEMA))
    return HorizontalParty("bank_a", data, data.subset(np.arange(0)), PartyPrivacyPolicy())


def _ask(bank: HorizontalParty, meta: dict, run: str) -> Message:
    return bank.handlers()["impute_stats"](Message(run, 0, "coordinator", "bank_a", "impute_stats", meta=meta))


def test_unknown_statistic_copies_do_not_cancel_the_noise() -> None:
    """R13-IMP-1: 400 copies of one median column (399 asked as "sketch") averaged to read the exact histogram."""
    bank = _bank()
    present = bank.train_data.X[:, 0][~np.isnan(bank.train_data.X[:, 0])]
    exact = np.histogram(present, bins=MEDIAN["bins"], range=(0.0, 100.0))[0]
    probe = {"columns": [MEDIAN] + [{**MEDIAN, "statistic": "sketch"}] * 399, "dp": {"noise_multiplier": 2.0}}
    try:
        reply = _ask(bank, probe, run="dp")
    except (PolicyRefused, ValueError):
        return  # refused: the defence holds
    copies = reply.arrays["hist"].reshape(400, MEDIAN["bins"])
    # what SHOULD hold: every histogram the coordinator sees carries the charged noise (z=2 on sensitivity
    # sqrt(400)), so their average is nowhere near the exact counts
    assert not np.array_equal(np.rint(copies.mean(axis=0)), exact)


def test_each_present_value_adds_at_most_one_to_the_clipped_sum() -> None:
    """R13-IMP-2: mean bounds one ulp apart (the rounded midpoint is the low bound) make a value count 2."""
    lo = 1.0
    hi = float(np.nextafter(lo, 2.0))
    mean = {"index": 1, "name": "debt", "statistic": "mean", "bounds": [lo, hi]}
    try:
        reply = _ask(_bank(), {"columns": [mean]}, run="plain")  # the exact statistic the DP mod noises
    except (PolicyRefused, ValueError):
        reply = None  # refused: the bank clips to its own schema's bounds only
    if reply is not None:
        count, total = float(reply.arrays["count"][0]), float(reply.arrays["sum"][0])
        assert abs(total) <= count  # |z| <= 1 per present cell: the sensitivity the release is charged for
    with pytest.raises(ValueError, match="debt"):  # nor can a schema declare such bounds
        TableSchema(id="id", label="y", features=[{"name": "debt", "impute": "mean", "bounds": [lo, hi]}])
    # and a value on the bound adds exactly 1 (the z is clipped itself, not only the value)
    edge = _bank()
    edge.train_data.X[:, 1] = 50.0
    reply = _ask(edge, {"columns": [{**mean, "bounds": [0.0, 50.0]}]}, run="edge")
    assert float(reply.arrays["sum"][0]) == float(reply.arrays["count"][0]) == 60.0
