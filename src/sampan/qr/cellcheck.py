"""The cell-standardisation check of distributed verification (REVQ-14): why the sites also share moments.

The problem. The keyed correlation c = cells . t / n is meaningful only for STANDARDISED cells (zero mean, unit
variance: `sampan.qr.features.standard_cells` does that on the device). A plaintext verifier re-standardises what
it gets; the sites of `sampan.qr.distributed` see uniform Shamir shares and cannot, so a scanning app that
multiplies a photocopy's cells by 2 doubled its correlation and the quorum said "original".

The design (picked over the alternatives). Next to the verifier scores, every site returns two moments of the
cell part of its share: the linear sum(cells) (a degree t - 1 point, like a score) and the local sum of squares
sum(cells_j^2) (a point of the degree 2(t - 1) polynomial sum_j f_j(z)^2, whose constant is sum(x_j^2): Shamir
shares multiply locally, at the price of the degree). The combiner interpolates the sum from t points and the sum
of squares from 2t - 1 points, and accepts the scores only when mean ~ 0 and variance ~ 1 (within `TOLERANCE`).
Under that check the correlation is the Pearson correlation of the cells with the template (t has zero mean and
unit variance), which is invariant to scale and offset and at most 1 (Cauchy-Schwarz): scaling a copy's cells no
longer raises it, and raising it otherwise needs the template, i.e. the key. Checking (rather than dividing by a
shared norm) keeps the released numbers those of an honest device: for standardised cells the sum is 0 and the
sum of squares n, so the moments tell the combiner nothing it did not know.

The price, stated:
- a verdict on keyed features needs 2t - 1 answering sites, not t (the product doubles the degree); the moments
  are cross-checked only with 2t or more answers (with exactly 2t - 1 a lying site can shift the sum of squares,
  as with exactly t answers for the scores);
- the sum-of-squares polynomial is not re-randomised (no dealer-free zero sharing among the sites here): the
  combiner learns its higher coefficients, e.g. for t = 2 sum(x_j a_j) and sum(a_j^2) with a the uniform
  slope vector. Alone these are uniform and independent of x; with t - 1 colluding sites (who know their share
  s = x + a i) they give s . x: ONE extra linear functional of the cells in a random direction, on top of the
  scores;
- a MALICIOUS device that deviates from the sharing itself (shares off a degree t - 1 polynomial, or field
  elements outside the fixed-point range so that the sum of squares wraps modulo p) is not excluded: that needs
  range / consistency proofs (zero-knowledge), not implemented. The check defeats the cheap attack (rescaling the
  vector through the honest encoder); the key-free statistics of the model verifier stay device-chosen, so a
  verdict on keyed features should accept on the keyed correlation, not on the model score alone.
"""

from __future__ import annotations

import math

import numpy as np

from sampan.qr.features import N_STATS
from sampan.qr.shares import PRIME, X_FRAC_BITS, decode_value

__all__ = ["SUM", "SUMSQ", "MOMENTS", "TOLERANCE", "has_cells", "cell_moments", "standardised"]

SUM, SUMSQ = "cells:sum", "cells:sumsq"   # reserved partial-result names (a ':' no verifier name carries)
MOMENTS = (SUM, SUMSQ)
TOLERANCE = 1e-3   # honest cells: |mean| and |var - 1| are ~1e-6 after the 2^-20 fixed point


def has_cells(n_features: int) -> bool:
    """Whether a vector of `n_features` values has the feature layout (N_STATS statistics + a square of cells)."""
    side = int(round(math.sqrt(max(n_features - N_STATS, 0))))
    return side >= 4 and side * side == n_features - N_STATS


def cell_moments(share: np.ndarray) -> dict[str, int]:
    """A site's points of sum(cells) (degree t - 1) and sum(cells^2) (degree 2t - 2) from its share."""
    cells = [int(v) for v in share[N_STATS:].tolist()]
    return {SUM: sum(cells) % PRIME, SUMSQ: sum(v * v % PRIME for v in cells) % PRIME}


def standardised(total: int, squares: int, n_cells: int) -> tuple[bool, float, float]:
    """(within tolerance, mean, variance) of the cells from the reconstructed moments (field elements)."""
    try:
        mean = decode_value(total, X_FRAC_BITS) / n_cells
        var = decode_value(squares, 2 * X_FRAC_BITS) / n_cells - mean * mean
    except ValueError:   # outside the fixed-point range: not an honest encoding
        return False, math.nan, math.nan
    return abs(mean) <= TOLERANCE and abs(var - 1.0) <= TOLERANCE, mean, var
