"""The detection test's statistics: exact-variance normalised correlations and search-corrected p-values.

Under H0 ("this image was not marked with this key") the image, and anything computed from it alone, is
independent of the key's pilot signs, which are fair +-1 coins (HMAC as a PRF). For a fixed geometry and
offset the pilot statistic is z = sum_k c_k d_k / sqrt(sum_k d_k^2) (d: the image's chip coefficients,
c: the signs), a weighted Rademacher sum, so Hoeffding's inequality gives P(z >= t) <= exp(-t^2 / 2)
for every image: a p-value that holds exactly, not just asymptotically (it is conservative by about
t * sqrt(2 pi) against the normal tail).

The detector searches: it tries at most MAX_CANDIDATES geometries (identity, then the sync template's
top 3 estimates, sharpened on the tile lattice where it agrees, the tile lattice's top 2 rotations with
the scale scanned by the template, and the lattice's own maps with cells half and twice as large; each
with its 180-degree twin where |FFT| cannot tell them apart), and for each every one of the TILE^2 circular
offsets of the tile; then, when the best pilot z is promising but not yet conclusive, the 8 neighbours
of the best geometry on a fixed grid (turned by -0.2, 0, +0.2 degrees and zoomed by -0.3, 0, +0.3%: the
fold needs the scale to about 0.3%, more than the sync peaks give). The candidates depend only on the
image (the lattice comes from the residual's autocorrelation, no key) and on the key's "sync" stream,
which is independent of the pilot signs. Which candidate is refined, the early stop and the choice of
the best do look at the pilot, so the count covers every grid point of every candidate. The whole search
is made twice (MIRRORS): on the image and on its transpose, so that mirror flips (horizontal, vertical,
transpose: each a transpose followed by a turn the search already covers) are found; the transposed image's
candidates are again a function of the image and the "sync" stream only. The reported z is at most the
maximum over SEARCHES = MIRRORS * MAX_CANDIDATES * REFINE_GRID * TILE^2 fixed (orientation, geometry,
offset) tests, each a Hoeffding-bounded sum under H0 given its geometry, so P(max >= t) <= SEARCHES
exp(-t^2/2) and p = min(1, SEARCHES * exp(-z^2 / 2)). `threshold_for(fpr)` is the z where p = fpr (7.71 for
1e-6, 6.76 for 1e-3). This is conservative: unmarked images rarely reach z = 5.5 (tests/watermark/test_stats.py).
"""

from __future__ import annotations

import math

import numpy as np

from sampan.watermark.carriers import TILE
from sampan.watermark.errors import WatermarkError

__all__ = ["MAX_CANDIDATES", "MIRRORS", "REFINE_GRID", "SEARCHES", "normalised_correlation", "single_test_p", "p_value",
           "threshold_for"]

MIRRORS = 2  # the image as given and its transpose (a flip is a transpose plus a quarter turn)
MAX_CANDIDATES = 28
REFINE_GRID = 9  # the 3 x 3 grid of small turns and zooms around a geometry, itself included
SEARCHES = MIRRORS * MAX_CANDIDATES * REFINE_GRID * TILE * TILE


def normalised_correlation(coeffs: np.ndarray, signs: np.ndarray) -> float:
    """sum c_k d_k / sqrt(sum d_k^2): exactly unit variance over random +-1 signs, whatever d is."""
    energy = float(np.dot(coeffs, coeffs))
    if energy <= 0.0:
        return 0.0
    return float(np.dot(coeffs, signs)) / math.sqrt(energy)


def single_test_p(z: float) -> float:
    """Hoeffding's one-sided bound P(Z >= z) <= exp(-z^2/2) for one fixed geometry and offset."""
    return 1.0 if z <= 0 else math.exp(-0.5 * z * z)


def p_value(z: float, searches: int = SEARCHES) -> float:
    """The search-corrected p-value of the best pilot statistic `z` over `searches` tests."""
    return min(1.0, searches * single_test_p(z))


def threshold_for(fpr: float, searches: int = SEARCHES) -> float:
    """The pilot statistic z at or above which detection's p-value is <= `fpr` (so the FPR is <= `fpr`)."""
    if not (isinstance(fpr, (int, float)) and 0.0 < fpr < 1.0):
        raise WatermarkError(f"field 'fpr' must be a number in (0, 1), got {fpr!r}")
    return math.sqrt(2.0 * math.log(searches / fpr))
