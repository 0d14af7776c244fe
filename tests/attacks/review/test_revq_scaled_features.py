"""REVQ (issue 20 review): the device's feature vector is never range-checked once it is secret-shared.

`sampan.qr.features` standardises the CDP cells on the device (zero mean, unit variance) and the keyed
correlation cells . t / n is only meaningful for a standardised vector. A plaintext verifier can re-standardise
what it receives; the sites of `sampan.qr.distributed` see uniform shares and cannot, so a scanning app that
multiplies a copy's cells by 2 doubles its correlation and the quorum says "original". No genuine capture is
needed (unlike the replay the module docstring names). Strict xfail until fixed (REVQ-14 in
/work/helpers/REVQ_findings.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.qr.distributed import Combiner, KeyedCorrelation, VerificationSite, verify_distributed
from sampan.qr.features import N_STATS
from tests.qr._q3_data import KEY, features_set


@pytest.mark.xfail(strict=True, reason="REVQ-14: sites cannot check that the shared cells are standardised; a "
                   "photocopy's cells scaled by 2 pass the keyed correlation on shares")
def test_revq14_scaled_copy_features_do_not_turn_a_copy_into_an_original() -> None:
    data = features_set(3, ("photocopy",), seed=11)
    sites = [VerificationSite(f"site{i}", i, [KeyedCorrelation(KEY)]) for i in (1, 2, 3)]

    def corr(x: np.ndarray, i: int) -> float:
        return verify_distributed(x, f"SN-{i}", sites, Combiner(2, [s.info for s in sites], {"correlation": 0.0}))\
            .scores["correlation"]

    originals = [corr(x, i) for i, x in enumerate(data["original"])]
    copies = [corr(x, i) for i, x in enumerate(data["photocopy"])]
    assert min(originals) > max(copies)  # holds: honest features separate originals from photocopies
    combiner = Combiner(2, [s.info for s in sites], {"correlation": (min(originals) + max(copies)) / 2})
    for i, x in enumerate(data["photocopy"]):
        assert verify_distributed(x, f"SN-{i}", sites, combiner).verdict == "copy"  # holds
        forged = x.copy()
        forged[N_STATS:] *= 2.0  # the app lies: still "features", but no longer standardised
        assert verify_distributed(forged, f"SN-{i}", sites, combiner).verdict == "copy"
