"""REVQ (issue 20 review): a curious or malicious verification site in `sampan.qr.distributed`.

Claims checked: "no single site sees the whole capture" and "the verdict needs a quorum" (t of S sites).
Each test asserts the SECURE outcome and is a strict xfail until the finding is fixed (ids in
/work/helpers/REVQ_findings.md).
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from sampan.qr.cdp import cdp_pattern
from sampan.qr.distributed import DistributedError, FixedLinear, KeyedCorrelation, VerificationSite, make_request
from sampan.qr.shares import encode_vector


@pytest.mark.xfail(strict=True, reason="REVQ-7: threshold t = 1 is accepted; every site's Shamir share is then the "
                   "feature vector itself (a degree-0 polynomial)")
def test_revq7_a_single_site_never_receives_the_whole_feature_vector() -> None:
    rng = np.random.default_rng(secrets.randbits(128))
    x = rng.normal(size=32)
    sites = [VerificationSite(f"site{i}", i, [FixedLinear("lin", np.ones(32))]) for i in (1, 2, 3)]
    try:
        request = make_request(x, "SN-1", [s.info for s in sites], threshold=1)
    except DistributedError:
        return  # refusing t < 2 is the secure outcome
    share = sites[0].open_share(request)
    assert not np.array_equal(share, encode_vector(x)), "site1 holds the device's features in clear"


@pytest.mark.xfail(strict=True, reason="REVQ-8: every verification site holds the issuer's CDP key, so ONE site "
                   "(not a quorum) can rebuild any serial's copy-detection template and print passing 'originals'")
def test_revq8_one_site_cannot_rebuild_the_copy_detection_template() -> None:
    issuer_key = secrets.token_bytes(32)
    site = VerificationSite("site1", 1, [KeyedCorrelation(issuer_key)])  # as the module docstring deploys it
    serial, side = "LUX-000123", 42
    genuine = cdp_pattern(issuer_key, serial, side)
    held = [v for verifier in site.verifiers for v in vars(verifier).values() if isinstance(v, bytes)]
    rebuilt = [cdp_pattern(k, serial, side) for k in held if len(k) >= 16]
    assert not any(np.array_equal(p, genuine) for p in rebuilt), "site1 alone rebuilds the serial's CDP template"


@pytest.mark.xfail(strict=True, reason="REVQ-15: neither PartialResult nor Verdict names the serial the sites "
                   "evaluated, so an 'original' verdict obtained for one serial can be presented for another")
def test_revq15_the_verdict_names_the_serial_the_sites_evaluated() -> None:
    from sampan.qr.distributed import Combiner, verify_distributed

    rng = np.random.default_rng(secrets.randbits(128))
    sites = [VerificationSite(f"site{i}", i, [FixedLinear("lin", np.ones(8))]) for i in (1, 2, 3)]
    verdict = verify_distributed(rng.normal(size=8), "GENUINE-1", sites,
                                 Combiner(2, [s.info for s in sites], {"lin": -1e9}))
    assert getattr(verdict, "serial", None) == "GENUINE-1"
