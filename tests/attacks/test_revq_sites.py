"""REVQ (issue 20 review): a curious or malicious verification site in `sampan.qr.distributed`.

Claims checked: "no single site sees the whole capture" (t >= 2 is enforced, REVQ-7) and "the verdict names
what was evaluated" (REVQ-15). REVQ-8 (every site holds the CDP key) is a documented trust assumption: the
test asserts the docstring states it and that, as deployed today, one site DOES rebuild the template.
"""

from __future__ import annotations

import dataclasses
import secrets

import numpy as np
import pytest

import sampan.qr.distributed as distributed
from sampan.qr.cdp import cdp_pattern
from sampan.qr.distributed import (
    Combiner,
    DistributedError,
    FixedLinear,
    KeyedCorrelation,
    VerificationSite,
    make_request,
    verify_distributed,
)
from sampan.qr.shares import ShareError, encode_vector, share_vector


def _sites(n: int = 3, size: int = 32) -> list[VerificationSite]:
    return [VerificationSite(f"site{i}", i, [FixedLinear("lin", np.ones(size))]) for i in range(1, n + 1)]


def test_revq7_a_single_site_never_receives_the_whole_feature_vector() -> None:
    rng = np.random.default_rng(secrets.randbits(128))
    x = rng.normal(size=32)
    sites = _sites()
    with pytest.raises(DistributedError, match="t = 1 would give every site the whole feature vector"):
        make_request(x, "SN-1", [s.info for s in sites], threshold=1)
    with pytest.raises(DistributedError, match="threshold t = 1"):
        Combiner(1, [s.info for s in sites], {"lin": 0.0})
    with pytest.raises(DistributedError, match="threshold t = 2"):  # S = 1 < t = 2
        make_request(x, "SN-1", [sites[0].info], threshold=2)
    with pytest.raises(ShareError, match="every share would be the secret"):
        share_vector(encode_vector(x), 1, [1, 2, 3])
    request = make_request(x, "SN-1", [s.info for s in sites], threshold=2)
    assert not np.array_equal(sites[0].open_share(request), encode_vector(x))


def test_revq8_the_cdp_key_trust_assumption_is_documented() -> None:
    """Not fixed: one site holding the key rebuilds any template; the module says so and gives the design."""
    issuer_key = secrets.token_bytes(32)
    site = VerificationSite("site1", 1, [KeyedCorrelation(issuer_key)])
    held = [v for verifier in site.verifiers for v in vars(verifier).values() if isinstance(v, bytes)]
    assert np.array_equal(cdp_pattern(held[0], "LUX-000123", 42), cdp_pattern(issuer_key, "LUX-000123", 42))
    doc = " ".join((distributed.__doc__ or "").split())
    assert "ONE curious or compromised site (not a quorum) can rebuild any serial's template" in doc
    assert "deploy only sites trusted with the key" in doc
    assert "2t - 1 answers" in doc


def test_revq15_the_verdict_names_the_serial_the_sites_evaluated() -> None:
    rng = np.random.default_rng(secrets.randbits(128))
    sites = _sites(size=8)
    combiner = Combiner(2, [s.info for s in sites], {"lin": -1e9})
    verdict = verify_distributed(rng.normal(size=8), "GENUINE-1", sites, combiner)
    assert verdict.serial == "GENUINE-1"
    request = make_request(rng.normal(size=8), "GENUINE-1", [s.info for s in sites], 2)
    answers = [s.answer(request) for s in sites]
    assert {a.serial for a in answers} == {"GENUINE-1"} and {a.n_features for a in answers} == {8}
    with pytest.raises(DistributedError, match="evaluated serial 'GENUINE-1', not 'OTHER-2'"):
        combiner.combine(request.scan_id, answers, serial="OTHER-2")
    relabelled = [answers[0], dataclasses.replace(answers[1], serial="OTHER-2"), answers[2]]
    with pytest.raises(DistributedError, match="disagree on the serial"):
        combiner.combine(request.scan_id, relabelled)
