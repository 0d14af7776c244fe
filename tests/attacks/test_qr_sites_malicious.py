"""Malicious verification sites return wrong partial results (`sampan.qr.distributed`).

Claims: with m answers and quorum t, up to m - t wrong partial results are DETECTED (they cannot all lie on the
honest polynomial) and the combiner refuses a verdict; a single liar among m >= t + 2 answers is NAMED; a site
running the wrong key (a misconfigured or impersonating site) is caught the same way. Not claimed: with exactly t
answers nothing can be checked, and the verdict says so (checked=False); `require_checked` refuses it instead.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sampan.qr.distributed import (
    Combiner,
    FixedLinear,
    InconsistentResultsError,
    KeyedCorrelation,
    NoQuorumError,
    PartialResult,
    ScanRequest,
    VerificationSite,
    make_request,
)
from sampan.qr.features import N_STATS
from sampan.qr.shares import PRIME

N, T, S = 16, 3, 5


class LyingSite(VerificationSite):
    """Answers honestly, then shifts its partial result (to push a copy over the threshold)."""

    def __init__(self, *args: object, shift: int = 1 << 60, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.shift = shift

    def answer(self, request: ScanRequest) -> PartialResult:
        honest = super().answer(request)
        return dataclasses.replace(honest, values={k: (v + self.shift) % PRIME for k, v in honest.values.items()})


def _sites(w: np.ndarray, liars: set[int]) -> list[VerificationSite]:
    return [(LyingSite if i in liars else VerificationSite)(f"site{i}", i, [FixedLinear("lin", w)])
            for i in range(1, S + 1)]


def _answers(sites: list[VerificationSite], x: np.ndarray, names: set[str] | None = None) -> tuple[str, list]:
    request = make_request(x, "SN-1", [s.info for s in sites], T)
    return request.scan_id, [s.answer(request) for s in sites if names is None or s.name in names]


def test_one_liar_among_all_sites_is_detected_and_named() -> None:
    rng = np.random.default_rng(1)
    w, x = rng.normal(size=N), rng.normal(size=N)
    sites = _sites(w, {4})
    combiner = Combiner(T, [s.info for s in sites], {"lin": 0.0})
    scan_id, answers = _answers(sites, x)
    with pytest.raises(InconsistentResultsError, match="inconsistent") as info:
        combiner.combine(scan_id, answers)
    assert info.value.suspects == ("site4",)
    # a small shift (one unit in the last place) is caught too: the check is exact, not statistical
    sites[3].shift = 1  # type: ignore[attr-defined]
    scan_id, answers = _answers(sites, x)
    with pytest.raises(InconsistentResultsError):
        combiner.combine(scan_id, answers)


def test_two_liars_among_five_with_t_3_are_detected_without_a_verdict() -> None:
    rng = np.random.default_rng(2)
    sites = _sites(rng.normal(size=N), {2, 5})
    combiner = Combiner(T, [s.info for s in sites], {"lin": 0.0})
    scan_id, answers = _answers(sites, rng.normal(size=N))
    with pytest.raises(InconsistentResultsError, match="no verdict"):
        combiner.combine(scan_id, answers)


def test_a_site_with_the_wrong_cdp_key_is_caught() -> None:
    side = 8
    x = np.random.default_rng(3).normal(size=N_STATS + side * side)
    key, wrong = bytes(range(32)), b"\x42" * 32
    sites = [VerificationSite(f"site{i}", i, [KeyedCorrelation(wrong if i == 2 else key)]) for i in range(1, S + 1)]
    combiner = Combiner(T, [s.info for s in sites], {"correlation": 0.3})
    request = make_request(x, "SN-9", [s.info for s in sites], T)
    with pytest.raises(InconsistentResultsError) as info:
        combiner.combine(request.scan_id, [s.answer(request) for s in sites])
    assert info.value.suspects == ("site2",)


def test_with_exactly_t_answers_a_liar_is_not_detected_and_the_verdict_says_unchecked() -> None:
    rng = np.random.default_rng(4)
    w, x = rng.normal(size=N), rng.normal(size=N)
    sites = _sites(w, {1})
    combiner = Combiner(T, [s.info for s in sites], {"lin": 0.0})
    scan_id, answers = _answers(sites, x, {"site1", "site2", "site3"})
    verdict = combiner.combine(scan_id, answers)
    assert verdict.checked is False  # the honest limit of a bare quorum
    strict = Combiner(T, [s.info for s in sites], {"lin": 0.0}, require_checked=True)
    with pytest.raises(NoQuorumError, match="checked verdict"):
        strict.combine(scan_id, answers)
    # one more honest answer is enough to catch it
    scan_id, answers = _answers(sites, x, {"site1", "site2", "site3", "site4"})
    with pytest.raises(InconsistentResultsError):
        strict.combine(scan_id, answers)
