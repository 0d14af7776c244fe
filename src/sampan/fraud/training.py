"""From banks' labelled images to a saved detector: what `sampan fraud train` does, callable from Python.

A SIMULATION of the consortium: `build_detector` runs every bank in this one process. Each bank's patch rows are
written in its own folder (``work_dir/<bank>/``, 0700) and the horizontal workflow's messages are the only thing
exchanged between the in-process parties, but whoever runs it holds every bank's documents. A deployed fraud path
(each bank's agent extracting its own features and joining a deployed run, `sampan submit`; each bank fixing its
threshold on its own host) is NOT built.

Steps: each bank's documents are split by document into training and validation images; the training images'
patches go into the federated run (`sampan.fraud.federated`); each bank scores its OWN validation images with the
trained (shared) patch model.

Threshold (``threshold_scope``):
- ``"bank"`` (default): each bank fixes its own threshold on its own real validation images at ``fpr``
  (`sampan.fraud.threshold.fit_threshold`). That threshold is ONE of the bank's real validation scores and its
  validation counts and rates depend on every one, so they go into the bank's own copy only (`bank_file`,
  `sampan.fraud.operating_point.bank_copy`); the shared detector file (`detector_file`) carries the model, slicer,
  aggregation and training provenance, and nothing of any bank's validation. A bank holding out fewer than
  ceil(1/fpr) real validation images is refused before training, naming the bank and the count needed.
- ``"pooled"`` (simulation and benchmark only): one threshold on the real validation image scores of all banks
  pooled in this process. Between real banks that releases each validation document's score to the trainer, outside
  the workflow's messages and the privacy ledger; the detector's provenance says so.

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

from sampan.errors import ConfigError
from sampan.fraud.bank_images import LabelledImage, bank_from_docs, bank_from_images, folder_images
from sampan.fraud.bank_tables import BankData, BankDataError, bank_rng
from sampan.fraud.detector import Detector, load_image
from sampan.fraud.federated import DpSettings, TrainResult, TrainSettings, public_bounds, train_federated
from sampan.fraud.operating_point import SCOPES, OperatingPoint, ThresholdScope, bank_copy
from sampan.fraud.slicer import SlicerConfig
from sampan.fraud.threshold import fit_threshold, min_real_images

__all__ = ["PUBLIC_REFERENCE_SEED", "SIMULATION_NOTE", "BankImages", "DetectorBuild", "bank_file", "bank_thresholds",
           "build_detector", "demo_banks", "detector_file", "folder_banks", "public_reference_bounds"]

PUBLIC_REFERENCE_SEED = 20261207  # published: anyone can regenerate the reference corpus and check the bounds
AGGREGATION = "mean_logit"
Say = Callable[[str], None]
SIMULATION_NOTE = ("simulation of the consortium: every bank's documents were read, and every bank's features "
                   "extracted and validation images scored, in this one process; each bank's patch rows were written "
                   "in its own folder and only the horizontal workflow's messages passed between the in-process "
                   "parties. A deployed fraud path (each bank's agent extracting its own features, `sampan submit`) "
                   "is not built.")


@dataclass(frozen=True)
class BankImages:
    """One bank's labelled images: (doc_id, RGB image, label) items; ``origin`` names the folder for errors."""

    name: str
    items: list[tuple[str, np.ndarray, int]]
    origin: str


@dataclass(frozen=True)
class DetectorBuild:
    """A trained detector, its provenance (also saved in the detector file) and the federated result.

    ``provenance`` is what the shared detector file carries (bank scope: nothing of any bank's validation).
    ``thresholds`` (bank scope) is each bank's own operating point and ``validation`` its figures
    (``{"banks": {bank: figures}, "pooled": summed}``): in memory, because this process simulated every bank; each
    bank's entry is written to that bank's own copy only (`bank_file`). ``detector.threshold`` is then the lowest
    bank threshold (in memory only). Pooled scope: ``thresholds`` empty, ``detector.threshold`` the pooled one."""

    detector: Detector
    provenance: dict[str, Any]
    result: TrainResult
    thresholds: dict[str, OperatingPoint] = dataclasses.field(default_factory=dict)
    threshold_scope: str = "pooled"
    validation: dict[str, Any] = dataclasses.field(default_factory=dict)

    def for_bank(self, bank: str) -> Detector:
        """The detector with ``bank``'s own threshold (bank scope), or the pooled detector (pooled scope)."""
        if not self.thresholds:
            return self.detector
        if bank not in self.thresholds:
            raise BankDataError(f"no operating point for bank {bank!r}; banks: {', '.join(sorted(self.thresholds))}")
        point = self.thresholds[bank]
        return dataclasses.replace(self.detector, threshold=point.threshold, fpr=point.fpr)


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
    """DP1 clipping bounds from a public reference corpus (a published seed, the shipped generators).

    Rendered through EVERY shipped capture device (``docs_per_class`` real and fake documents each), with every
    document kind and fake source: bounds from one device clipped 11% of a flatbed-scanner bank's feature values
    (F4's benchmark), which biases the DP standardisation toward that one device."""
    from sampan.fraud.capture import DEVICES
    from sampan.fraud.corpus import DEFAULT_BANKS, BankProfile, bank_corpus
    from sampan.fraud.documents import KINDS

    sources = {source: 1.0 for bank in DEFAULT_BANKS for source in bank.sources}
    features = []
    for i, device in enumerate(sorted(DEVICES)):
        profile = BankProfile(f"public_reference_{device}", {kind: 1.0 for kind in KINDS}, sources,
                              DEVICES[device], (size, size))
        data, _ = bank_from_docs(profile.name, bank_corpus(profile, docs_per_class, docs_per_class,
                                                           PUBLIC_REFERENCE_SEED + i), slicer)
        features.append(data.features)
    return public_bounds(np.vstack(features))


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
            scores.append(detector.aggregate(patch_scores))
            labels.append(label)
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)


def _validation(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    from sampan.metrics.classification import roc_auc

    real, fake = scores[labels == 0], scores[labels == 1]
    return {"real_images": int(real.size), "fake_images": int(fake.size),
            "fpr": float(np.mean(real < threshold)) if real.size else None,
            "fnr": float(np.mean(fake >= threshold)) if fake.size else None,
            "auc": float(roc_auc(labels, 1.0 - scores)) if real.size and fake.size else None}


def _summed(figures: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pooled FPR/FNR from the banks' COUNTS (each image judged at its own bank's threshold); no pooled AUC,
    which would need the scores themselves."""
    n_real = sum(int(f["real_images"]) for f in figures)
    n_fake = sum(int(f["fake_images"]) for f in figures)
    false_pos = sum(round((f["fpr"] or 0.0) * f["real_images"]) for f in figures)
    missed = sum(round((f["fnr"] or 0.0) * f["fake_images"]) for f in figures)
    return {"real_images": n_real, "fake_images": n_fake, "fpr": false_pos / n_real if n_real else None,
            "fnr": missed / n_fake if n_fake else None, "auc": None,
            "note": "simulation summary: summed in this process from each bank's counts at its own threshold "
                    "(no pooled AUC); written to no detector file"}


def bank_thresholds(detector: Detector, validation: Mapping[str, Sequence[tuple[str, np.ndarray, int]]],
                    fpr: float) -> tuple[dict[str, OperatingPoint], dict[str, dict[str, Any]]]:
    """Each bank's own operating point and validation figures, each from that bank's images ONLY.

    What runs at bank b uses ``validation[b]`` and the shared ``detector`` and nothing else: no other bank's image
    or score enters b's threshold (tests/fraud/test_federated.py changes one bank's images and checks the others')."""
    needed = min_real_images(fpr)
    points, figures = {}, {}
    for bank, items in validation.items():
        scores, labels = _image_scores(detector, items)
        real = scores[labels == 0]
        if real.size < needed:
            raise BankDataError(f"bank {bank!r}: a threshold at FPR {fpr:g} needs at least {needed} real validation "
                                f"images with a non-flat patch; the bank holds out {real.size} (add real documents, "
                                "raise the validation fraction, or state a larger --fpr)")
        threshold = fit_threshold(real, fpr)
        points[bank] = OperatingPoint(threshold, float(fpr), int(real.size), "bank", bank)
        figures[bank] = _validation(scores, labels, threshold)
    return points, figures


def _check_counts(splits: Mapping[str, tuple[list[Any], list[Any]]], fpr: float, scope: str) -> None:
    """Refuse before training when a threshold cannot be fixed (per bank, or pooled)."""
    needed = min_real_images(fpr)
    n_real = {name: sum(1 for item in val if item[2] == 0) for name, (_, val) in splits.items()}
    if scope == "bank":
        short = {name: n for name, n in n_real.items() if n < needed}
        if short:
            listed = ", ".join(f"{name!r} holds out {n}" for name, n in short.items())
            raise BankDataError(f"each bank fixes its own threshold: at FPR {fpr:g} a bank needs at least {needed} "
                                f"real validation images; {listed} (add real documents, raise the validation "
                                "fraction, or state a larger --fpr)")
    elif sum(n_real.values()) < needed:
        raise BankDataError(f"a threshold at FPR {fpr:g} needs at least {needed} real validation images; the banks "
                            f"hold out {sum(n_real.values())} (add real documents, raise the validation fraction, or "
                            "state a larger --fpr)")


def build_detector(banks: Sequence[BankImages], *, settings: TrainSettings, dp: DpSettings | None, fpr: float,
                   validation_fraction: float, slicer: SlicerConfig, store_path: Path, work_dir: Path,
                   seed: int | None, say: Say | None = None,
                   progress: Callable[[str, Mapping[str, Any]], None] | None = None,
                   threshold_scope: ThresholdScope = "bank") -> DetectorBuild:
    """Train across ``banks`` and fix the threshold(s) at ``fpr``: per bank (default) or pooled (simulation only;
    see the module docstring)."""
    if threshold_scope not in SCOPES:
        raise ConfigError(f"threshold_scope must be one of {', '.join(SCOPES)} (got {threshold_scope!r})")
    say = say or (lambda text: None)
    splits = {bank.name: _split(bank, validation_fraction, seed) for bank in banks}
    _check_counts(splits, fpr, threshold_scope)
    patch_banks: list[BankData] = []
    for bank in banks:
        data, empty = bank_from_images(bank.name, splits[bank.name][0], slicer, bank.origin)
        say(f"{bank.name}: {len(splits[bank.name][0])} training and {len(splits[bank.name][1])} validation "
            f"documents, {len(data.labels)} patches" + (f" ({empty} flat images skipped)" if empty else ""))
        patch_banks.append(data)
    result = train_federated(patch_banks, settings=settings, dp=dp, store_path=store_path, work_dir=work_dir,
                             seed=seed, progress=progress)
    draft = Detector(result.model, slicer, AGGREGATION, 0.5, fpr)
    common = {**result.provenance(), "fpr": fpr, "threshold_scope": threshold_scope,
              "slicer": dataclasses.asdict(slicer), "aggregation": AGGREGATION, "simulation": SIMULATION_NOTE}
    if threshold_scope == "bank":
        points, figures = bank_thresholds(draft, {name: val for name, (_, val) in splits.items()}, fpr)
        lowest = min(point.threshold for point in points.values())
        provenance = {**common,
                      "threshold_note": "each bank fixes its own threshold on its own real validation images with "
                                        "this shared model. That threshold is one of the bank's validation scores, so "
                                        "it and the bank's validation counts and rates are in the bank's own copy "
                                        "(WORK_DIR/<bank>/detector.json) only; this shared file carries nothing of "
                                        "any bank's validation, only the model and its training provenance."}
        validation: dict[str, Any] = {"pooled": _summed(list(figures.values())), "banks": figures}
        return DetectorBuild(dataclasses.replace(draft, threshold=lowest), provenance, result, points, "bank",
                             validation)
    per_bank = {name: _image_scores(draft, val) for name, (_, val) in splits.items()}
    scores = np.concatenate([s for s, _ in per_bank.values()])
    labels = np.concatenate([y for _, y in per_bank.values()])
    threshold = fit_threshold(scores[labels == 0], fpr)
    validation = {"pooled": _validation(scores, labels, threshold),
                  "banks": {n: _validation(s, y, threshold) for n, (s, y) in per_bank.items()},
                  "note": "SIMULATION/BENCHMARK: pooled validation figures (every bank's validation scores in one "
                          "place)"}
    provenance = {**common, "threshold": threshold, "validation": validation,
                  "threshold_note": "SIMULATION/BENCHMARK: fixed on the real validation images of all banks, their "
                                    "scores pooled in one place. Between real banks this releases each validation "
                                    "document's score to the trainer, outside the workflow and the privacy ledger; "
                                    "use threshold_scope 'bank' (the default) for banks."}
    return DetectorBuild(dataclasses.replace(draft, threshold=threshold), provenance, result, {}, "pooled",
                         validation)


def detector_file(built: DetectorBuild, data_note: str) -> dict[str, Any]:
    """The shared detector file's JSON: the model, slicer, aggregation, ``model_sha256`` and the training
    provenance with its data provenance note. Bank scope: no threshold and no validation figure of any bank (each
    bank's are in its own copy, `bank_file`); pooled scope (simulation): the pooled threshold and figures, labelled."""
    out: dict[str, Any] = {**built.detector.to_dict(), "threshold_scope": built.threshold_scope,
                           "model_sha256": built.detector.model_sha256()}
    if built.threshold_scope == "bank":
        del out["threshold"]
    out["provenance"] = {**built.provenance, "data_provenance": data_note}
    return out


def bank_file(built: DetectorBuild, bank: str, data_note: str) -> dict[str, Any]:
    """The detector file ``bank`` keeps (bank scope): the shared file plus its own operating point and its own
    validation figures only."""
    if bank not in built.thresholds:
        raise BankDataError(f"no operating point for bank {bank!r}; banks: {', '.join(sorted(built.thresholds))}")
    return bank_copy(detector_file(built, data_note), built.thresholds[bank], built.validation["banks"][bank])
