"""Geometry from the mark's own periodicity: the autocorrelation of the residual peaks on the tile lattice.

The mark repeats every TILE pixels, so the autocorrelation (ACF) of the image's high-pass residual has
peaks at the lags L (TILE k, TILE l): the whole mark's energy points at the lattice, far more than the
few sync cosines can (Kutter's self-reference idea). The lattice fixes L only up to its symmetries (turns
by multiples of 90 degrees); the key's sync template (sync.py) orders those four, and detection tries
them. The ACF is a function of the image alone (no key), so using it cannot bias the pilot test under H0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sampan.watermark.carriers import TILE

__all__ = ["lattice_maps", "acf", "refine_map"]

_SCALES = (0.5, 2.0)
_ACF_MAX = 1024


def acf(r: np.ndarray) -> np.ndarray:
    """Circular autocorrelation of the centred square of `r` (at most 1024 a side), zero lag at [0, 0],
    normalised by its zero-lag value; the power spectrum is whitened gently first so the lattice peaks
    are sharp and strong image lines do not dominate."""
    side = min(r.shape[0], r.shape[1], _ACF_MAX)
    top, left = (r.shape[0] - side) // 2, (r.shape[1] - side) // 2
    patch = r[top:top + side, left:left + side]
    power = np.abs(np.fft.rfft2(patch - patch.mean())) ** 2
    power /= ndimage.uniform_filter(power, size=9, mode="wrap") + 1e-12
    out = np.fft.irfft2(power, s=patch.shape)
    return out / (out[0, 0] or 1.0)


def _local_peaks(a: np.ndarray, lags: np.ndarray, radius: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """For each lag (rows), the strongest ACF value within `radius`, refined to sub-pixel by a parabola."""
    h, w = a.shape
    offs = np.arange(-radius, radius + 1)
    cy = np.rint(lags[:, 0]).astype(int)[:, None, None] + offs[None, :, None]
    cx = np.rint(lags[:, 1]).astype(int)[:, None, None] + offs[None, None, :]
    win = a[cy % h, cx % w]  # (n, 2r+1, 2r+1)
    flat = win.reshape(len(lags), -1).argmax(axis=1)
    by, bx = np.unravel_index(flat, win.shape[1:])
    by, bx = np.clip(by, 1, 2 * radius - 1), np.clip(bx, 1, 2 * radius - 1)
    idx = np.arange(len(lags))
    c = win[idx, by, bx]
    up, down, left, right = win[idx, by - 1, bx], win[idx, by + 1, bx], win[idx, by, bx - 1], win[idx, by, bx + 1]
    cyy, cxx = up - 2 * c + down, left - 2 * c + right
    dy = np.where(cyy < 0, 0.5 * (up - down) / np.where(cyy < 0, cyy, -1.0), 0.0)
    dx = np.where(cxx < 0, 0.5 * (left - right) / np.where(cxx < 0, cxx, -1.0), 0.0)
    found = np.stack([cy[:, 0, 0] + by + np.clip(dy, -0.5, 0.5), cx[:, 0, 0] + bx + np.clip(dx, -0.5, 0.5)], 1)
    return found, c


_KL = np.array([[k, j] for k in range(-3, 4) for j in range(-3, 4) if (k, j) != (0, 0)], dtype=float)
_TURN = np.array([[0.0, -1.0], [1.0, 0.0]])  # a quarter turn of a lag (row, col)
_HALF = np.array([[0.5, 0.5], [-0.5, 0.5]])  # basis of the lattice with half the cell, turned 45 degrees


def _score(a: np.ndarray, basis: np.ndarray, side: int, refine: bool) -> tuple[np.ndarray, float]:
    """Mean ACF height at the lattice points of `basis` (columns) that fit in the ACF; optionally refit the
    basis by least squares on the sub-pixel peak positions."""
    lags = _KL @ basis.T
    keep = np.hypot(lags[:, 0], lags[:, 1]) <= 0.45 * side
    if keep.sum() < 4:
        return basis, 0.0
    found, heights = _local_peaks(a, lags[keep], radius=2 if refine else 1)
    if refine:
        sol, *_ = np.linalg.lstsq(_KL[keep], found, rcond=None)
        basis = sol.T
    return basis, float(np.mean(heights))


def refine_map(a: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """Sharpen a coarse map L (from the sync template, to about 1 degree and 1%) on the ACF `a`: look for
    the lattice peaks near L's predicted lags, nearest first, and refit L by least squares. The fold needs
    L to about 0.3%; the sync peaks alone rarely give that, the lattice's many peaks do."""
    side = min(a.shape)
    basis = matrix * TILE
    near = np.abs(_KL).max(axis=1) <= 1
    lags = _KL[near] @ basis.T
    keep = np.hypot(lags[:, 0], lags[:, 1]) <= 0.45 * side
    if keep.sum() >= 4:
        found, _ = _local_peaks(a, lags[keep], radius=4)
        sol, *_ = np.linalg.lstsq(_KL[near][keep], found, rcond=None)
        basis = sol.T
    basis, score = _score(a, basis, side, refine=True)
    return basis / TILE, score


def lattice_maps(a: np.ndarray, *, n_peaks: int = 24, top_n: int = 2) -> list[tuple[np.ndarray, float]]:
    """The `top_n` best maps L (observed lag = L @ original lag) from the ACF of residual `r`, with their
    lattice scores (mean normalised ACF at the lattice points; about 0 without a mark), best first. Each L is
    known up to quarter turns. `a` is the ACF of the residual (acf())."""

    side = min(a.shape)
    lo, hi = TILE * _SCALES[0], min(TILE * _SCALES[1] * 1.5, 0.45 * side)
    ly = np.fft.fftfreq(a.shape[0], 1.0 / a.shape[0])[:, None]
    lx = np.fft.fftfreq(a.shape[1], 1.0 / a.shape[1])[None, :]
    dist = np.hypot(ly, lx)
    peaks = (a == ndimage.maximum_filter(a, size=5, mode="wrap")) & (dist >= lo) & (dist <= hi) & (ly >= 0)
    iy, ix = np.nonzero(peaks)
    order = np.argsort(a[iy, ix])[::-1][:n_peaks]
    vecs = np.stack([ly[iy[order], 0], lx[0, ix[order]]], axis=1)
    scored = []
    for v in vecs:  # a lattice vector v and its quarter turn span a (sub)lattice of a similarity map
        basis = np.stack([v, _TURN @ v], axis=1)
        for cand in (basis, basis @ _HALF):
            if np.hypot(*cand[:, 0]) >= TILE * _SCALES[0] * 0.9:
                scored.append((_score(a, cand, side, refine=False)[1], cand))
    if not scored:
        return []
    scored.sort(key=lambda item: -item[0])
    out: list[tuple[np.ndarray, float]] = []
    for first_score, top in scored:
        if len(out) == top_n:
            break
        half, half_score = _score(a, top @ _HALF, side, refine=False)
        if half_score >= 0.6 * first_score and np.hypot(*half[:, 0]) >= TILE * _SCALES[0] * 0.9:
            top = half
        basis, score = _score(a, top, side, refine=True)
        basis, score = _score(a, basis, side, refine=True)
        if not any(_same_lattice(basis, other * TILE) for other, _ in out):
            out.append((basis / TILE, score))
    return out


def _same_lattice(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two bases span (nearly) the same lattice: b = a @ an integer matrix with determinant +-1."""
    k = np.linalg.solve(a, b)
    return bool(np.allclose(k, np.rint(k), atol=0.05) and abs(abs(np.linalg.det(np.rint(k))) - 1) < 1e-9)
