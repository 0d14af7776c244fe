"""Small fraud fixtures for the REVF review repros: rendered documents (no generator training), a detector with a
fixed linear patch model, and a tiny per-bank federated build. Fakes here are real renders with a blurred and
noised copy labelled fake: the repros test what is released, not how well the detector works."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sampan.fraud.detector import Detector
from sampan.fraud.documents import render_document
from sampan.fraud.federated import DpSettings, TrainSettings, public_bounds
from sampan.fraud.fingerprint import FEATURE_NAMES, image_features
from sampan.fraud.scorer import LinearPatchModel
from sampan.fraud.slicer import SlicerConfig
from sampan.fraud.training import BankImages, DetectorBuild, build_detector

SIZE = (64, 64)
SLICER = SlicerConfig()


def render(seed: int, fake: bool = False) -> np.ndarray:
    """One 64x64 rendered document; ``fake`` = the same render, noised (a stand-in trace)."""
    rng = np.random.default_rng(seed)
    image = render_document("id_card" if seed % 2 else "business", rng, SIZE)
    if fake:
        image = np.clip(image + rng.normal(0, 6.0, image.shape), 0, 255).astype(np.uint8)
    return image


def items(prefix: str, n_real: int, n_fake: int, seed: int) -> list[tuple[str, np.ndarray, int]]:
    """(doc_id, image, label) items of one bank."""
    out = [(f"{prefix}-real{i}", render(seed + i), 0) for i in range(n_real)]
    out += [(f"{prefix}-fake{i}", render(seed + 500 + i, fake=True), 1) for i in range(n_fake)]
    return out


def fixed_detector(threshold: float = 0.5, fpr: float = 0.25) -> Detector:
    """A detector whose linear patch model is fixed (standardised on a few renders; seeded coefficients)."""
    X = np.vstack([image_features(render(900 + i), SLICER)[0] for i in range(4)])
    rng = np.random.default_rng(3)
    model = LinearPatchModel(rng.normal(scale=0.3, size=len(FEATURE_NAMES)), 0.0, X.mean(axis=0),
                             np.where(X.std(axis=0) > 1e-9, X.std(axis=0), 1.0))
    return Detector(model, SLICER, "mean_logit", threshold, fpr)


def tiny_build(tmp: Path, *, dp: bool = False, n_real: int = 6, n_fake: int = 6) -> DetectorBuild:
    """Two banks, per-bank thresholds at FPR 0.34 (3 real validation images each), one round."""
    banks = [BankImages(name, items(name, n_real, n_fake, seed), f"/banks/{name}")
             for name, seed in (("bank_a", 10), ("bank_b", 40))]
    settings = None
    if dp:
        reference = np.vstack([image_features(render(700 + i), SLICER)[0] for i in range(6)])
        settings = DpSettings(epsilon=8.0, bounds=public_bounds(reference))
    return build_detector(banks, settings=TrainSettings(rounds=1, max_patches_per_doc=2), dp=settings, fpr=0.34,
                          validation_fraction=0.5, slicer=SLICER, store_path=tmp / "runs.db", work_dir=tmp / "work",
                          seed=1)
