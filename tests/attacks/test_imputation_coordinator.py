"""A curious coordinator tries to learn one record's value from a bank's imputation statistics (issue 13 item 1).

Claim (`sampan.privacy.imputation`): under DP a bank releases its imputation statistics once per run, through one
Gaussian mechanism charged to its own ledger before anything is computed; the coordinator cannot get a second,
differently binned release in the run (a "chosen bins" probe that would isolate one value), cannot get exact
statistics in a DP run or from a party whose policy requires DP, cannot skip the public bounds (an unclipped sum
has no sensitivity), cannot ask for exact ranges under DP, cannot ask for less noise than the bank accepts, and
cannot ask about a column the bank does not impute. Each attempt goes through the bank's public handlers only.
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
    {"name": "income", "impute": "median", "bounds": [0, 100]}, {"name": "debt", "impute": "mean", "bounds": [0, 50]},
    {"name": "age"}])
MEDIAN = {"index": 0, "name": "income", "statistic": "median", "bounds": [0.0, 100.0], "bins": 32}
MEAN = {"index": 1, "name": "debt", "statistic": "mean", "bounds": [0.0, 50.0]}


def _bank(policy: PartyPrivacyPolicy | None = None) -> HorizontalParty:
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.uniform(0, 100, 60), rng.uniform(0, 50, 60), rng.uniform(20, 70, 60)])
    X[::7, 0] = np.nan
    X[::5, 1] = np.nan
    data = PartyData("bank_a", np.array([f"r{i}" for i in range(60)], dtype=object), X,
                     (rng.random(60) < 0.3).astype(np.int8), SCHEMA.feature_names(), missing_columns(SCHEMA))
    return HorizontalParty("bank_a", data, data.subset(np.arange(0)), policy or PartyPrivacyPolicy())


def _ask(bank: HorizontalParty, meta: dict, run: str = "run-1") -> Message:
    return bank.handlers()["impute_stats"](Message(run, 0, "coordinator", "bank_a", "impute_stats", meta=meta))


def _dp(columns: list[dict], z: float = 2.0) -> dict:
    return {"columns": columns, "dp": {"noise_multiplier": z}}


def _charges(policy: PartyPrivacyPolicy) -> int:
    return len(policy.ledger("bank_a").events)


def test_a_dp_release_is_charged_once_and_a_repeat_is_the_same_release() -> None:
    policy = PartyPrivacyPolicy()
    bank = _bank(policy)
    first = _ask(bank, _dp([MEDIAN, MEAN]))
    assert _charges(policy) == 1 and first.meta == {"dp": True}
    again = _ask(bank, _dp([MEDIAN, MEAN]))  # a retry learns nothing new: the same noise, no second charge
    assert _charges(policy) == 1
    for key in ("count", "sum", "hist"):
        assert np.array_equal(first.arrays[key], again.arrays[key])


@pytest.mark.parametrize("probe", [
    _dp([{**MEDIAN, "bins": 1024}, MEAN]),                            # finer bins to isolate one value
    _dp([{**MEDIAN, "bounds": [41.0, 42.0]}, MEAN]),                  # a one-value window
    _dp([MEDIAN]),                                                     # another column set
    _dp([MEDIAN, MEAN], z=3.0),                                        # another noise: still a second release
])
def test_a_second_different_release_in_the_run_is_refused(probe: dict) -> None:
    policy = PartyPrivacyPolicy()
    bank = _bank(policy)
    _ask(bank, _dp([MEDIAN, MEAN]))
    with pytest.raises(PolicyRefused, match="second imputation release"):
        _ask(bank, probe)
    assert _charges(policy) == 1
    if probe["columns"][0] is MEDIAN:  # a new run is a new release, charged again
        _ask(bank, probe, run="run-2")
        assert _charges(policy) == 2
    else:  # other bins or a window: not the bank's own schema, refused in any run, uncharged (review R13-IMP-1/3)
        with pytest.raises(PolicyRefused, match="bins|declares"):
            _ask(bank, probe, run="run-2")
        assert _charges(policy) == 1


@pytest.mark.parametrize(("meta", "needle"), [
    (_dp([{**MEAN, "bounds": None}]), "its schema declares"),
    (_dp([MEDIAN, MEDIAN]), "asked twice"),
    (_dp([MEDIAN, {**MEDIAN, "statistic": "sketch"}]), "asked twice"),
    (_dp([{**MEDIAN, "statistic": "mean"}]), "imputes it by the median"),
    ({"ranges": [{"index": 0}], "dp": {"noise_multiplier": 2.0}}, "ranges under DP"),
    (_dp([MEDIAN], z=0.1), "below its minimum noise"),
    (_dp([{**MEDIAN, "bins": 100000}]), "at most"),
    (_dp([{**MEAN, "index": 2, "name": "age"}]), "imputes no such column"),
])
def test_unsafe_dp_requests_are_refused(meta: dict, needle: str) -> None:
    with pytest.raises((PolicyRefused, ValueError), match=needle):
        _ask(_bank(), meta)


def test_exact_statistics_are_refused_in_a_dp_run_and_under_a_dp_policy() -> None:
    bank = _bank()
    _ask(bank, _dp([MEDIAN, MEAN]))
    with pytest.raises(PolicyRefused, match="without dp"):
        _ask(bank, {"columns": [MEDIAN, MEAN]})  # same run: DP cannot be switched off half-way
    strict = _bank(PartyPrivacyPolicy(required_levels=frozenset({"DP1"})))
    with pytest.raises(PolicyRefused, match="without dp"):
        _ask(strict, {"columns": [MEDIAN, MEAN]}, run="run-9")


def test_the_release_is_noised_at_the_bank() -> None:
    bank = _bank()
    exact = _ask(bank, {"columns": [{**MEDIAN, "bins": 1024}, MEAN]}, run="plain")
    noised = _ask(bank, _dp([MEDIAN, MEAN]), run="dp")
    assert exact.arrays["hist"].sum() == 60 - len(range(0, 60, 7))
    assert exact.arrays["hist"].size == 1024 and noised.arrays["hist"].size == 32
    assert not np.array_equal(exact.arrays["count"], noised.arrays["count"])


def test_a_deployed_bank_gate_answers_imputation_only_as_its_job_announced() -> None:
    """The agent's gate (before the bank's own mod): `impute_stats` belongs to a horizontal job; in a job announced
    with DP it must carry the DP noise, at or above the bank's floor."""
    from sampan.deploy.allow import AllowSection, JobRefused, check_request

    dp_job = {"workflow": "horizontal", "protections": ["dp", "dp1", "dp2"], "parties": ["bank_a", "bank_b"]}
    check_request(AllowSection(), "bank_a", "impute_stats", _dp([MEDIAN]), dp_job)
    with pytest.raises(JobRefused, match="no dp"):
        check_request(AllowSection(), "bank_a", "impute_stats", {"columns": [MEDIAN]}, dp_job)
    with pytest.raises(JobRefused, match="noise multiplier"):
        check_request(AllowSection(min_noise_multiplier=5.0), "bank_a", "impute_stats", _dp([MEDIAN]), dp_job)
    exact = {"columns": [{**MEDIAN, "bins": 1024}]}  # without DP the median sketch has the exact run's 1024 bins
    check_request(AllowSection(), "bank_a", "impute_stats", exact, {"workflow": "horizontal"})
