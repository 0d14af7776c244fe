"""Key-derived carriers: the pilot and per-bit chips of the 8x8-block DCT mid-band tile, and the sync peaks.

Every pseudo-random choice comes from HMAC-SHA256(key, label || index): the digest seeds a NumPy
Generator, so the stream is deterministic for the key holder and unpredictable without the secret
(the generator itself is not a CSPRNG; its 256-bit seed is secret). Separate labels ("layout",
"pilot", "bit", "sync") give streams that are independent as long as HMAC is a PRF: detection relies on
that (the geometry chosen from the sync peaks says nothing about the pilot chips; see detect.py).

The mark is a periodic TILE x TILE tile of 8x8 blocks. In each block the MIDBAND DCT coefficients are
chips; one third of the tile's chips (key-chosen positions) carry the pilot (known +-1 signs, used to find
the offset and to test for the mark), the rest are split evenly among the payload bits (each bit's chips
have their own +-1 signs, multiplied by +1 for bit 1 and -1 for bit 0). The block DCT is orthonormal, so
the tile's spatial pattern has exactly one unit of energy per chip, and detection's decoder
(`tile_to_chips`, then correlation with the signs) is a fixed linear map: generators can be trained
through it (sampan.watermark.generator).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from sampan.watermark.errors import WatermarkError
from sampan.watermark.keys import WatermarkKey

__all__ = ["TILE", "BLOCK", "MIDBAND", "N_CHIPS", "N_PILOT", "MAX_BITS", "Carriers", "carriers_for", "key_stream",
           "chips_to_tile", "tile_to_chips", "sync_peaks", "N_SYNC", "decoder_templates"]

TILE = 128
BLOCK = 8
# Mid-band of the 8x8 DCT: u + v in 3..5 (15 coefficients): above the visible low band, below what JPEG 50
# quantises away first.
MIDBAND: tuple[tuple[int, int], ...] = tuple((u, v) for u in range(BLOCK) for v in range(BLOCK) if 3 <= u + v <= 5)
_BLOCKS = TILE // BLOCK
_US = [u for u, _ in MIDBAND]
_VS = [v for _, v in MIDBAND]
N_CHIPS = _BLOCKS * _BLOCKS * len(MIDBAND)  # 3840
N_PILOT = N_CHIPS // 3
MAX_BITS = 64
N_SYNC = 8  # sync peaks in the half plane (each is a cosine: a symmetric pair of Fourier peaks)
SYNC_RADIUS = (0.11, 0.21)  # cycles per pixel


def key_stream(key: WatermarkKey, label: str, index: int = 0) -> np.random.Generator:
    """The generator seeded by HMAC-SHA256(secret, label || index)."""
    digest = hmac.new(key.secret, label.encode() + b"\x00" + index.to_bytes(4, "big"), hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


@dataclass(frozen=True)
class Carriers:
    """One key's chips for `n_bits`: chip positions (indices into the flat chip vector) and their signs."""

    n_bits: int
    pilot_index: np.ndarray  # (N_PILOT,)
    pilot_sign: np.ndarray  # (N_PILOT,) +-1.0
    bit_index: np.ndarray  # (n_bits, per_bit)
    bit_sign: np.ndarray  # (n_bits, per_bit) +-1.0

    def chips(self, bits: np.ndarray | None, *, pilot: bool = True) -> np.ndarray:
        """The flat chip vector of the mark carrying `bits` (0/1; None: payload left out)."""
        out = np.zeros(N_CHIPS)
        if pilot:
            out[self.pilot_index] = self.pilot_sign
        if bits is not None:
            polarity = 2.0 * np.asarray(bits, dtype=float) - 1.0
            out[self.bit_index] = self.bit_sign * polarity[:, None]
        return out


@lru_cache(maxsize=16)
def carriers_for(key: WatermarkKey, n_bits: int = 32) -> Carriers:
    """The key's carriers for an `n_bits` payload (cached: deterministic per key)."""
    if not isinstance(n_bits, int) or not 1 <= n_bits <= MAX_BITS:
        raise WatermarkError(f"field 'n_bits' must be an integer in 1..{MAX_BITS}, got {n_bits!r}")
    order = key_stream(key, "layout").permutation(N_CHIPS)
    pilot_index = np.sort(order[:N_PILOT])
    per_bit = (N_CHIPS - N_PILOT) // n_bits
    bit_index = order[N_PILOT:N_PILOT + per_bit * n_bits].reshape(n_bits, per_bit)
    pilot_sign = key_stream(key, "pilot").choice([-1.0, 1.0], size=N_PILOT)
    bit_sign = np.stack([key_stream(key, "bit", i).choice([-1.0, 1.0], size=per_bit) for i in range(n_bits)])
    return Carriers(n_bits, pilot_index, pilot_sign, bit_index, bit_sign)


def chips_to_tile(chips: np.ndarray) -> np.ndarray:
    """The TILE x TILE spatial pattern whose 8x8-block DCT mid-band holds `chips` (orthonormal: energy kept)."""
    coeffs = np.zeros((_BLOCKS, _BLOCKS, BLOCK, BLOCK))
    coeffs[:, :, _US, _VS] = np.asarray(chips, dtype=float).reshape(_BLOCKS, _BLOCKS, len(MIDBAND))
    blocks = sfft.idctn(coeffs, axes=(2, 3), norm="ortho")
    return blocks.transpose(0, 2, 1, 3).reshape(TILE, TILE)


def tile_to_chips(tile: np.ndarray) -> np.ndarray:
    """The flat mid-band chip vector of a TILE x TILE array (the adjoint and inverse of `chips_to_tile`)."""
    blocks = np.asarray(tile, dtype=float).reshape(_BLOCKS, BLOCK, _BLOCKS, BLOCK).transpose(0, 2, 1, 3)
    coeffs = sfft.dctn(blocks, axes=(2, 3), norm="ortho")
    return coeffs[:, :, _US, _VS].reshape(N_CHIPS)


def decoder_templates(key: WatermarkKey, n_bits: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The frozen linear decoder as spatial templates: (pilot (TILE, TILE), bits (n_bits, TILE, TILE)).

    detect's decoding step, once geometry and offset are known, is linear in the folded residual F:
    bit i's correlation is <F, bits[i]> (its sign is the bit) and the pilot's is <F, pilot>, because the
    block DCT is orthonormal (the chips of F dotted with the signs equal F dotted with the signs' tile).
    Detection divides each by the norm of F's chips on those positions (stats.normalised_correlation)."""
    carriers = carriers_for(key, n_bits)
    pilot = chips_to_tile(carriers.chips(None))
    bits = np.stack([chips_to_tile(_one_bit(carriers, i)) for i in range(n_bits)])
    return pilot, bits


def _one_bit(carriers: Carriers, i: int) -> np.ndarray:
    out = np.zeros(N_CHIPS)
    out[carriers.bit_index[i]] = carriers.bit_sign[i]
    return out


@lru_cache(maxsize=16)
def sync_peaks(key: WatermarkKey) -> tuple[np.ndarray, np.ndarray]:
    """The key's N_SYNC sync frequencies (rows (f_y, f_x), cycles/pixel, upper half plane) and phases.

    Angles are spread (one per 180/N_SYNC sector, jittered) so no two peaks can be confused by a rotation
    of a few degrees; radii are uniform in SYNC_RADIUS."""
    rng = key_stream(key, "sync")
    sector = np.pi / N_SYNC
    angles = (np.arange(N_SYNC) + rng.uniform(0.2, 0.8, N_SYNC)) * sector
    radii = rng.uniform(*SYNC_RADIUS, N_SYNC)
    freqs = np.stack([radii * np.sin(angles), radii * np.cos(angles)], axis=1)
    phases = rng.uniform(0.0, 2 * np.pi, N_SYNC)
    return freqs, phases
