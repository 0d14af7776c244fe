"""Distributed verification (issue 20, item 3): t-of-S Shamir shares of the device's features, linear verifiers
computed on shares, a combiner that needs a quorum. Attacks by curious and malicious sites: tests/attacks/
test_qr_sites_*.py."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.crypto.channel import ChannelError
from sampan.qr.distributed import (
    Combiner,
    DistributedError,
    FixedLinear,
    KeyedCorrelation,
    ModelVerifier,
    NoQuorumError,
    VerificationSite,
    make_request,
    verify_distributed,
)
from sampan.qr.features import N_STATS
from sampan.qr.linear import MODEL_FEATURES, LinearVerifierModel, model_features
from sampan.qr.shares import PRIME, ShareError, decode_value, encode_vector, reconstruct, share_vector
from sampan.qr.verifiers import CorrelationVerifier

from ._q3_data import KEY, features_set

N = 64


def _sites(w: np.ndarray, b: float = 0.0, s: int = 5) -> list[VerificationSite]:
    return [VerificationSite(f"site{i}", i, [FixedLinear("lin", w, b)]) for i in range(1, s + 1)]


def test_vector_shamir_reconstructs_from_any_t_and_handles_signs() -> None:
    x = np.array([-3.25, 0.0, 1e-6, 12345.5, -1e6])
    shares = share_vector(encode_vector(x), 3, [1, 2, 3, 4, 5])
    for subset in ([1, 2, 3], [2, 4, 5], [5, 3, 1]):
        got = [decode_value(reconstruct({j: int(shares[j][k]) for j in subset}, 3), 20) for k in range(x.size)]
        np.testing.assert_allclose(got, x, atol=1e-6)
    with pytest.raises(ShareError, match="need 3"):
        reconstruct({1: int(shares[1][0]), 2: int(shares[2][0])}, 3)
    with pytest.raises(ShareError, match="finite"):
        encode_vector(np.array([np.nan]))
    with pytest.raises(ShareError, match="distinct"):
        share_vector(encode_vector(x), 2, [1, 1, 2])


def test_linear_score_on_shares_matches_plaintext_with_any_quorum() -> None:
    rng = np.random.default_rng(1)
    w, x = rng.normal(size=N), rng.normal(size=N) * 5
    sites = _sites(w, b=0.75)
    combiner = Combiner(3, [s.info for s in sites], {"lin": 0.0})
    expected = float(w @ x + 0.75)
    for available in ({"site1", "site2", "site3"}, {"site2", "site4", "site5"}, None):
        verdict = verify_distributed(x, "SN-1", sites, combiner, available=available)
        assert verdict.scores["lin"] == pytest.approx(expected, abs=1e-4)
        assert verdict.verdict == ("original" if expected >= 0 else "copy")
        assert verdict.checked == (available is None)


def test_fewer_than_t_sites_is_no_quorum_never_a_verdict() -> None:
    rng = np.random.default_rng(2)
    sites = _sites(rng.normal(size=N))
    combiner = Combiner(3, [s.info for s in sites], {"lin": 0.0})
    with pytest.raises(NoQuorumError, match=r"no quorum .* 2 of 5 sites answered .* 3 needed; no verdict"):
        verify_distributed(rng.normal(size=N), "SN-1", sites, combiner, available={"site1", "site5"})
    with pytest.raises(NoQuorumError, match="0 of 5"):
        verify_distributed(rng.normal(size=N), "SN-1", sites, combiner, available=set())
    strict = Combiner(3, [s.info for s in sites], {"lin": 0.0}, require_checked=True)
    with pytest.raises(NoQuorumError, match="checked verdict needs at least 4"):
        verify_distributed(rng.normal(size=N), "SN-1", sites, strict, available={"site1", "site2", "site3"})


def test_bad_configurations_and_answers_raise_clear_errors() -> None:
    rng = np.random.default_rng(3)
    sites = _sites(rng.normal(size=N))
    infos = [s.info for s in sites]
    with pytest.raises(DistributedError, match="threshold t = 6"):
        Combiner(6, infos, {"lin": 0.0})
    with pytest.raises(DistributedError, match="distinct"):
        make_request(np.zeros(N), "SN", [infos[0], infos[0]], 1)
    with pytest.raises(DistributedError, match="'accept'"):
        Combiner(3, infos, {})
    request = make_request(rng.normal(size=N), "SN-1", infos, 3)
    answers = [s.answer(request) for s in sites[:3]]
    combiner = Combiner(3, infos, {"other": 0.0})
    with pytest.raises(DistributedError, match=r"score\(s\) \['other'\]"):
        combiner.combine(request.scan_id, answers)
    with pytest.raises(DistributedError, match="answered scan"):
        Combiner(3, infos, {"lin": 0.0}).combine("another-scan", answers)
    with pytest.raises(DistributedError, match="answered twice"):
        Combiner(3, infos, {"lin": 0.0}).combine(request.scan_id, answers + answers[:1])
    short = VerificationSite("site1", 1, [FixedLinear("lin", np.ones(3))])
    with pytest.raises(DistributedError, match="3 weights, the request 64"):
        short.answer(make_request(rng.normal(size=N), "SN-1", [short.info, sites[1].info], 2))


def test_envelopes_are_bound_to_their_site_and_header() -> None:
    rng = np.random.default_rng(4)
    sites = _sites(rng.normal(size=N), s=3)
    request = make_request(rng.normal(size=N), "SN-1", [s.info for s in sites], 2)
    swapped = type(request)(request.scan_id, request.serial, 2, N, request.device_public,
                            {"site1": request.envelopes["site2"]})
    with pytest.raises(ChannelError, match="does not authenticate"):
        sites[0].answer(swapped)
    other_serial = type(request)(request.scan_id, "SN-2", 2, N, request.device_public, request.envelopes)
    with pytest.raises(ChannelError):  # the serial is bound into the key derivation: no re-targeting a share
        sites[0].answer(other_serial)


@pytest.mark.slow
def test_q3_features_keyed_correlation_and_linear_model_on_shares() -> None:
    data = features_set(3, ("photocopy",), seed=5)
    model = LinearVerifierModel(np.linspace(-1.0, 1.0, len(MODEL_FEATURES)), 0.3)
    sites = [VerificationSite(f"site{i}", i, [KeyedCorrelation(KEY), ModelVerifier(model, KEY)]) for i in (1, 2, 3)]
    combiner = Combiner(2, [s.info for s in sites], {"correlation": 0.2})
    plain = CorrelationVerifier(KEY)
    for i in range(3):
        serial = f"SN-{i}"
        for kind in ("original", "photocopy"):
            x = data[kind][i]
            verdict = verify_distributed(x, serial, sites, combiner)
            assert verdict.scores["correlation"] == pytest.approx(plain.score(x, serial), abs=1e-5)
            assert verdict.scores["model"] == pytest.approx(float(model.score(model_features(x, KEY, serial))[0]),
                                                            abs=1e-4)
    corr_orig = [verify_distributed(x, f"SN-{i}", sites, combiner).scores["correlation"]
                 for i, x in enumerate(data["original"])]
    corr_copy = [verify_distributed(x, f"SN-{i}", sites, combiner).scores["correlation"]
                 for i, x in enumerate(data["photocopy"])]
    assert min(corr_orig) > max(corr_copy)
    assert data["original"][0].size > N_STATS and PRIME.bit_length() == 127
