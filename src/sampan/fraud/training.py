"""From banks' labelled images to a saved detector: what `sampan fraud train` does, callable from Python.

Steps: each bank's documents are split by document into training and validation images (at the bank); the training
images' patches go into the federated run (`sampan.fraud.federated`); the trained patch model then scores each
bank's VALIDATION images, and the decision threshold is the one that calls at most ``fpr`` of the real validation
images fake (`sampan.fraud.threshold`). The detector JSON carries the model, the slicer, the aggregation, the
threshold and its FPR, and the provenance (training run, banks, DP settings and their unit, validation figures).

Simulation note: the threshold is fitted on the validation image SCORES of all banks pooled here. Between real
banks those scores would have to be released by each bank (a DP quantile); that step is not built, and the
detector's provenance says so.

Under DP, the standardisation bounds come from a PUBLIC reference corpus: documents rendered with the shipped
generators from a published seed (`PUBLIC_REFERENCE_SEED`), never from a bank's images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sampan.fraud.bank_images import LabelledImage, bank_from_docs, bank_from_images, folder_images
from sampan.fraud.bank_tables import BankData, BankDataError, bank_rng
from sampan.fraud.detector import Detector, load_image
from sampan.fraud.federated import DpSettings, TrainResult, TrainSettings, public_bounds, train_federated
from sampan.fraud.slicer import SlicerConfig
from sampan.fraud.threshold import fit_threshold, min_real_images

__all__ = ["PUBLIC_REFERENCE_SEED", "BankImages", "DetectorBuild", "build_detector", "demo_banks", "folder_banks",
           "public_reference_bounds"]

PUBLIC_REFERENCE_SEED = 20261207  # published: anyone can regenerate the reference corpus and check the bounds
AGGREGATION = "mean_logit"
Say = Callable[[str], None]


@dataclass(frozen=True)
class BankImages:
    """One bank's labelled images: (doc_id, RGB image, label) items; ``origin`` names the folder for errors."""

    name: str
    items: list[tuple[str, np.ndarray, int]]
    origin: str


@dataclass(frozen=True)
class DetectorBuild:
    """A trained detector, its provenance (also saved in the detector file) and the federated result."""

    detector: Detector
    provenance: dict[str, Any]
    result: TrainResult


def folder_banks(folders: Sequence[Path]) -> list[BankImages]:
    """Each ``<bank>/real/*`` and ``<bank>/fake/*`` folder's images, read (every file checked before training)."""
    banks = []
    for folder in folders:
        images: list[LabelledImage] = folder_images(Path(folder))
        items = [(img.doc_id, load_image(img.path), img.label) for img in images]
        banks.append(BankImages(Path(folder).name, items, str(folder)))
    names = [b.name for b in banks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BankDataError(f"bank folders must have distinct names (the bank's name is the folder's): {repeated}")
    return banks


def demo_banks(n_banks: int, docs_per_class: int, size: int, seed: int) -> list[BankImages]:
    """The built-in non-IID banks (`sampan.fraud.corpus.DEFAULT_BANKS`), generated locally."""
    from sampan.fraud.corpus import DEFAULT_BANKS, bank_corpus

    if not 1 <= n_banks <= len(DEFAULT_BANKS):
        raise BankDataError(f"--demo-banks must be between 1 and {len(DEFAULT_BANKS)} (got {n_banks})")
    banks = []
    for profile in DEFAULT_BANKS[:n_banks]:
        docs = bank_corpus(dataclasses.replace(profile, size=(size, size)), docs_per_class, docs_per_class, seed)
        banks.append(BankImages(profile.name, [(d.doc_id, d.image, d.label) for d in docs], "generated corpus"))
    return banks


def public_reference_bounds(slicer: SlicerConfig, size: int = 256, docs_per_class: int = 12) -> dict[str, Any]:
    """DP1 clipping bounds from a public reference corpus (a published seed, the shipped generators)."""
    from sampan.fraud.corpus import DEFAULT_BANKS, BankProfile, bank_corpus

    first = DEFAULT_BANKS[0]
    profile = BankProfile("public_reference", first.kinds, first.sources, first.capture, (size, size))
    data, _ = bank_from_docs("public_reference", bank_corpus(profile, docs_per_class, docs_per_class,
                                                             PUBLIC_REFERENCE_SEED), slicer)
    return public_bounds(data.features)


def _split(bank: BankImages, validation_fraction: float,
           seed: int | None) -> tuple[list[tuple[str, np.ndarray, int]], list[tuple[str, np.ndarray, int]]]:
    """(training items, validation items), by document and per class, at the bank."""
    rng = bank_rng(None if seed is None else seed + 1, bank.name)
    train, validation = [], []
    for label in (0, 1):
        of_class = [item for item in bank.items if item[2] == label]
        if not of_class:
            word = "real" if label == 0 else "fake"
            raise BankDataError(f"bank {bank.name!r} ({bank.origin}): no {word} documents")
        n_val = min(max(1, int(round(validation_fraction * len(of_class)))), len(of_class) - 1)
        order = rng.permutation(len(of_class))
        validation += [of_class[i] for i in order[:n_val]]
        train += [of_class[i] for i in order[n_val:]]
    return train, validation


def _image_scores(detector: Detector, items: Sequence[tuple[str, np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(image scores, labels) of the items that have at least one non-flat patch."""
    scores, labels = [], []
    for _, image, label in items:
        patch_scores, _ = detector.patch_scores(image)
        if patch_scores.size:
            from sampan.fraud.aggregate import image_score

            scores.append(image_score(patch_scores, detector.aggregation))
            labels.append(label)
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)


def _validation(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    from sampan.metrics.classification import roc_auc

    real, fake = scores[labels == 0], scores[labels == 1]
    return {"real_images": int(real.size), "fake_images": int(fake.size),
            "fpr": float(np.mean(real < threshold)) if real.size else None,
            "fnr": float(np.mean(fake >= threshold)) if fake.size else None,
            "auc": float(roc_auc(labels, 1.0 - scores)) if real.size and fake.size else None}


def build_detector(banks: Sequence[BankImages], *, settings: TrainSettings, dp: DpSettings | None, fpr: float,
                   validation_fraction: float, slicer: SlicerConfig, store_path: Path, work_dir: Path,
                   seed: int | None, say: Say | None = None,
                   progress: Callable[[str, Mapping[str, Any]], None] | None = None) -> DetectorBuild:
    """Train across ``banks`` and fix the threshold at ``fpr`` (see the module docstring)."""
    say = say or (lambda text: None)
    needed = min_real_images(fpr)
    splits = {bank.name: _split(bank, validation_fraction, seed) for bank in banks}
    n_real_val = sum(1 for _, val in splits.values() for item in val if item[2] == 0)
    if n_real_val < needed:
        raise BankDataError(f"a threshold at FPR {fpr:g} needs at least {needed} real validation images; the banks "
                            f"hold out {n_real_val} (add real documents, raise the validation fraction, or state a "
                            "larger --fpr)")
    patch_banks: list[BankData] = []
    for bank in banks:
        data, empty = bank_from_images(bank.name, splits[bank.name][0], slicer, bank.origin)
        say(f"{bank.name}: {len(splits[bank.name][0])} training and {len(splits[bank.name][1])} validation "
            f"documents, {len(data.labels)} patches" + (f" ({empty} flat images skipped)" if empty else ""))
        patch_banks.append(data)
    result = train_federated(patch_banks, settings=settings, dp=dp, store_path=store_path, work_dir=work_dir,
                             seed=seed, progress=progress)
    draft = Detector(result.model, slicer, AGGREGATION, 0.5, fpr)
    per_bank = {name: _image_scores(draft, val) for name, (_, val) in splits.items()}
    scores = np.concatenate([s for s, _ in per_bank.values()])
    labels = np.concatenate([y for _, y in per_bank.values()])
    threshold = fit_threshold(scores[labels == 0], fpr)
    detector = dataclasses.replace(draft, threshold=threshold)
    provenance = {**result.provenance(), "fpr": fpr, "threshold": threshold,
                  "validation": {"pooled": _validation(scores, labels, threshold),
                                 "banks": {n: _validation(s, y, threshold) for n, (s, y) in per_bank.items()}},
                  "threshold_note": "fixed on the real validation images of all banks, their scores pooled in this "
                                    "simulation (between real banks the scores would need a DP release; not built)",
                  "slicer": dataclasses.asdict(slicer), "aggregation": AGGREGATION}
    return DetectorBuild(detector, provenance, result)
