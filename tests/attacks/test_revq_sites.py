"""REVQ (issue 20 review): a curious or malicious verification site in `sampan.qr.distributed`.

Claims checked: "no single site sees the whole capture" (t >= 2 is enforced, REVQ-7) and "the verdict names
what was evaluated" (REVQ-15). REVQ-8 (every site holds the CDP key): with `KeyedCorrelation` it stays a
documented trust assumption (asserted); with templates dealt as Shamir shares by the issuer
(`sampan.qr.templates`) no site holds the key or a template and the score is a degree-2 product (2t - 1 answers).
"""

from __future__ import annotations

import dataclasses
import secrets

import numpy as np
import pytest

import sampan.qr.distributed as distributed
import sampan.qr.templates as templates
from sampan.crypto.channel import ChannelError
from sampan.qr.cdp import cdp_pattern
from sampan.qr.distributed import (
    Combiner,
    DistributedError,
    FixedLinear,
    KeyedCorrelation,
    NoQuorumError,
    VerificationSite,
    make_request,
    verify_distributed,
)
from sampan.qr.features import N_STATS
from sampan.qr.linear import MODEL_FEATURES, LinearVerifierModel, correlation_weights, model_features
from sampan.qr.shares import (
    PRIME,
    ShareError,
    decode_value,
    encode_vector,
    encode_weights,
    interpolate_at,
    share_vector,
)
from sampan.qr.templates import SharedWeights, TemplateDealer


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
    """With KeyedCorrelation one site holding the key rebuilds any template; the module says so."""
    issuer_key = secrets.token_bytes(32)
    site = VerificationSite("site1", 1, [KeyedCorrelation(issuer_key)])
    held = [v for verifier in site.verifiers for v in vars(verifier).values() if isinstance(v, bytes)]
    assert np.array_equal(cdp_pattern(held[0], "LUX-000123", 42), cdp_pattern(issuer_key, "LUX-000123", 42))
    doc = " ".join((distributed.__doc__ or "").split())
    assert "ONE curious or compromised site (not a quorum) can rebuild any serial's template" in doc
    assert "only if each is trusted with the key" in doc and "sampan.qr.templates" in doc
    assert "pseudo-random zero sharing" in " ".join((templates.__doc__ or "").split())


def _standard_features(rng: np.random.Generator, side: int) -> np.ndarray:
    cells = rng.normal(size=side * side)
    return np.concatenate([rng.normal(size=N_STATS), (cells - cells.mean()) / cells.std()])


@pytest.mark.parametrize(("t", "s"), [(2, 3), (3, 5)])
def test_revq8_with_dealt_template_shares_no_site_holds_the_key_or_the_template(t: int, s: int) -> None:
    issuer_key, serial, side = secrets.token_bytes(32), "LUX-000123", 16
    rng = np.random.default_rng(secrets.randbits(128))
    sites = [VerificationSite(f"site{i}", i, [SharedWeights("correlation")]) for i in range(1, s + 1)]
    n = N_STATS + side * side
    w, _b = correlation_weights(issuer_key, serial, n)
    dealer = TemplateDealer([(p.name, p.index, p.info.public_key) for p in sites], t)
    for site, envelope in zip(sites, dealer.deal("correlation", serial, w), strict=True):
        site.accept_template(envelope)
    # no site holds a key; its template share is not the template
    assert not any(isinstance(v, bytes) for p in sites for verifier in p.verifiers for v in vars(verifier).values())
    share = sites[0]._templates[("correlation", serial, n)].share
    assert not np.array_equal(share, encode_weights(w))
    combiner = Combiner(t, [p.info for p in sites], {"correlation": 0.1}, products={"correlation"})
    x = _standard_features(rng, side)
    verdict = verify_distributed(x, serial, sites, combiner)
    assert verdict.scores["correlation"] == pytest.approx(float(x @ w), abs=1e-5)
    assert verdict.standardised is True
    with pytest.raises(NoQuorumError, match="2t - 1"):   # the product needs 2t - 1 answers
        verify_distributed(x, serial, sites, combiner, available={f"site{i}" for i in range(1, 2 * t - 1)})
    with pytest.raises(DistributedError, match="holds no 'correlation' template share for serial 'OTHER-1'"):
        verify_distributed(x, "OTHER-1", sites, combiner)
    with pytest.raises(DistributedError, match=r"as products of shares; the combiner expects \[\]"):
        verify_distributed(x, serial, sites, Combiner(t, [p.info for p in sites], {"correlation": 0.1}))
    forged = dataclasses.replace(dealer.deal("correlation", serial, w)[0], serial="OTHER-1")
    with pytest.raises(ChannelError):  # a share cannot be re-targeted to another serial
        sites[0].accept_template(forged)


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


def test_revq8_the_linear_model_runs_on_dealt_shares_too() -> None:
    """The model's secret part is the template; the issuer deals the expanded weights (and the public bias)."""
    issuer_key, serial, side = secrets.token_bytes(32), "LUX-000124", 16
    n = N_STATS + side * side
    model = LinearVerifierModel(np.linspace(-1.0, 1.0, len(MODEL_FEATURES)), 0.3)
    sites = [VerificationSite(f"site{i}", i, [SharedWeights("model")]) for i in (1, 2, 3)]
    dealer = TemplateDealer([(p.name, p.index, p.info.public_key) for p in sites], 2)
    w, b = model.expanded(issuer_key, serial, n)
    for site, envelope in zip(sites, dealer.deal("model", serial, w, b), strict=True):
        site.accept_template(envelope)
    x = _standard_features(np.random.default_rng(secrets.randbits(128)), side)
    combiner = Combiner(2, [s.info for s in sites], {"model": 0.0}, products={"model"})
    expected = float(model.score(model_features(x, issuer_key, serial))[0])
    assert verify_distributed(x, serial, sites, combiner).scores["model"] == pytest.approx(expected, abs=1e-4)


def test_revq8_the_product_polynomial_is_re_randomised() -> None:
    """The combiner sees a fresh zero sharing added to the product polynomial: same constant (the score),
    other coefficients changed, and no site holds the key of a (t - 1)-set that contains it."""
    issuer_key, serial, side, t = secrets.token_bytes(32), "LUX-000125", 8, 3
    n = N_STATS + side * side
    sites = [VerificationSite(f"site{i}", i, [SharedWeights("correlation")]) for i in range(1, 6)]
    w, _b = correlation_weights(issuer_key, serial, n)
    dealer = TemplateDealer([(p.name, p.index, p.info.public_key) for p in sites], t)
    for site, envelope in zip(sites, dealer.deal("correlation", serial, w), strict=True):
        site.accept_template(envelope)
    for site in sites:
        held = site._templates[("correlation", serial, n)]
        assert len(held.masks) == 6 and all(site.index not in subset for subset, _key in held.masks)  # C(4, 2)
    x = _standard_features(np.random.default_rng(secrets.randbits(128)), side)
    request = make_request(x, serial, [p.info for p in sites], t)
    masked = {p.index: p.answer(request).values["correlation"] for p in sites}
    bare = {p.index: (sum(int(a) * int(b) for a, b in zip(p._templates[("correlation", serial, n)].share.tolist(),
                                                          p.open_share(request).tolist(), strict=True))) % PRIME
            for p in sites}
    assert interpolate_at(masked, 0) == interpolate_at(bare, 0)        # M(0) = 0: the score is unchanged
    assert interpolate_at(masked, 7) != interpolate_at(bare, 7)        # the rest of the polynomial is not
    assert decode_value(interpolate_at(masked, 0)) == pytest.approx(float(x @ w), abs=1e-5)
