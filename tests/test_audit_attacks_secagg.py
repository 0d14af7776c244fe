"""Secure-aggregation checks: uniform ring masks pass as masked, clear or lightly noised updates do not, and an
aggregate is consistent only with the sum it should be (issue 16, security)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sampan.audit import consistent_with_sum, is_masked
from sampan.errors import DataError

SCALE = 2.0**16


def _encode(values: np.ndarray) -> np.ndarray:
    return np.rint(values * SCALE).astype(np.int64).astype(np.uint64)  # two's complement in Z_2^64


def test_uniform_ring_masks_are_masked() -> None:
    rng = np.random.default_rng(31)  # seeded: reproducible test
    passed = 0
    for _ in range(40):
        clear = rng.standard_normal(2000)
        mask = rng.integers(0, 2**64 - 1, 2000, dtype=np.uint64, endpoint=True)
        res = is_masked(_encode(clear) + mask, clear, ring_bits=64, scale=SCALE)
        assert res.conclusive and res.uniformity_p is not None and res.uniformity_bins == 256
        passed += res.masked
    assert passed >= 34  # four tests at alpha = 0.01 each: a few false alarms over 40 trials at most
    json.dumps(res.to_dict())


def test_clear_fixed_point_encoding_is_not_masked() -> None:
    rng = np.random.default_rng(32)
    clear = rng.standard_normal(500)
    res = is_masked(_encode(clear), clear, ring_bits=64, scale=SCALE)
    assert not res.masked
    assert res.equal_fraction == 1.0 and res.uniformity_p is not None and res.uniformity_p < 1e-6
    assert res.spearman_rho > 0.99


def test_small_ring_masked_with_32_bits() -> None:
    rng = np.random.default_rng(33)
    clear = rng.standard_normal(1000)
    enc = np.rint(clear * 256).astype(np.int64) % 2**32
    masked = (enc + rng.integers(0, 2**32, 1000)) % 2**32
    assert is_masked(masked, clear, ring_bits=32, scale=256).masked
    assert not is_masked(enc, clear, ring_bits=32, scale=256).masked


@pytest.mark.parametrize("noise", [0.0, 0.5, 5.0])
def test_float_update_with_weak_noise_is_not_masked(noise: float) -> None:
    rng = np.random.default_rng(34)
    clear = rng.standard_normal(1000)
    res = is_masked(clear + noise * rng.standard_normal(1000), clear)
    assert not res.masked and res.leak_found and res.uniformity_p is None
    assert any("float payload" in n for n in res.notes)


def test_float_payload_independent_of_update_is_inconclusive() -> None:
    """A float payload is never called masked (R16-AUDIT-3): no leak found, but nothing shown either."""
    rng = np.random.default_rng(35)
    res = is_masked(rng.uniform(-1e9, 1e9, 1000), rng.standard_normal(1000))
    assert not res.masked and not res.conclusive and not res.leak_found


def test_too_few_values_is_inconclusive() -> None:
    rng = np.random.default_rng(36)
    res = is_masked(rng.integers(0, 2**62, 10), rng.standard_normal(10), ring_bits=64, scale=SCALE)
    assert not res.conclusive and not res.masked


def test_masking_inputs_checked() -> None:
    with pytest.raises(DataError, match="integers"):
        is_masked(np.zeros(40), np.zeros(40), ring_bits=64)
    with pytest.raises(DataError, match="values but"):
        is_masked(np.zeros(40), np.zeros(41))
    with pytest.raises(DataError, match="scale"):
        is_masked(np.zeros(40, np.int64), np.zeros(40), ring_bits=64)
    with pytest.raises(DataError, match="ring_bits"):
        is_masked(np.zeros(40, np.int64), np.zeros(40), ring_bits=65, scale=SCALE)


def test_sum_consistency_accepts_sum_and_rejects_single_inputs() -> None:
    rng = np.random.default_rng(37)
    inputs = rng.standard_normal((4, 50))
    ok = consistent_with_sum(inputs.sum(axis=0), inputs)
    assert ok.consistent and ok.matches == ["sum"] and ok.distinguishable
    leak = consistent_with_sum(inputs[2], inputs)
    assert not leak.consistent and "input[2]" in leak.matches
    dropped = consistent_with_sum(inputs.sum(axis=0) - inputs[1], inputs)
    assert not dropped.consistent and dropped.matches == ["sum_without[1]"]
    w = np.array([10.0, 20.0, 30.0, 40.0])
    weighted = consistent_with_sum((w[:, None] * inputs).sum(axis=0) / w.sum(), inputs, weights=w,
                                   expected="weighted_mean")
    assert weighted.consistent
    assert consistent_with_sum(inputs.mean(axis=0) + 1e-3, inputs, expected="mean").consistent is False
    json.dumps(ok.to_dict())


def test_identical_inputs_cannot_tell_mean_from_an_input() -> None:
    inputs = np.tile(np.arange(1.0, 6.0), (3, 1))
    res = consistent_with_sum(inputs.mean(axis=0), inputs, expected="mean")
    assert not res.distinguishable and not res.consistent


def test_sum_inputs_checked() -> None:
    with pytest.raises(DataError, match="expected"):
        consistent_with_sum(np.zeros(3), np.ones((2, 3)), expected="weighted_mean")
    with pytest.raises(DataError, match="aggregate has"):
        consistent_with_sum(np.zeros(4), np.ones((2, 3)))
