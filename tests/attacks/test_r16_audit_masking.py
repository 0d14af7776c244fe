"""R16-AUDIT-1..4, 12: `sampan.audit.is_masked` must not call payloads "masked" that a curious server reads back.

The review found that is_masked tested only the top (at most 8) bits of ring elements for uniformity and the
whole values for correlation and equality, so a platform (or a buggy masking routine) that
- adds a pad to the top byte only (low 56 bits = the clear fixed-point value)             (R16-AUDIT-1),
- reuses one pad in every round, shifted by a fresh scalar per round                       (R16-AUDIT-2),
- sends a float payload that is a fixed permutation of the clear update                    (R16-AUDIT-3),
- sends just under 1% of the coordinates in the clear with a pad whose top bytes keep the
  histogram flat                                                                           (R16-AUDIT-12),
passed with masked=True, and ring_bits=63 raised an OverflowError traceback                (R16-AUDIT-4).
Now the verifier computes the mask itself (m = sent − encode(clear) mod 2^bits) and tests every bit of it, bit
windows, its zeros, and (with rounds × values) repeats and near-constant differences across rounds. Each attack
below is performed as the review did; the check must say "not masked" (and a genuine fresh mask must still pass)."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.audit import is_masked
from sampan.errors import DataError

SCALE = 2.0**16
D = 4000


def _encode(values: np.ndarray) -> np.ndarray:
    return np.rint(values * SCALE).astype(np.int64).astype(np.uint64)


def _decode_low56(sent: np.ndarray) -> np.ndarray:
    low = (sent & np.uint64((1 << 56) - 1)).astype(np.int64)
    low[low >= (1 << 55)] -= 1 << 56  # sign-extend the 56-bit value
    return low.astype(np.float64) / SCALE


@pytest.mark.parametrize("clear_bits", [56, 16])
def test_top_byte_only_pad_is_not_masked(clear_bits: int) -> None:
    """R16-AUDIT-1: a pad that covers only the top bits leaves the low bits (the value) readable."""
    rng = np.random.default_rng(1601)  # seeded: reproducible test
    clear = rng.normal(0.0, 0.1, D)
    pad = rng.integers(0, 2 ** (64 - clear_bits), D, dtype=np.uint64) << np.uint64(clear_bits)
    sent = _encode(clear) + pad
    if clear_bits == 56:  # the curious server reads every coordinate back (to fixed-point precision)
        assert np.max(np.abs(_decode_low56(sent) - clear)) <= 0.5 / SCALE
    res = is_masked(sent, clear, ring_bits=64, scale=SCALE)
    assert not res.masked and res.leak_found, res.to_dict()
    assert res.mask_bit_p is not None and res.mask_bit_p < 1e-6


def test_pad_reused_across_rounds_is_not_masked() -> None:
    """R16-AUDIT-2: rounds × values; a pad reused with a per-round scalar shift is seen across the rounds."""
    rng = np.random.default_rng(1602)
    pad = rng.integers(0, 2**64, D, dtype=np.uint64)  # a full-width uniform pad ... drawn once
    rounds = np.stack([rng.normal(0.0, 0.1, D) for _ in range(3)])
    offsets = rng.integers(0, 2**64, 3, dtype=np.uint64)  # one fresh scalar per round: hides the repeat
    sent = np.stack([_encode(c) + pad + o for c, o in zip(rounds, offsets, strict=True)])
    diff = sent[1] - sent[0]  # the server: every coordinate's change relative to coordinate 0's
    rel = (diff - diff[0]).view(np.int64).astype(np.float64) / SCALE
    true = rounds[1] - rounds[0]
    assert np.max(np.abs(rel - (true - true[0]))) <= 2.0 / SCALE
    res = is_masked(sent, rounds, ring_bits=64, scale=SCALE)
    assert not res.masked and res.rounds == 3, res.to_dict()
    assert res.reuse_p is not None and res.reuse_p < 1e-6
    plain = is_masked(np.stack([_encode(c) + pad for c in rounds]), rounds, ring_bits=64, scale=SCALE)
    assert not plain.masked and plain.reuse_p is not None and plain.reuse_p < 1e-6  # plain reuse: repeats
    # one round at a time cannot show reuse; the result says so
    one = is_masked(sent[0], rounds[0], ring_bits=64, scale=SCALE)
    assert one.reuse_p is None and any("one round" in n for n in one.notes)


def test_fresh_masks_over_rounds_are_masked() -> None:
    """The rounds-aware check keeps its false-alarm rate: fresh uniform masks each round pass."""
    rng = np.random.default_rng(1612)
    passed = 0
    for _ in range(10):
        rounds = rng.normal(0.0, 0.1, (4, 1000))
        sent = _encode(rounds) + rng.integers(0, 2**64, rounds.shape, dtype=np.uint64)
        res = is_masked(sent, rounds, ring_bits=64, scale=SCALE)
        passed += res.masked
    assert passed >= 9  # alpha = 0.01 overall


def test_float_permutation_of_clear_is_not_masked() -> None:
    """R16-AUDIT-3: a float payload is never called masked; a reordering of the update is found as a leak."""
    rng = np.random.default_rng(1603)
    clear = rng.normal(0.0, 0.1, D)
    perm = rng.permutation(D)  # fixed, known to the server: it undoes it
    res = is_masked(clear[perm], clear)
    assert not res.masked and not res.conclusive and res.leak_found, res.to_dict()
    assert any("reordered" in n for n in res.notes)
    scaled = is_masked(3.0 * clear[perm], clear)  # a known scale as well: nothing to find, still not masked
    assert not scaled.masked and not scaled.conclusive


def test_ring_bits_63_is_usable() -> None:
    """R16-AUDIT-4: 63-bit rings reduce in uint64 (no OverflowError); the clear encoding is not masked."""
    rng = np.random.default_rng(1604)
    clear = rng.normal(0.0, 0.1, 200)
    enc = np.rint(clear * SCALE).astype(np.int64) % (1 << 62)
    assert not is_masked(enc, clear, ring_bits=63, scale=SCALE).masked
    masked = (enc.astype(np.uint64) + rng.integers(0, 2**63, 200, dtype=np.uint64)) & np.uint64(2**63 - 1)
    assert is_masked(masked, clear, ring_bits=63, scale=SCALE).masked
    with pytest.raises(DataError, match="scale"):
        is_masked(masked, clear, ring_bits=63)


def test_one_percent_clear_coordinates_with_a_flattened_pad_are_not_masked() -> None:
    """R16-AUDIT-12: any zero of a 64-bit mask beyond chance (n·2^-64) is a coordinate sent in the clear."""
    rng = np.random.default_rng(0)
    clear = rng.normal(0.0, 0.1, D)
    enc = _encode(clear)
    k = int(0.0099 * D)  # just under the old 1% equality allowance
    leak = rng.choice(D, k, replace=False)
    sent = np.empty(D, np.uint64)
    sent[leak] = enc[leak]
    # the other coordinates get uniform low bits and top bytes chosen to make the whole histogram flat
    have = np.bincount((enc[leak] >> np.uint64(56)).astype(np.int64), minlength=256)
    need = np.maximum(np.full(256, D // 256) - have, 0)
    short = (D - k) - int(need.sum())
    need[np.argsort(need)[:short]] += 1
    tops = np.repeat(np.arange(256), need)
    rng.shuffle(tops)
    rest = np.setdiff1d(np.arange(D), leak)
    sent[rest] = (tops.astype(np.uint64) << np.uint64(56)) | rng.integers(0, 2**56, D - k, dtype=np.uint64)
    assert np.array_equal(sent[leak], enc[leak])  # the server reads these coordinates as they are
    res = is_masked(sent, clear, ring_bits=64, scale=SCALE)
    assert not res.masked, res.to_dict()
    assert res.mask_zero_p is not None and res.mask_zero_p < 1e-12
    one = sent.copy()
    one[rest] = enc[rest] + rng.integers(0, 2**64, D - k, dtype=np.uint64)  # a good pad, but one clear value
    one[leak[1:]] = enc[leak[1:]] + rng.integers(0, 2**64, k - 1, dtype=np.uint64)
    assert not is_masked(one, clear, ring_bits=64, scale=SCALE).masked
