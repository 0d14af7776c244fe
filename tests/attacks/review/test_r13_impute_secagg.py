"""Review (issue 13) of the deployed bank's request gate (`sampan.deploy.allow_requests`) for `impute_stats`, as
a curious coordinator.

R13-IMP-4: issue 13 requires every new statistic that leaves a party (imputation statistics first) to be summed
under secure aggregation when that is on. The imputation statistics are released per bank in clear instead, and
a bank whose allow list REQUIRES secure_aggregation still answers an exact `impute_stats` (per-bank counts, sums
and a histogram of up to 1024 bins of its column) in a job that announced secure aggregation (and no DP). The gate
refuses the other per-bank clear releases of issue 13 where SecAgg is required (`bank_alone`, `evaluate_groups`,
`hgb.*`), not this one. (deploy/allow_requests.py, the `impute_stats` branch of `check_request`.)
"""

from __future__ import annotations

import pytest

from sampan.deploy.allow import AllowSection, JobRefused, check_request

MEDIAN = {"index": 0, "name": "income", "statistic": "median", "bounds": [0.0, 100.0], "bins": 1024}
SECAGG_JOB = {"workflow": "horizontal", "protections": ["secure_aggregation"], "parties": ["bank_a", "bank_b", "c"]}


@pytest.mark.xfail(strict=True, reason="R13-IMP-4: a bank that requires secure aggregation answers exact per-bank "
                                       "imputation statistics in clear")
def test_a_bank_requiring_secagg_refuses_imputation_statistics_in_clear() -> None:
    with pytest.raises(JobRefused):
        check_request(AllowSection(require=["secure_aggregation"]), "bank_a", "impute_stats", {"columns": [MEDIAN]},
                      SECAGG_JOB)


DP_JOB = {"workflow": "horizontal", "protections": ["dp", "dp1", "dp2"], "parties": ["bank_a", "bank_b"]}


@pytest.mark.xfail(strict=True, reason="R13-IMP-5: a malformed impute_stats meta.dp crashes the bank's request gate "
                                       "(AttributeError) instead of a refusal")
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
