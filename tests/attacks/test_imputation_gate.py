"""Found in review (issue 13), fixed: the deployed bank's request gate (`sampan.deploy.allow_requests`) for
`impute_stats`, as a curious coordinator.

R13-IMP-4: issue 13 requires every new statistic that leaves a party (imputation statistics first) to be summed
under secure aggregation when that is on. The imputation statistics are released per bank in clear instead, and
a bank whose allow list REQUIRES secure_aggregation still answers an exact `impute_stats` (per-bank counts, sums
and a histogram of up to 1024 bins of its column) in a job that announced secure aggregation (and no DP). The gate
refuses the other per-bank clear releases of issue 13 where SecAgg is required (`bank_alone`, `evaluate_groups`,
`hgb.*`), not this one. (deploy/allow_requests.py, the `impute_stats` branch of `check_request`.)
The defence (`sampan.deploy.allow_impute`): such a bank refuses `impute_stats` (the statistics are never summed
under SecAgg); a malformed request (dp not a table, unknown statistic, repeated column, other bin count) is
refused by the gate, naming the rule.
"""

from __future__ import annotations

import pytest

from sampan.deploy.allow import AllowSection, JobRefused, check_request

MEDIAN = {"index": 0, "name": "income", "statistic": "median", "bounds": [0.0, 100.0], "bins": 1024}
SECAGG_JOB = {"workflow": "horizontal", "protections": ["secure_aggregation"], "parties": ["bank_a", "bank_b", "c"]}


def test_a_bank_requiring_secagg_refuses_imputation_statistics_in_clear() -> None:
    """R13-IMP-4: exact per-bank imputation statistics in clear to a bank that requires secure aggregation."""
    with pytest.raises(JobRefused):
        check_request(AllowSection(require=["secure_aggregation"]), "bank_a", "impute_stats", {"columns": [MEDIAN]},
                      SECAGG_JOB)


DP_JOB = {"workflow": "horizontal", "protections": ["dp", "dp1", "dp2"], "parties": ["bank_a", "bank_b"]}


@pytest.mark.parametrize("dp", [5, "x", [1.0]])
def test_a_malformed_dp_field_is_refused_by_the_gate(dp: object) -> None:
    """R13-IMP-5: `(meta.get("dp") or {}).get(...)` in the gate raises AttributeError on a non-mapping `dp`; the
    agent (`PartyAgent.handle`) catches only JobRefused around the gate, so the exception escapes the handler (the
    link's session is torn down) and the request is neither refused nor written to the bank's audit log."""
    try:
        check_request(AllowSection(min_noise_multiplier=1.0), "bank_a", "impute_stats",
                      {"columns": [MEDIAN], "dp": dp}, DP_JOB)
    except JobRefused:
        return
    raise AssertionError("a malformed dp field passed the gate")


@pytest.mark.parametrize(("kind", "meta"), [("stats", {"dp1": 5}), ("describe", {"dp_count": "x"})])
def test_a_malformed_dp_field_of_the_older_requests_is_refused(kind: str, meta: dict) -> None:
    """R13-IMP-5, the older `stats` / `describe` branches: the same dereference of a non-mapping."""
    with pytest.raises(JobRefused, match="not a table"):
        check_request(AllowSection(min_noise_multiplier=1.0), "bank_a", kind, meta, DP_JOB)


@pytest.mark.parametrize("meta", [
    {"columns": [MEDIAN] + [{**MEDIAN, "statistic": "sketch"}] * 3, "dp": {"noise_multiplier": 2.0}},
    {"columns": [{**MEDIAN, "bins": 32}, {**MEDIAN, "bins": 32}], "dp": {"noise_multiplier": 2.0}},
    {"columns": [MEDIAN], "dp": {"noise_multiplier": 2.0}},           # 1024 bins under DP: the run's count is 32
    {"ranges": [{"index": 0}], "dp": {"noise_multiplier": 2.0}},
    {"columns": [{**MEDIAN, "bins": 32}], "dp": {"noise_multiplier": 0}},
])
def test_a_request_no_honest_coordinator_sends_is_refused_by_the_gate(meta: dict) -> None:
    """R13-IMP-1 at the gate: unknown statistics, copies of a column, another bin count, ranges under DP."""
    with pytest.raises(JobRefused):
        check_request(AllowSection(), "bank_a", "impute_stats", meta, DP_JOB)
