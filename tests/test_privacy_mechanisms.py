"""DP noise mechanisms: right distribution (with power to see a 10% scale error), right calibration, right RNG.

Distribution tests use seeded generators so they are deterministic; each "rejected" test proves the
matching "accepted" test would notice a mechanism whose noise scale is off by 10%.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import optimize, stats

from sampan.privacy.discrete_mechanisms import (
    DiscreteGaussianMechanism,
    DiscreteLaplaceMechanism,
    _bernoulli_exp_neg,
    _GeneratorBits,
)
from sampan.privacy.mechanisms import (
    MAX_DENOMINATOR,
    GaussianMechanism,
    LaplaceMechanism,
    NoiseMechanism,
    classic_gaussian_sigma,
    zcdp_epsilon,
)
from sampan.privacy.randomness import (
    SeededGenerator,
    is_seeded,
    secure_generator,
    secure_uniform_int,
    seeded_generator,
)

N_CONTINUOUS = 100_000  # KS needs this many to reject a 10% scale error at p < 1e-6 with margin
N_DISCRETE = 20_000  # at 10^4 the chi-square rejects a 10% larger Laplace scale only at p ~ 1e-6..1e-9
N_DISCRETE_SECURE = 10_000


def direct_delta(sensitivity: float, sigma: float, epsilon: float) -> float:
    """Balle & Wang's condition evaluated naively with norm.cdf — independent of the library's log-space code."""
    a = sensitivity / (2 * sigma) - epsilon * sigma / sensitivity
    b = -sensitivity / (2 * sigma) - epsilon * sigma / sensitivity
    return float(stats.norm.cdf(a) - math.exp(epsilon) * stats.norm.cdf(b))


# ------------------------------------------------------------------------------------------ randomness


def test_secure_generator_gives_independent_streams() -> None:
    a, b = secure_generator(), secure_generator()
    assert type(a.bit_generator).__name__ == "PCG64DXSM"
    assert not np.array_equal(a.integers(0, 2**63, size=4), b.integers(0, 2**63, size=4))
    assert not is_seeded(a)


def test_seeded_generator_is_reproducible_and_marked() -> None:
    a, b = seeded_generator(7), seeded_generator(7)
    assert isinstance(a, SeededGenerator) and is_seeded(a)
    assert np.array_equal(a.normal(size=5), b.normal(size=5))
    with pytest.raises(ValueError, match="seed"):
        seeded_generator(-1)


def test_secure_uniform_int_range_and_validation() -> None:
    draws = {secure_uniform_int(3) for _ in range(200)}
    assert draws == {0, 1, 2}
    assert secure_uniform_int(1) == 0
    assert 0 <= secure_uniform_int(10**40) < 10**40
    with pytest.raises(ValueError, match="n must be"):
        secure_uniform_int(0)


def test_generator_bits_are_exactly_uniform() -> None:
    randbelow = _GeneratorBits(seeded_generator(3))
    draws = np.array([randbelow(6) for _ in range(60_000)])
    assert draws.min() == 0 and draws.max() == 5
    assert stats.chisquare(np.bincount(draws, minlength=6)).pvalue > 0.01
    big = 3 * 2**70 + 1  # spans several 32-bit words
    assert all(0 <= randbelow(big) < big for _ in range(100))


# --------------------------------------------------------------------------------- continuous noise


@pytest.fixture(scope="module")
def gaussian_samples() -> tuple[GaussianMechanism, np.ndarray]:
    mech = GaussianMechanism(sensitivity=1.5, sigma=2.5)
    return mech, mech.noise(N_CONTINUOUS, rng=seeded_generator(20240611))


@pytest.fixture(scope="module")
def laplace_samples() -> tuple[LaplaceMechanism, np.ndarray]:
    mech = LaplaceMechanism(sensitivity=2.0, epsilon=0.8)
    return mech, mech.noise(N_CONTINUOUS, rng=seeded_generator(20240612))


def test_gaussian_noise_matches_normal(gaussian_samples) -> None:
    mech, x = gaussian_samples
    assert x.dtype == np.float64 and x.shape == (N_CONTINUOUS,)
    assert stats.kstest(x, "norm", args=(0.0, mech.sigma)).pvalue > 0.01


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_gaussian_ks_rejects_wrong_scale(gaussian_samples, factor: float) -> None:
    mech, x = gaussian_samples
    assert stats.kstest(x, "norm", args=(0.0, factor * mech.sigma)).pvalue < 1e-6


def test_laplace_noise_matches_laplace(laplace_samples) -> None:
    mech, x = laplace_samples
    assert mech.scale == pytest.approx(2.5)
    assert x.dtype == np.float64
    assert stats.kstest(x, "laplace", args=(0.0, mech.scale)).pvalue > 0.01


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_laplace_ks_rejects_wrong_scale(laplace_samples, factor: float) -> None:
    mech, x = laplace_samples
    assert stats.kstest(x, "laplace", args=(0.0, factor * mech.scale)).pvalue < 1e-6


@pytest.mark.parametrize("mech", [GaussianMechanism(1.0, 2.0), LaplaceMechanism(1.0, 0.5)])
def test_release_adds_noise_with_same_shape(mech) -> None:
    value = np.arange(12, dtype=np.float64).reshape(3, 4)
    noisy = mech.release(value, rng=seeded_generator(5))
    assert noisy.shape == (3, 4) and noisy.dtype == np.float64
    np.testing.assert_array_equal(noisy, value + mech.noise((3, 4), rng=seeded_generator(5)))
    scalar = mech.release(10.0, rng=seeded_generator(6))
    assert isinstance(scalar, float) and scalar != 10.0
    assert mech.noise((), rng=seeded_generator(1)).shape == ()


# ----------------------------------------------------------------------------------- discrete noise


def chisquare_against(samples: np.ndarray, log_weight, min_expected: float = 5.0) -> float:
    """Chi-square p-value of integer samples against pmf ∝ exp(log_weight(x)), tails pooled into two bins."""
    support = np.arange(-2000, 2001)
    logw = log_weight(support.astype(np.float64))
    pmf = np.exp(logw - logw.max())
    pmf /= pmf.sum()
    expected = pmf * samples.size
    core = support[expected >= min_expected]
    lo, hi = core.min(), core.max()
    inner = [np.sum(samples == k) for k in range(lo, hi + 1)]
    counts = np.array([np.sum(samples < lo), *inner, np.sum(samples > hi)])
    exp = np.concatenate(
        [[expected[support < lo].sum()], expected[(support >= lo) & (support <= hi)], [expected[support > hi].sum()]]
    )
    keep = exp > 0
    counts, exp = counts[keep], exp[keep]
    exp *= counts.sum() / exp.sum()  # guard against float round-off in the totals
    return float(stats.chisquare(counts, exp).pvalue)


def laplace_logpmf(t: float):
    return lambda x: -np.abs(x) / t


def gaussian_logpmf(sigma: float):
    return lambda x: -(x**2) / (2 * sigma**2)


@pytest.fixture(scope="module")
def discrete_laplace_samples() -> tuple[DiscreteLaplaceMechanism, np.ndarray]:
    mech = DiscreteLaplaceMechanism(sensitivity=2, epsilon=0.8)
    return mech, mech.noise(N_DISCRETE, rng=seeded_generator(31))


@pytest.fixture(scope="module")
def discrete_gaussian_samples() -> tuple[DiscreteGaussianMechanism, np.ndarray]:
    mech = DiscreteGaussianMechanism(sensitivity=1, sigma=3.0)
    return mech, mech.noise(N_DISCRETE, rng=seeded_generator(32))


def test_discrete_laplace_matches_exact_pmf(discrete_laplace_samples) -> None:
    mech, x = discrete_laplace_samples
    assert x.dtype == np.int64 and x.shape == (N_DISCRETE,)
    assert mech.scale_rational == Fraction(5, 2)
    assert chisquare_against(x, laplace_logpmf(mech.scale)) > 0.01


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_discrete_laplace_chisquare_rejects_wrong_scale(discrete_laplace_samples, factor: float) -> None:
    mech, x = discrete_laplace_samples
    assert chisquare_against(x, laplace_logpmf(factor * mech.scale)) < 1e-6


def test_discrete_gaussian_matches_exact_pmf(discrete_gaussian_samples) -> None:
    mech, x = discrete_gaussian_samples
    assert x.dtype == np.int64
    assert chisquare_against(x, gaussian_logpmf(mech.sigma)) > 0.01


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_discrete_gaussian_chisquare_rejects_wrong_scale(discrete_gaussian_samples, factor: float) -> None:
    mech, x = discrete_gaussian_samples
    assert chisquare_against(x, gaussian_logpmf(factor * mech.sigma)) < 1e-6


def test_discrete_gaussian_with_os_randomness_is_correct() -> None:
    """The production path (secrets): 10^4 exact samples from the right pmf (timings live in bench/).

    Not seeded, so the threshold is 1e-6: a correct sampler fails this once in a million runs.
    """
    mech = DiscreteGaussianMechanism(sensitivity=1, sigma=2.5)
    x = mech.noise(N_DISCRETE_SECURE)
    assert chisquare_against(x, gaussian_logpmf(2.5)) > 1e-6


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)])
def test_bernoulli_exp_neg_is_exact(gamma: Fraction) -> None:
    randbelow = _GeneratorBits(seeded_generator(int(gamma * 6) + 40))
    n = 20_000
    hits = sum(_bernoulli_exp_neg(gamma.numerator, gamma.denominator, randbelow) for _ in range(n))
    if gamma == 0:
        assert hits == n
    else:
        assert stats.binomtest(hits, n, math.exp(-gamma)).pvalue > 0.01


def test_discrete_release_requires_integers() -> None:
    mech = DiscreteLaplaceMechanism(1, 1.0)
    counts = np.array([[3, 0], [7, 1]], dtype=np.int32)
    noisy = mech.release(counts, rng=seeded_generator(2))
    assert noisy.dtype == np.int64 and noisy.shape == (2, 2)
    np.testing.assert_array_equal(noisy - counts, mech.noise((2, 2), rng=seeded_generator(2)))
    assert isinstance(mech.release(5, rng=seeded_generator(2)), int)
    with pytest.raises(TypeError, match="counts"):
        mech.release(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="counts"):
        mech.release(3.0)
    with pytest.raises(TypeError, match="counts"):
        mech.release(True)


def test_float_parameters_become_safe_rationals() -> None:
    assert DiscreteLaplaceMechanism(1, 0.1).epsilon_rational == Fraction(1, 10)
    assert DiscreteGaussianMechanism(1, 0.1).sigma_rational == Fraction(1, 10)
    # pi's best small-denominator rational is below pi: sigma must be rounded *up* instead.
    sigma = DiscreteGaussianMechanism(1, math.pi).sigma_rational
    assert sigma >= Fraction(math.pi) and sigma - Fraction(math.pi) < Fraction(1, MAX_DENOMINATOR)
    eps = DiscreteLaplaceMechanism(1, math.e).epsilon_rational
    assert eps <= Fraction(math.e) and Fraction(math.e) - eps < Fraction(1, MAX_DENOMINATOR)
    assert eps.denominator <= MAX_DENOMINATOR
    exact = Fraction(7, 10**9)
    assert DiscreteGaussianMechanism(1, exact).sigma_rational == exact  # Fractions are used as given
    with pytest.raises(ValueError, match="epsilon"):
        DiscreteLaplaceMechanism(1, 1e-9)  # rounds to 0 on the 1e-6 grid


# --------------------------------------------------------------------------------------- calibration


def test_calibrate_known_point_checked_independently() -> None:
    mech = GaussianMechanism.calibrate(1.0, 1.0, 1e-5)
    assert mech.sigma == pytest.approx(3.7306, abs=1e-3)
    # Independent root of the naive condition, and the returned sigma is feasible and minimal.
    root = optimize.brentq(lambda s: direct_delta(1.0, s, 1.0) - 1e-5, 1.0, 10.0, xtol=1e-14)
    assert mech.sigma == pytest.approx(root, rel=1e-9)
    assert direct_delta(1.0, mech.sigma, 1.0) <= 1e-5 * (1 + 1e-9)
    assert direct_delta(1.0, mech.sigma * (1 - 1e-6), 1.0) > 1e-5


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("delta", [1e-5, 1e-8])
def test_calibrate_is_tighter_than_classic_formula(epsilon: float, delta: float) -> None:
    mech = GaussianMechanism.calibrate(2.0, epsilon, delta)
    assert mech.sigma < classic_gaussian_sigma(2.0, epsilon, delta)
    assert direct_delta(2.0, mech.sigma, epsilon) <= delta * (1 + 1e-9)


@pytest.mark.parametrize("epsilon", [2.0, 8.0])
def test_calibrate_is_valid_above_epsilon_one(epsilon: float) -> None:
    mech = GaussianMechanism.calibrate(1.0, epsilon, 1e-6)
    assert direct_delta(1.0, mech.sigma, epsilon) <= 1e-6 * (1 + 1e-9)
    assert direct_delta(1.0, mech.sigma * (1 - 1e-6), epsilon) > 1e-6


@pytest.mark.parametrize("sensitivity", [1.0, 2.5])
@pytest.mark.parametrize("epsilon", [0.3, 1.0, 4.0, 12.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-10])
def test_epsilon_inverts_calibrate(sensitivity: float, epsilon: float, delta: float) -> None:
    mech = GaussianMechanism.calibrate(sensitivity, epsilon, delta)
    assert mech.epsilon(delta) == pytest.approx(epsilon, abs=1e-6)
    assert mech.delta(epsilon) == pytest.approx(delta, rel=1e-6)


def test_noise_multiplier_parameterisation() -> None:
    mech = GaussianMechanism.from_noise_multiplier(sensitivity=0.5, z=1.2)
    assert mech.sigma == pytest.approx(0.6)
    assert mech.noise_multiplier == pytest.approx(1.2)
    assert mech.rho == pytest.approx(1 / (2 * 1.2**2))
    huge = GaussianMechanism(1.0, 1e6)
    assert huge.epsilon(1e-5) < 1e-5


def test_zcdp_conversion_is_valid_and_beats_the_standard_bound() -> None:
    for sigma in (0.8, 3.0, 20.0):
        mech = GaussianMechanism(1.0, sigma)
        converted = zcdp_epsilon(mech.rho, 1e-6)
        standard = mech.rho + 2 * math.sqrt(mech.rho * math.log(1e6))
        # zCDP is lossy for the Gaussian, so the exact epsilon must not exceed the converted one.
        assert mech.epsilon(1e-6) <= converted <= standard
    dg = DiscreteGaussianMechanism(2, 4.0)
    assert dg.rho == pytest.approx(4 / 32)
    assert dg.epsilon(1e-6) == pytest.approx(zcdp_epsilon(0.125, 1e-6))


# --------------------------------------------------------------------------------- defaults, receipts

ALL_MECHANISMS = [
    GaussianMechanism(1.0, 1.0),
    LaplaceMechanism(1.0, 1.0),
    DiscreteLaplaceMechanism(1, 0.5),
    DiscreteGaussianMechanism(1, 5.0),
]


@pytest.mark.parametrize("mech", ALL_MECHANISMS, ids=lambda m: type(m).__name__)
def test_default_randomness_is_fresh_each_call(mech) -> None:
    assert isinstance(mech, NoiseMechanism)
    assert not np.array_equal(mech.noise(32), mech.noise(32))


@pytest.mark.parametrize("mech", ALL_MECHANISMS, ids=lambda m: type(m).__name__)
def test_describe_is_json_able(mech) -> None:
    described = json.loads(json.dumps(mech.describe()))
    assert described["mechanism"] in {"gaussian", "laplace", "discrete_laplace", "discrete_gaussian"}
    assert described["sensitivity"] == mech.sensitivity


def test_gaussian_describe_fields() -> None:
    d = GaussianMechanism.from_noise_multiplier(2.0, 1.5).describe()
    assert d["mechanism"] == "gaussian"
    assert (d["sensitivity"], d["sigma"], d["noise_multiplier"]) == (2.0, 3.0, 1.5)


# -------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: GaussianMechanism(0.0, 1.0), "sensitivity"),
        (lambda: GaussianMechanism(-1.0, 1.0), "sensitivity"),
        (lambda: GaussianMechanism(1.0, 0.0), "sigma"),
        (lambda: GaussianMechanism(1.0, float("nan")), "sigma"),
        (lambda: GaussianMechanism(1.0, float("inf")), "sigma"),
        (lambda: GaussianMechanism.from_noise_multiplier(1.0, 0.0), "noise_multiplier"),
        (lambda: GaussianMechanism.calibrate(0.0, 1.0, 1e-5), "sensitivity"),
        (lambda: GaussianMechanism.calibrate(1.0, 0.0, 1e-5), "epsilon"),
        (lambda: GaussianMechanism.calibrate(1.0, 1.0, 0.0), "delta"),
        (lambda: GaussianMechanism.calibrate(1.0, 1.0, 1.0), "delta"),
        (lambda: GaussianMechanism(1.0, 1.0).epsilon(1.5), "delta"),
        (lambda: LaplaceMechanism(-2.0, 1.0), "sensitivity"),
        (lambda: LaplaceMechanism(1.0, 0.0), "epsilon"),
        (lambda: LaplaceMechanism(1.0, "1"), "epsilon"),
        (lambda: DiscreteLaplaceMechanism(1.5, 1.0), "sensitivity"),
        (lambda: DiscreteLaplaceMechanism(0, 1.0), "sensitivity"),
        (lambda: DiscreteLaplaceMechanism(True, 1.0), "sensitivity"),
        (lambda: DiscreteLaplaceMechanism(1, -0.5), "epsilon"),
        (lambda: DiscreteGaussianMechanism(1, 0.0), "sigma"),
        (lambda: DiscreteGaussianMechanism(2.0, 1.0), "sensitivity"),
        (lambda: GaussianMechanism(1.0, 1.0).noise((2, -1)), "shape"),
    ],
)
def test_validation_names_the_bad_parameter(build, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        build()
