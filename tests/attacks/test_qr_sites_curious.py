"""Curious verification sites and a curious combiner try to learn the capture features (`sampan.qr.distributed`).

Claims: t - 1 colluding sites see shares whose distribution does not depend on the features (two very different
captures give the same distribution; a regression from their shares to the features is at chance), while t shares
do recover them (the attack has power when the threshold is met); a site cannot open another site's share; the
combiner sees partial results that depend on the features only through the released score.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

from sampan.crypto.channel import ChannelError
from sampan.qr.distributed import Combiner, FixedLinear, ScanRequest, VerificationSite, make_request
from sampan.qr.shares import PRIME, decode_value, reconstruct

N, T, S = 8, 3, 5
DRAWS = 300


def _sites(w: np.ndarray) -> list[VerificationSite]:
    return [VerificationSite(f"site{i}", i, [FixedLinear("lin", w)]) for i in range(1, S + 1)]


def _coalition_view(sites: list[VerificationSite], x: np.ndarray) -> np.ndarray:
    """What sites 1..t-1 see for one scan of x: their shares, as fractions of the field size."""
    request = make_request(x, "SN-1", [s.info for s in sites], T)
    return np.concatenate([[int(v) / PRIME for v in s.open_share(request).tolist()] for s in sites[:T - 1]])


def test_t_minus_1_colluding_sites_see_the_same_distribution_for_two_different_captures() -> None:
    rng = np.random.default_rng(7)
    sites = _sites(rng.normal(size=N))
    xa, xb = np.full(N, -40.0), np.linspace(0.0, 900.0, N)
    va = np.array([_coalition_view(sites, xa) for _ in range(DRAWS)])
    vb = np.array([_coalition_view(sites, xb) for _ in range(DRAWS)])
    pvalues = [ks_2samp(va[:, k], vb[:, k]).pvalue for k in range(va.shape[1])]
    assert min(pvalues) > 1e-4 / len(pvalues)  # no coordinate tells the captures apart (Bonferroni, 1e-4 overall)
    # and each coordinate is uniform on the field (mean 1/2, variance 1/12), whatever the capture
    assert np.abs(va.mean(axis=0) - 0.5).max() < 0.08 and np.abs(vb.var(axis=0) - 1 / 12).max() < 0.03


def test_regression_from_t_minus_1_shares_to_the_features_is_at_chance_but_t_shares_recover_them() -> None:
    rng = np.random.default_rng(8)
    sites = _sites(rng.normal(size=N))
    X = rng.normal(size=(DRAWS, N)) * 3
    views, requests = [], []
    for x in X:
        request = make_request(x, "SN-1", [s.info for s in sites], T)
        requests.append(request)
        views.append(np.concatenate([[int(v) / PRIME for v in s.open_share(request).tolist()] for s in sites[:T - 1]]))
    V = np.hstack([np.array(views), np.ones((DRAWS, 1))])
    train, test = slice(0, 200), slice(200, DRAWS)
    coef, *_ = np.linalg.lstsq(V[train], X[train], rcond=None)
    pred = V[test] @ coef
    r2 = 1 - ((X[test] - pred) ** 2).sum(axis=0) / ((X[test] - X[test].mean(axis=0)) ** 2).sum(axis=0)
    assert r2.max() < 0.15  # chance (R^2 <= 0): the shares carry nothing linear about x
    # The same coalition plus ONE more site (t shares) interpolates x exactly: the test above is not vacuous.
    request, x = requests[-1], X[-1]
    shares = {s.index: s.open_share(request) for s in sites[:T]}
    got = [decode_value(reconstruct({j: int(v[k]) for j, v in shares.items()}, T), 20) for k in range(N)]
    np.testing.assert_allclose(got, x, atol=1e-5)


def test_a_site_cannot_open_another_sites_share() -> None:
    rng = np.random.default_rng(9)
    sites = _sites(rng.normal(size=N))
    request = make_request(rng.normal(size=N), "SN-1", [s.info for s in sites], T)
    stolen = ScanRequest(request.scan_id, request.serial, T, N, request.device_public,
                         {"site1": request.envelopes["site2"]})
    try:
        sites[0].open_share(stolen)
    except ChannelError as exc:
        assert "does not authenticate" in str(exc)
    else:
        raise AssertionError("site1 opened site2's share")


def test_combiner_view_depends_on_the_features_only_through_the_score() -> None:
    rng = np.random.default_rng(10)
    w = rng.normal(size=N)
    sites = _sites(w)
    combiner = Combiner(T, [s.info for s in sites], {"lin": 0.0})
    xa = rng.normal(size=N) * 4
    v = rng.normal(size=N)
    xb = xa + 30 * (v - (v @ w) / (w @ w) * w)  # far from xa, same score w . x
    assert abs(w @ xa - w @ xb) < 1e-9 and np.abs(xa - xb).max() > 5

    def partials(x: np.ndarray) -> np.ndarray:
        request = make_request(x, "SN-1", [s.info for s in sites], T)
        answers = [s.answer(request) for s in sites]
        assert abs(combiner.combine(request.scan_id, answers).scores["lin"] - w @ x) < 1e-4
        return np.array([int(a.values["lin"]) / PRIME for a in answers])

    pa = np.array([partials(xa) for _ in range(200)])
    pb = np.array([partials(xb) for _ in range(200)])
    assert min(ks_2samp(pa[:, k], pb[:, k]).pvalue for k in range(S)) > 1e-5
