"""The Fourier-magnitude sync template and the estimate of rotation and scale from it.

Embedding adds N_SYNC key-derived cosines (carriers.sync_peaks): sharp peaks in |FFT| at mid frequencies.
A rotation, scale or shear L of the image (p' = L p + t) moves a peak f to L^-T f and leaves |FFT| blind to
the translation t. Detection whitens |FFT| of the (windowed) luma, takes its strongest local peaks, and
votes: each (template peak, observed peak) pair proposes a rotation and scale (the log-polar match done on
points: a Hough vote in (angle, log radius)); each proposal is scored by the whitened magnitude at all
N_SYNC predicted places; the best ones are refined (twice) by a least-squares fit of a similarity (turn
and zoom) to the sub-bin peak positions: a full 2x2 fit on a handful of peaks picks up a spurious shear.
Translation is found later from the pilot (detect.py); a shear or aspect change is not modelled (uniform
scale only: a 10 % aspect change removes the mark, tests/attacks/test_revw_aspect.py).

The template and its search use only the "sync" stream of the key, independent of the pilot chips, so the
geometry chosen here does not bias the pilot test under H0 (detect.py counts the candidates it tries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sampan.watermark.carriers import sync_peaks
from sampan.watermark.keys import WatermarkKey

__all__ = ["template", "Geometry", "estimate_geometry"]

_FFT_MIN = 512
_FFT_MAX = 1024
_SCALES = (0.5, 2.0)  # image scale factors searched


def template(shape: tuple[int, int], key: WatermarkKey, amplitude: float) -> np.ndarray:
    """The sum of the key's sync cosines over an image of `shape`, each with `amplitude` grey levels."""
    freqs, phases = sync_peaks(key)
    ys = np.arange(shape[0], dtype=float)[:, None]
    xs = np.arange(shape[1], dtype=float)[None, :]
    out = np.zeros(shape)
    for (fy, fx), phase in zip(freqs, phases, strict=True):
        out += np.cos(2 * np.pi * fy * ys + phase) * np.cos(2 * np.pi * fx * xs) \
            - np.sin(2 * np.pi * fy * ys + phase) * np.sin(2 * np.pi * fx * xs)
    return amplitude * out


@dataclass(frozen=True)
class Geometry:
    """A candidate linear map L of the attack (observed p' = L p + t), with the sync evidence for it."""

    matrix: np.ndarray  # L, 2x2 in (row, col) coordinates
    score: float  # mean whitened magnitude at the predicted peaks (about 1 without a template)
    matched: int  # template peaks found near their predicted place

    @property
    def rotation_deg(self) -> float:
        """Rotation of the image content, degrees counter-clockwise as displayed (Pillow's rotate sign)."""
        return float(np.degrees(np.arctan2(self.matrix[1, 0] - self.matrix[0, 1],
                                           self.matrix[0, 0] + self.matrix[1, 1])))

    @property
    def scale(self) -> float:
        """Linear scale factor of the image content (sqrt of |det L|)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))


def _spectrum(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Whitened |FFT| of the centred square of `y` (Hann window, zero-padded to at least 512)."""
    side = min(y.shape[0], y.shape[1], _FFT_MAX)
    top, left = (y.shape[0] - side) // 2, (y.shape[1] - side) // 2
    patch = y[top:top + side, left:left + side]
    patch = patch - patch.mean()
    window = np.hanning(side)
    n = max(_FFT_MIN, side)
    mag = np.abs(np.fft.fft2(patch * window[:, None] * window[None, :], s=(n, n)))
    background = ndimage.uniform_filter(mag, size=15, mode="wrap")
    return mag / (background + 1e-9 * float(background.mean()) + 1e-12), n


def _sample(spec: np.ndarray, n: int, freqs: np.ndarray) -> np.ndarray:
    """Max of the spectrum in the 3x3 bins around each frequency (rows (f_y, f_x))."""
    idx = np.rint(freqs * n).astype(int)
    best = np.zeros(len(freqs))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            best = np.maximum(best, spec[(idx[:, 0] + dy) % n, (idx[:, 1] + dx) % n])
    return best


def _refine(spec: np.ndarray, n: int, tmpl: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Least-squares fit of g = M f to sub-bin peak positions near the predictions of `m`."""
    pred = tmpl @ m.T
    found, src = [], []
    for f, g in zip(tmpl, pred, strict=True):
        cy, cx = np.rint(g * n).astype(int)
        win = np.array([[spec[(cy + a) % n, (cx + b) % n] for b in range(-2, 3)] for a in range(-2, 3)])
        a, b = np.unravel_index(int(np.argmax(win)), win.shape)
        if win[a, b] < 2.0 or a in (0, 4) or b in (0, 4):
            continue
        lw = np.log(win + 1e-12)
        oy = 0.5 * (lw[a - 1, b] - lw[a + 1, b]) / (lw[a - 1, b] - 2 * lw[a, b] + lw[a + 1, b] + 1e-12)
        ox = 0.5 * (lw[a, b - 1] - lw[a, b + 1]) / (lw[a, b - 1] - 2 * lw[a, b] + lw[a, b + 1] + 1e-12)
        found.append([(cy + a - 2 + oy) / n, (cx + b - 2 + ox) / n])
        src.append(f)
    if len(found) >= 2:  # a similarity (turn and zoom): steadier than a full 2x2 fit on a few peaks
        s, g = np.array(src), np.array(found)
        rows = np.concatenate([np.stack([s[:, 0], -s[:, 1]], 1), np.stack([s[:, 1], s[:, 0]], 1)])
        (a_, b_), *_ = np.linalg.lstsq(rows, np.concatenate([g[:, 0], g[:, 1]]), rcond=None)
        m = np.array([[a_, -b_], [b_, a_]])
    score = float(np.mean(_sample(spec, n, tmpl @ m.T)))
    return m, score, len(found)


def sync_spectrum(y: np.ndarray) -> tuple[np.ndarray, int]:
    """The whitened magnitude spectrum the template is looked for in (and its FFT size)."""
    return _spectrum(y)


def template_score(spectrum: tuple[np.ndarray, int], key: WatermarkKey, matrix: np.ndarray) -> float:
    """Mean whitened |FFT| at the key's sync peaks moved by the map L = `matrix` (about 1 by chance)."""
    spec, n = spectrum
    tmpl, _ = sync_peaks(key)
    m = np.linalg.inv(matrix).T
    return float(np.mean(_sample(spec, n, tmpl @ m.T)))


def zoom_for_turn(spectrum: tuple[np.ndarray, int], key: WatermarkKey, turn: np.ndarray,
                  *, step: float = 0.002) -> tuple[float, float]:
    """The image scale s (0.5..2) that best puts the key's sync peaks on the spectrum when the rotation is
    known (`turn`, a 2x2 rotation, e.g. from the tile lattice): a 1-D scan, far steadier than the 2-D vote.
    Returns (s, mean whitened magnitude there)."""
    spec, n = spectrum
    tmpl, _ = sync_peaks(key)
    scales = np.exp(np.arange(np.log(_SCALES[0]), np.log(_SCALES[1]), step))
    base = tmpl @ turn.T  # L = s R moves f to R f / s (R orthonormal)
    preds = base[None, :, :] / scales[:, None, None]
    scores = _sample(spec, n, preds.reshape(-1, 2)).reshape(len(scales), -1).mean(axis=1)
    best = int(np.argmax(scores))
    return float(scales[best]), float(scores[best])


def estimate_geometry(y: np.ndarray, key: WatermarkKey, *, top: int = 2, n_peaks: int = 48,
                      spectrum: tuple[np.ndarray, int] | None = None) -> list[Geometry]:
    """Up to `top` candidate maps L (best first) that bring the key's template onto peaks of `y`'s spectrum."""
    tmpl, _ = sync_peaks(key)
    spec, n = spectrum if spectrum is not None else _spectrum(y)
    r_lo = max(float(np.min(np.hypot(*tmpl.T))) / _SCALES[1], 0.02)
    r_hi = min(float(np.max(np.hypot(*tmpl.T))) / _SCALES[0], 0.48)
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    radius = np.hypot(fy, fx)
    local_max = spec == ndimage.maximum_filter(spec, size=5, mode="wrap")
    keep = local_max & (radius >= r_lo) & (radius <= r_hi) & (fy >= 0)
    ky, kx = np.nonzero(keep)
    order = np.argsort(spec[ky, kx])[::-1][:n_peaks]
    peaks = np.stack([np.fft.fftfreq(n)[ky[order]], np.fft.fftfreq(n)[kx[order]]], axis=1)
    t_ang = np.arctan2(tmpl[:, 0], tmpl[:, 1])
    t_rad = np.hypot(tmpl[:, 0], tmpl[:, 1])
    p_ang = np.arctan2(peaks[:, 0], peaks[:, 1])
    p_rad = np.hypot(peaks[:, 0], peaks[:, 1])
    rot = (p_ang[None, :] - t_ang[:, None]).ravel()
    zoom = (p_rad[None, :] / t_rad[:, None]).ravel()  # frequency zoom = 1 / image scale
    ok = (zoom >= 1 / _SCALES[1]) & (zoom <= 1 / _SCALES[0])
    rot, zoom = rot[ok], zoom[ok]
    if len(rot) == 0:
        return []
    cos, sin = np.cos(rot), np.sin(rot)
    # M maps template frequencies (f_y, f_x) to observed ones: rotation by `rot` in the (x, y) plane.
    mats = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2) * zoom[:, None, None]
    preds = np.einsum("mij,kj->mki", mats, tmpl)
    idx = np.rint(preds * n).astype(int) % n
    scores = spec[idx[..., 0], idx[..., 1]].mean(axis=1)
    best: list[Geometry] = []
    for i in np.argsort(scores)[::-1][: 4 * top]:
        m, score, matched = _refine(spec, n, tmpl, mats[i])
        if matched >= 2:  # a second pass from the better prediction finds more peaks
            m, score, matched = _refine(spec, n, tmpl, m)
        if abs(np.linalg.det(m)) < 1e-9:
            continue
        matrix = np.linalg.inv(m).T  # L = M^-T
        if any(np.allclose(matrix, g.matrix, atol=2e-3) for g in best):
            continue
        best.append(Geometry(matrix, score, matched))
    best.sort(key=lambda g: -g.score)
    return best[:top]
