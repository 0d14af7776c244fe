"""The fraud benchmark's metrics: scoring cached documents, AUC with a bootstrap interval, FNR at a validation-fixed
FPR with an exact interval, ECE, and patch localisation on inpainted fakes.

Positive class = fake everywhere. A document's score is its REAL probability (the detector's mean-logit image
score); its fake probability is 1 - score. Thresholds follow the FantasyID protocol: fixed on the REAL VALIDATION
images (`sampan.fraud.threshold.fit_threshold`), then applied unchanged to the test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from _fraud_data import PATCH_IN_MASK, Doc, patch_in_mask
from scipy import stats

from sampan.fraud.aggregate import image_score
from sampan.fraud.heatmap import patch_heatmap
from sampan.fraud.scorer import PatchModel
from sampan.fraud.threshold import fit_threshold
from sampan.metrics.classification import roc_auc

FPRS = (0.10, 0.01)
ECE_BINS = 10
HEATMAP_THRESHOLD = 0.5     # a pixel is flagged when its heatmap fake probability is >= this
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Scored:
    """Image scores (real probability) of a list of documents, and each document's patch fake probabilities."""

    docs: list[Doc]
    scores: np.ndarray
    patch_fake: list[np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        return np.array([d.label for d in self.docs], dtype=int)

    def subset(self, keep: Sequence[bool]) -> Scored:
        idx = np.flatnonzero(np.asarray(keep, dtype=bool))
        return Scored([self.docs[i] for i in idx], self.scores[idx], [self.patch_fake[i] for i in idx])


def score_docs(model: PatchModel, docs: Sequence[Doc], method: str = "mean_logit", k: int = 3) -> Scored:
    """Score every document with one call of the patch model (features cached); ``method``/``k`` as in
    `sampan.fraud.aggregate.image_score` (the detector's default: mean_logit)."""
    lengths = [len(d.features) for d in docs]
    fake = model.fake_probability(np.vstack([d.features for d in docs]))
    parts = np.split(fake, np.cumsum(lengths)[:-1])
    scores = np.array([image_score(1.0 - p, method, k) for p in parts])
    return Scored(list(docs), scores, list(parts))


def auc_interval(labels: np.ndarray, fake_prob: np.ndarray, seed: int) -> tuple[float, float, float]:
    """(AUC, 2.5%, 97.5%): a stratified bootstrap of images (reals and fakes resampled separately)."""
    auc = float(roc_auc(labels, fake_prob))
    pos, neg = fake_prob[labels == 1], fake_prob[labels == 0]
    rng = np.random.default_rng(seed)
    ranks_all = np.empty(BOOTSTRAP)
    for b in range(BOOTSTRAP):
        p = pos[rng.integers(0, pos.size, pos.size)]
        n = np.sort(neg[rng.integers(0, neg.size, neg.size)])
        below = np.searchsorted(n, p, side="left")
        ties = np.searchsorted(n, p, side="right") - below
        ranks_all[b] = (below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size)
    lo, hi = np.quantile(ranks_all, [0.025, 0.975])
    return auc, float(lo), float(hi)


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact two-sided 95% interval of a binomial proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    lo = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def ece(labels: np.ndarray, fake_prob: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the image fake probability: equal-width bins on [0, 1], |fake share - mean
    probability| weighted by the bin's share of images."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(fake_prob, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(labels[in_bin].mean() - fake_prob[in_bin].mean())
    return float(total)


def thresholds(validation: Scored, fprs: Sequence[float] = FPRS) -> dict[float, float]:
    """The decision threshold at each FPR, fixed on the REAL validation images' scores."""
    real = validation.scores[validation.labels == 0]
    return {fpr: fit_threshold(real, fpr) for fpr in fprs}


def detection(test: Scored, cuts: dict[float, float], seed: int) -> dict[str, Any]:
    """AUC (+ bootstrap interval), FNR at each validation-fixed FPR (+ exact interval) and the realised test FPR,
    ECE, image counts."""
    y, fake_prob = test.labels, 1.0 - test.scores
    out: dict[str, Any] = {"n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}
    if out["n_real"] and out["n_fake"]:
        auc, lo, hi = auc_interval(y, fake_prob, seed)
        out["auc"], out["auc_ci"] = auc, [lo, hi]
    for fpr, cut in cuts.items():
        real, fake = test.scores[y == 0], test.scores[y == 1]
        missed = int((fake >= cut).sum())
        out[f"fpr{fpr:g}"] = {"threshold": cut, "fnr": missed / fake.size if fake.size else None,
                              "fnr_ci": list(clopper_pearson(missed, int(fake.size))),
                              "test_fpr": float((real < cut).mean()) if real.size else None}
    out["ece"] = ece(y, fake_prob)
    return out


def localisation(test: Scored) -> dict[str, Any]:
    """On the inpainted test fakes: mean IoU of the thresholded heatmap vs the warped mask, and the patch-level
    AUC inside those images (manipulated patches vs the image's other patches; threshold-free)."""
    ious, truth, probs = [], [], []
    for doc, fake in zip(test.docs, test.patch_fake, strict=True):
        if doc.source != "inpaint" or doc.mask is None:
            continue
        heat = patch_heatmap(doc.shape, doc.boxes, fake)
        flagged, mask = heat >= HEATMAP_THRESHOLD, doc.mask.astype(bool)
        union = int((flagged | mask).sum())
        ious.append(float((flagged & mask).sum()) / union if union else 0.0)
        truth.append(patch_in_mask(doc))
        probs.append(fake)
    if not ious:
        return {"n_images": 0}
    t, p = np.concatenate(truth), np.concatenate(probs)
    patch_auc = float(roc_auc(t.astype(int), p)) if 0 < t.sum() < t.size else None
    return {"n_images": len(ious), "patch_in_mask": PATCH_IN_MASK, "mean_iou": float(np.mean(ious)),
            "median_iou": float(np.median(ious)),
            "patch_auc": patch_auc, "n_patches": int(t.size), "n_manipulated_patches": int(t.sum())}
