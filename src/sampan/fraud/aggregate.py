"""Patch scores -> one image score (the probability that the image is REAL, like every score here).

``mean_logit`` averages the patches' log-odds: robust to a few noisy patches, right for a fully generated image.
``top_logit`` averages the log-odds of the ``k`` least real patches only: a small inpainted region (a text line,
a photo) is a few patches among dozens, and the mean over all of them dilutes it (image AUC on uncaptured inpainted
local proxies 0.58-0.64 with mean_logit, 0.72-0.82 with the top 3).
``soft_or`` is the noisy-OR of the patches' fake probabilities (the image is fake if any patch is):
P(real) = prod(score_i), computed in log space; it reacts to a small manipulated region, but its scale shrinks
with the number of patches, so its threshold must be fitted (`sampan.fraud.threshold`) at the slicer settings it
is used with.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from sampan.errors import ConfigError, DataError

__all__ = ["AGGREGATIONS", "SCORE_FLOOR", "image_score"]

AGGREGATIONS: tuple[str, ...] = ("mean_logit", "top_logit", "soft_or")
SCORE_FLOOR = 1e-6  # scores are clipped to [floor, 1 - floor]: one confident patch cannot give an infinite logit


def image_score(patch_scores: ArrayLike, method: Literal["mean_logit", "top_logit", "soft_or"] | str = "mean_logit",
                k: int = 3) -> float:
    """The image's real probability from its patches' real probabilities (scores in [0, 1]); ``k`` for
    ``top_logit`` (all patches when the image has fewer)."""
    scores = np.asarray(patch_scores, dtype=np.float64).ravel()
    if method not in AGGREGATIONS:
        raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)} (got {method!r})")
    if scores.size == 0:
        raise DataError("no patch to score: every patch of the image is flat (blank or saturated), so the image "
                        "carries no fingerprint; lower the slicer's flat_std_min or check the image")
    if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
        raise DataError("patch scores must be finite numbers in [0, 1]")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"aggregation k must be an integer >= 1 (got {k!r})")
    clipped = np.clip(scores, SCORE_FLOOR, 1.0 - SCORE_FLOOR)
    if method in ("mean_logit", "top_logit"):
        if method == "top_logit":
            clipped = np.sort(clipped)[:k]
        mean = float(np.mean(np.log(clipped) - np.log1p(-clipped)))
        return float(1.0 / (1.0 + np.exp(-mean)))
    return float(np.exp(np.sum(np.log(clipped))))
