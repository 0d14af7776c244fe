"""The decision threshold, fixed on REAL validation images at a stated false-positive rate.

An image is FAKE when its score (real probability) is below the threshold. With n real validation scores
sorted ascending, the threshold is the k-th lowest, k = floor(fpr * n): at most k of the n real images score
strictly below it, so the empirical FPR is at most the target. A target FPR needs at least ceil(1 / fpr) real
images (else k = 0 and the rate cannot be estimated at all); the error says how many.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from sampan.errors import ConfigError, DataError

__all__ = ["fit_threshold", "min_real_images"]


def min_real_images(fpr: float) -> int:
    """The fewest real validation images that can fix a threshold at ``fpr``."""
    if not (isinstance(fpr, (int, float)) and math.isfinite(fpr) and 0 < fpr < 1):
        raise ConfigError(f"fpr must be a number strictly between 0 and 1 (got {fpr!r})")
    return math.ceil(1.0 / fpr - 1e-9)


def fit_threshold(real_image_scores: ArrayLike, fpr: float) -> float:
    """Threshold such that at most ``fpr`` of these real images score below it (are called fake)."""
    needed = min_real_images(fpr)
    scores = np.sort(np.asarray(real_image_scores, dtype=np.float64).ravel())
    if not np.isfinite(scores).all():
        raise DataError("real validation scores must be finite")
    if scores.size < needed:
        raise DataError(f"a threshold at FPR {fpr:g} needs at least {needed} real validation images, got "
                        f"{scores.size}; add real images or state a larger FPR")
    k = int(math.floor(fpr * scores.size + 1e-9))
    return float(scores[k])
