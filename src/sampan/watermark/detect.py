"""Detection: undo rotation/scale from the sync template, fold the residual onto the tile, find the offset
from the pilot, decode the bits, and test H0 with a search-corrected p-value (stats.py).

Identity is tried first; unless it already gives p < 1e-20, the candidate maps L from the sync template
and the tile lattice follow (at most MAX_CANDIDATES in all). For each:
pull the high-pass residual (the luma minus a small Gaussian blur, clipped at 4 robust standard deviations
so strong edges do not dominate) back through L (scipy.ndimage.affine_transform, bilinear), sum it over
all TILE x TILE windows (the fold: every repetition of the mark adds up, a crop keeps whatever tiles are
left), find the circular offset that best matches the pilot tile (FFT cross-correlation), and read the
chips at that offset. The pilot's normalised correlation is the test statistic; each bit's is its
confidence. The search stops early once a candidate's p-value is below 1e-20 (the p-value still counts the
full search); otherwise a promising best geometry is refined on a 3 x 3 grid of small turns and zooms.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

from sampan.watermark._image import check_image, luma
from sampan.watermark.carriers import TILE, Carriers, carriers_for, chips_to_tile, tile_to_chips
from sampan.watermark.errors import WatermarkError
from sampan.watermark.keys import WatermarkKey
from sampan.watermark.lattice import acf, lattice_maps, refine_map
from sampan.watermark.stats import MAX_CANDIDATES, MIRRORS, REFINE_GRID, normalised_correlation, p_value, threshold_for
from sampan.watermark.sync import Geometry, estimate_geometry, sync_spectrum, template_score, zoom_for_turn

__all__ = ["Detection", "detect", "fixed_statistic", "fold", "residual", "threshold_for"]

_EARLY_STOP = 1e-20
_MAX_OUT = 1536
_REFINE_FROM = 5.0  # refine only a promising best z (saves time on most unmarked images; counted anyway)
_REFINE_TURN = math.radians(0.2)
_REFINE_ZOOM = 0.003


@dataclass(frozen=True)
class Detection:
    """The outcome of `detect`: decoded bits, their confidences, and the test of H0 (not marked with this key).

    `statistic` is the best pilot z; `p_value` is search-corrected (stats.py), so `marked_at(fpr)` has a
    false-positive rate of at most `fpr` over unmarked images. `rotation_deg`/`scale` describe the geometry
    that was inverted (after transposing the image when `mirrored`), `offset` the tile origin (row, col) found
    in the re-aligned image.

    `bits` and `bit_confidences` are read at the best geometry and offset whether or not the image is marked:
    for an image that is not `marked_at(fpr)` they are meaningless (decoded from noise) and should not be
    shown as a payload. `bit_confidences[i]` is Phi(|z_i|) of the bit's normalised correlation z_i (`bit_z`):
    a strength score, >= 0.5 by construction and above 0.9 for about 1 bit in 5 of pure noise; it is not a
    posterior probability that the bit is right (under H0 no bit is "right")."""

    bits: list[int]
    bit_confidences: list[float]  # Phi(|z_i|), a bit's strength: NOT a probability that the bit is right
    bit_z: list[float]
    p_value: float
    statistic: float
    rotation_deg: float
    scale: float
    offset: tuple[int, int]
    notes: list[str] = field(default_factory=list)
    mirrored: bool = False  # the mark was found in the transposed image (the input was flipped or transposed)

    def marked_at(self, fpr: float) -> bool:
        """True when the mark is detected at false-positive rate `fpr` (p-value <= fpr)."""
        threshold_for(fpr)  # validates fpr
        return self.p_value <= fpr


def residual(y: np.ndarray) -> np.ndarray:
    """The high-pass residual the detector correlates: luma minus a small blur, clipped at 4 robust sigmas
    (1.48 x the median absolute value, on every 3rd row and column) so edges and text do not dominate."""
    r = y - ndimage.gaussian_filter(y, 1.0)
    sigma = 1.4826 * float(np.median(np.abs(r[::3, ::3]))) + 1e-6
    return np.clip(r, -4 * sigma, 4 * sigma)


def fold(r: np.ndarray) -> np.ndarray:
    """Sum of all TILE x TILE windows of `r` aligned on multiples of TILE (zero-padded at the far edges)."""
    h, w = r.shape
    ph, pw = -(-h // TILE) * TILE, -(-w // TILE) * TILE
    padded = np.zeros((ph, pw))
    padded[:h, :w] = r
    return padded.reshape(ph // TILE, TILE, pw // TILE, TILE).sum(axis=(0, 2))


def _warp(r: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """J(p) = R(L p + c): the residual pulled back through L, centred, over the box that covers the observed
    image (zero outside it, so nothing there adds to the fold)."""
    h, w = r.shape
    inv = np.linalg.inv(matrix)
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], dtype=float) - [(h - 1) / 2, (w - 1) / 2]
    span = np.abs(corners @ inv.T).max(axis=0)
    limit = min(_MAX_OUT, 2 * max(h, w))
    oh, ow = (min(int(2 * s) + 1, limit) for s in span)
    offset = np.array([(h - 1) / 2, (w - 1) / 2]) - matrix @ np.array([(oh - 1) / 2, (ow - 1) / 2])
    out = np.empty((oh, ow), dtype=np.float32)
    ndimage.affine_transform(r.astype(np.float32), matrix, offset=offset, output=out, order=1, mode="constant",
                             cval=0.0, prefilter=False)
    return out


@dataclass(frozen=True)
class _Read:
    z: float
    offset: tuple[int, int]
    bit_z: np.ndarray


def _read(r: np.ndarray, carriers: Carriers, pilot_tile_fft: np.ndarray) -> _Read:
    """Fold, find the offset by the pilot, and read the normalised pilot and bit correlations there."""
    folded = fold(r)
    corr = np.fft.irfft2(np.fft.rfft2(folded) * np.conj(pilot_tile_fft), s=folded.shape)
    sy, sx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    chips = tile_to_chips(np.roll(folded, (-int(sy), -int(sx)), axis=(0, 1)))
    z = normalised_correlation(chips[carriers.pilot_index], carriers.pilot_sign)
    bit_chips = chips[carriers.bit_index]
    energy = np.sqrt(np.maximum((bit_chips * bit_chips).sum(axis=1), 1e-300))
    bit_z = (bit_chips * carriers.bit_sign).sum(axis=1) / energy
    return _Read(z, (int(sy), int(sx)), bit_z)


_TURN = np.array([[0.0, -1.0], [1.0, 0.0]])
_HALF = np.array([[0.5, 0.5], [-0.5, 0.5]])  # the lattice with half the cell area, turned 45 degrees


def _nearest_turn(matrix: np.ndarray) -> np.ndarray:
    """Of the four quarter turns of a lattice map (which the lattice cannot tell apart), the one with the
    smallest rotation: the lattice path assumes |rotation| <= 45 degrees (beyond, the sync template)."""
    turns = [matrix @ np.linalg.matrix_power(_TURN, k) for k in range(4)]
    return min(turns, key=lambda m: abs(np.arctan2(m[0, 1] - m[1, 0], m[0, 0] + m[1, 1])))


def _candidates(y: np.ndarray, r: np.ndarray, key: WatermarkKey) -> tuple[list[tuple[np.ndarray, str]], int]:
    """Maps L to try after identity, most promising first, alternating two sources: the sync template's
    estimates (each followed by its 180-degree twin, which |FFT| cannot tell apart), and the tile lattice's
    (with cells half and twice as large, in case the ACF locked onto a diagonal) ordered by how well each
    puts the key's sync peaks on the spectrum. Maps within 0.3% of identity are left out (identity is tried)."""
    spec = sync_spectrum(y)
    corr = acf(r)
    synced: list[tuple[np.ndarray, str]] = []
    for g in estimate_geometry(y, key, top=3, spectrum=spec):
        sharp, height = refine_map(corr, g.matrix)
        if np.abs(sharp - g.matrix).max() < 0.05:  # the lattice agrees with the template: use its precision
            synced += [(sharp, f"sync template + lattice (score {g.score:.1f}, ACF {height:.3f})"),
                       (-sharp, "sync template + lattice turned 180")]
        synced += [(g.matrix, f"sync template (score {g.score:.1f}, {g.matched} peaks)"),
                   (-g.matrix, "sync template turned 180")]
    latticed: list[tuple[float, np.ndarray, str]] = []
    for matrix, height in lattice_maps(corr):
        # the lattice's rotation is reliable (mod 90 degrees), its scale less so: scan the scale with the
        # sync template for the two distinct quarter turns (the other two are their 180-degree twins)
        base = _nearest_turn(matrix)
        base = base / math.sqrt(abs(np.linalg.det(base)))
        for k in (0, 1):
            turn = base @ np.linalg.matrix_power(_TURN, k)
            zoom, score = zoom_for_turn(spec, key, turn)
            sharp, acf_height = refine_map(corr, zoom * turn)
            if np.abs(sharp - zoom * turn).max() >= 0.05:
                sharp = zoom * turn
            latticed += [(score + 0.5, sharp, f"lattice turn + template zoom (score {score:.1f})"),
                         (score + 0.4, -sharp, "lattice turn + template zoom, turned 180")]
        for variant, name in ((matrix, ""), (matrix @ _HALF, ", half cell"),
                              (matrix @ np.linalg.inv(_HALF), ", double cell")):
            turned = _nearest_turn(variant)
            score = template_score(spec, key, turned)
            latticed.append((score, turned, f"tile lattice{name} (ACF {height:.3f}, sync score {score:.1f})"))
    latticed.sort(key=lambda item: -item[0])
    # alternate the two sources: the sync template is the better guide on photos, the lattice on documents
    ordered: list[tuple[np.ndarray, str]] = []
    for i in range(max(len(synced), len(latticed))):
        ordered += synced[i:i + 1] + [(m, label) for _, m, label in latticed[i:i + 1]]
    kept: list[tuple[np.ndarray, str]] = []
    for m, label in ordered:  # identity is tried anyway; near-duplicates would only cost time
        if all(np.abs(m - other).max() > 3e-3 for other in [np.eye(2)] + [k for k, _ in kept]):
            kept.append((m, label))
    return kept, len(kept)


def _refine(r0: np.ndarray, best: tuple[_Read, np.ndarray, str], carriers: Carriers,
            pilot_fft: np.ndarray) -> tuple[_Read, np.ndarray, str]:
    """The best of the fixed 3 x 3 grid of small turns and zooms around the best geometry (stats.REFINE_GRID)."""
    _, matrix, label = best
    for turn, zoom in itertools.product((-_REFINE_TURN, 0.0, _REFINE_TURN), (-_REFINE_ZOOM, 0.0, _REFINE_ZOOM)):
        if turn == 0.0 and zoom == 0.0:
            continue
        c, s = math.cos(turn), math.sin(turn)
        step = (1.0 + zoom) * np.array([[c, -s], [s, c]])
        candidate = matrix @ step
        read = _read(_warp(r0, candidate), carriers, pilot_fft)
        if read.z > best[0].z:
            best = (read, candidate, f"{label}, refined ({math.degrees(turn):+.1f} deg, {100 * zoom:+.1f}%)")
    return best


def fixed_statistic(image: np.ndarray, key: WatermarkKey, *, offset: tuple[int, int] = (0, 0),
                    n_bits: int = 32) -> float:
    """The pilot statistic z at one fixed geometry (identity) and tile offset: no search at all, so under H0 it
    is a unit-variance Rademacher sum (about N(0, 1)). For checking the null distribution, not for detection."""
    image = check_image(image)
    if not isinstance(key, WatermarkKey):
        raise WatermarkError(f"field 'key' must be a WatermarkKey, got {type(key).__name__}")
    carriers = carriers_for(key, n_bits)
    folded = fold(residual(luma(image)))
    chips = tile_to_chips(np.roll(folded, (-offset[0], -offset[1]), axis=(0, 1)))
    return normalised_correlation(chips[carriers.pilot_index], carriers.pilot_sign)


def _search(y: np.ndarray, r0: np.ndarray, key: WatermarkKey, carriers: Carriers,
            pilot_fft: np.ndarray) -> tuple[tuple[_Read, np.ndarray, str], int]:
    """Identity, then (unless identity is already conclusive) the candidate maps, best pilot read first."""
    best = (_read(r0, carriers, pilot_fft), np.eye(2), "identity")
    n_options = 0
    if p_value(best[0].z) >= _EARLY_STOP:  # not clearly marked as it stands: undo a rotation/scale
        candidates, n_options = _candidates(y, r0, key)
        warped: list[tuple[np.ndarray, np.ndarray]] = []
        for matrix, label in candidates[: MAX_CANDIDATES - 1]:
            twin = next((w for m, w in warped if np.allclose(m, -matrix)), None)
            # -L pulls back the same pixels as L, turned 180 degrees about the centre: no second warp
            image_back = twin[::-1, ::-1] if twin is not None else _warp(r0, matrix)
            warped = warped[-2:] + [(matrix, image_back)]  # a twin comes at most two places later
            read = _read(image_back, carriers, pilot_fft)
            if read.z > best[0].z:
                best = (read, matrix, label)
            if p_value(read.z) < _EARLY_STOP:
                break
    return best, n_options


def detect(image: np.ndarray, key: WatermarkKey, *, n_bits: int = 32) -> Detection:
    """Look for `key`'s mark in `image`; see the module note and stats.py for what the p-value means.

    Survives rotation (any angle), UNIFORM scale (0.5x..2x), translation, crop and mirror flips (horizontal,
    vertical, transpose: the whole search is repeated on the transposed image, counted in the p-value).
    Uniform scale only: an aspect-ratio change or shear (e.g. resizing the width alone by 10 %) is not
    modelled and removes the mark (tests/attacks/test_revw_aspect.py). Detection proves only that the image
    carries a copy of the key's pattern, not who put it there: see the package note (copy and averaging
    attacks)."""
    image = check_image(image)
    if not isinstance(key, WatermarkKey):
        raise WatermarkError(f"field 'key' must be a WatermarkKey, got {type(key).__name__}")
    carriers = carriers_for(key, n_bits)
    pilot_tile = chips_to_tile(carriers.chips(None))
    pilot_fft = np.fft.rfft2(pilot_tile)
    y = luma(image)
    r0 = residual(y)
    best, n_options = _search(y, r0, key, carriers, pilot_fft)
    mirrored = False
    if p_value(best[0].z) >= _EARLY_STOP:  # not clearly marked: try the mirror image too (a flip or transpose)
        yt, rt = np.ascontiguousarray(y.T), np.ascontiguousarray(r0.T)
        best_t, n_t = _search(yt, rt, key, carriers, pilot_fft)
        n_options += n_t
        if best_t[0].z > best[0].z:
            best, mirrored, r0 = best_t, True, rt
    if _REFINE_FROM <= best[0].z and p_value(best[0].z) >= _EARLY_STOP:
        best = _refine(r0, best, carriers, pilot_fft)
    read, matrix, label = best
    geometry = Geometry(matrix, 0.0, 0)
    if mirrored:
        label = f"mirrored (transposed), {label}"
    notes = [f"geometry: {label}; {n_options} candidate(s) besides identity; p-value Bonferroni over "
             f"{MIRRORS} orientations x {MAX_CANDIDATES} geometries x {REFINE_GRID} refinements x "
             f"{TILE}x{TILE} offsets"]
    if float(np.abs(r0).max()) < 1e-6:  # REVW-7: the statistic would only rank floating-point rounding
        notes.append("flat image: no texture to carry a mark (the statistic ranks rounding noise)")
    return Detection(
        bits=[int(z > 0) for z in read.bit_z],
        bit_confidences=[float(ndtr(abs(z))) for z in read.bit_z],
        bit_z=[float(z) for z in read.bit_z],
        p_value=p_value(read.z),
        statistic=float(read.z),
        rotation_deg=geometry.rotation_deg,
        scale=geometry.scale,
        offset=read.offset,
        notes=notes,
        mirrored=mirrored,
    )
