"""REVQ-14 (issue 20 review): the device's feature vector is range-checked once it is secret-shared.

`sampan.qr.features` standardises the CDP cells on the device; the sites see uniform shares and cannot
re-standardise, so a scanning app that multiplied a copy's cells by 2 doubled its correlation. Now the sites
also return the cells' moments (sum, and sum of squares as a degree-2 product of shares) and the combiner
refuses unstandardised cells (`sampan.qr.cellcheck`): the scaled photocopy is a copy again.
"""

from __future__ import annotations

import dataclasses
import secrets

import numpy as np
import pytest

import sampan.qr.cellcheck as cellcheck
from sampan.qr.distributed import (
    Combiner,
    InconsistentResultsError,
    KeyedCorrelation,
    NoQuorumError,
    PartialResult,
    ScanRequest,
    VerificationSite,
    verify_distributed,
)
from sampan.qr.features import N_STATS
from sampan.qr.shares import PRIME
from tests.qr._q3_data import KEY, features_set


def test_revq14_scaled_copy_features_do_not_turn_a_copy_into_an_original() -> None:
    data = features_set(3, ("photocopy",), seed=11)
    sites = [VerificationSite(f"site{i}", i, [KeyedCorrelation(KEY)]) for i in (1, 2, 3)]

    def corr(x: np.ndarray, i: int) -> float:
        return verify_distributed(x, f"SN-{i}", sites, Combiner(2, [s.info for s in sites], {"correlation": 0.0}))\
            .scores["correlation"]

    originals = [corr(x, i) for i, x in enumerate(data["original"])]
    copies = [corr(x, i) for i, x in enumerate(data["photocopy"])]
    assert min(originals) > max(copies)  # honest features separate originals from photocopies
    combiner = Combiner(2, [s.info for s in sites], {"correlation": (min(originals) + max(copies)) / 2})
    for i, x in enumerate(data["original"]):
        verdict = verify_distributed(x, f"SN-{i}", sites, combiner)
        assert verdict.verdict == "original" and verdict.standardised is True
        assert abs(verdict.moments["cells_var"] - 1.0) < 1e-4
        assert verdict.checked is False  # 3 answers open the sum of squares (2t - 1): nothing left to cross-check
    for i, x in enumerate(data["photocopy"]):
        assert verify_distributed(x, f"SN-{i}", sites, combiner).verdict == "copy"
        for scale, shift in ((2.0, 0.0), (1.5, 0.3), (0.5, 0.0)):
            forged = x.copy()
            forged[N_STATS:] = forged[N_STATS:] * scale + shift  # the app lies through the honest encoder
            verdict = verify_distributed(forged, f"SN-{i}", sites, combiner)
            assert verdict.verdict == "copy" and verdict.standardised is False
    # the product of shares needs 2t - 1 answers: with t = 2 of 3, a third site must answer
    with pytest.raises(NoQuorumError, match="2t - 1"):
        verify_distributed(data["original"][0], "SN-0", sites, combiner, available={"site1", "site2"})


def test_revq14_the_residual_limit_is_documented() -> None:
    """A device that deviates from the sharing itself is not excluded: the docstring must say so."""
    doc = " ".join((cellcheck.__doc__ or "").split())
    assert "a MALICIOUS device that deviates from the sharing itself" in doc
    assert "needs 2t - 1 answering sites" in doc
    assert "one extra linear functional of the cells" in doc.lower() or "ONE extra linear functional" in doc


def test_revq14_a_site_that_shifts_the_sum_of_squares_is_caught_with_2t_answers() -> None:
    """A lying site could pass a scaled vector by faking the moments; with 2t answers the moments are checked."""

    class ShiftingSite(VerificationSite):
        def answer(self, request: ScanRequest) -> PartialResult:
            honest = super().answer(request)
            values = dict(honest.values)
            values[cellcheck.SUMSQ] = (values[cellcheck.SUMSQ] - (3 << 40) * 256) % PRIME
            return dataclasses.replace(honest, values=values)

    side = 16
    rng = np.random.default_rng(secrets.randbits(128))
    cells = rng.normal(size=side * side)
    x = np.concatenate([rng.normal(size=N_STATS), 2.0 * (cells - cells.mean()) / cells.std()])  # scaled by 2
    sites = [(ShiftingSite if i == 2 else VerificationSite)(f"site{i}", i, [KeyedCorrelation(KEY)])
             for i in (1, 2, 3, 4)]
    combiner = Combiner(2, [s.info for s in sites], {"correlation": -1.0}, require_checked=True)
    with pytest.raises(InconsistentResultsError, match="cells:sumsq") as info:
        verify_distributed(x, "SN-1", sites, combiner)
    assert info.value.suspects == ()  # 4 points of a degree-2 polynomial: one liar is detected, not named
    with pytest.raises(NoQuorumError, match="checked verdict needs at least 4"):
        verify_distributed(x, "SN-1", sites, combiner, available={"site1", "site3", "site4"})
