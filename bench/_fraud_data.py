"""The fraud benchmark's data (issue 18): per-bank train / validation / test documents and their patch features.

Why a module of its own: every contender of `fraud_detection.py` must see the SAME documents, so the corpus is
generated once per bank and split (three seeded `bank_corpus` calls, one per split, so no document is in two
splits), and each image's fingerprint is extracted once and cached here; contenders only re-score the cached
features. Generation and extraction are timed separately (patches/s is the extraction figure).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sampan.fraud.bank_tables import BankData
from sampan.fraud.corpus import BankProfile, bank_corpus
from sampan.fraud.documents import DocImage
from sampan.fraud.fingerprint import image_features
from sampan.fraud.slicer import SlicerConfig

SPLITS = ("train", "validation", "test")
MakeDocs = Callable[[BankProfile, int, int, int], list[DocImage]]  # (profile, n_real, n_fake, seed) -> documents


@dataclass(frozen=True)
class Doc:
    """One document's cached fingerprint: patch features (N, F), boxes (N, 4), and what the scorer must not see."""

    doc_id: str
    bank: str
    split: str
    label: int
    source: str
    kind: str
    shape: tuple[int, int]
    features: np.ndarray
    boxes: np.ndarray
    mask: np.ndarray | None  # the warped manipulation mask, kept for inpainted fakes only (localisation IoU)


@dataclass(frozen=True)
class SplitSizes:
    """Documents per bank and split: (real, fake)."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]

    def of(self, split: str) -> tuple[int, int]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[split]


@dataclass
class Corpus:
    """Every bank's documents, by split, with the timings of making them."""

    banks: tuple[str, ...]
    docs: list[Doc]
    generate_s: float = 0.0
    extract_s: float = 0.0
    n_patches: int = 0
    empty_images: int = 0
    sizes: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def select(self, split: str, bank: str | None = None, *, sources: Sequence[str] | None = None) -> list[Doc]:
        """The documents of a split (one bank or all), optionally only real + the given fake sources."""
        return [d for d in self.docs if d.split == split and (bank is None or d.bank == bank)
                and (sources is None or d.label == 0 or d.source in sources)]

    def bank_data(self, bank: str, *, sources: Sequence[str] | None = None, mask_labels: bool = False) -> BankData:
        """A bank's TRAINING documents as patch rows for `sampan.fraud.federated` (optionally fewer fake sources).

        By default every patch carries its document's label (what a bank knows when it only knows that a document
        was forged). ``mask_labels``: an inpainted document's patches outside the manipulated region (less than half
        their pixels in the mask) are labelled real, as a separate pseudo-document ``<doc_id>/outside`` (a document
        has one label), i.e. the bank has marked the forged region."""
        docs = self.select("train", bank, sources=sources)
        X = np.vstack([d.features for d in docs])
        labels, ids = [], []
        for d in docs:
            y = np.full(len(d.features), d.label)
            doc = np.full(len(d.features), d.doc_id, dtype=object)
            if mask_labels and d.source == "inpaint" and d.mask is not None:
                outside = ~patch_in_mask(d)
                y[outside] = 0
                doc[outside] = f"{d.doc_id}/outside"
            labels.append(y)
            ids.append(doc)
        return BankData(bank, X, np.concatenate(labels), np.concatenate(ids).astype(str), origin="benchmark corpus")


PATCH_IN_MASK = 0.5  # a patch counts as manipulated when >= this share of its pixels is in the mask


def patch_in_mask(doc: Doc) -> np.ndarray:
    """Per patch of an inpainted document: is at least PATCH_IN_MASK of it inside the manipulation mask?"""
    assert doc.mask is not None
    return np.array([doc.mask[y0:y1, x0:x1].mean() >= PATCH_IN_MASK for y0, x0, y1, x1 in doc.boxes.tolist()],
                    dtype=bool)


def build_corpus(profiles: Sequence[BankProfile], sizes: SplitSizes, seed: int, slicer: SlicerConfig,
                 size: int, *, say: Callable[[str], None] | None = print,
                 make: MakeDocs = bank_corpus) -> Corpus:
    """Generate every bank's splits (seeds seed, seed+1, seed+2) and cache each image's features. ``make`` is
    `bank_corpus` (tests pass a cheaper stand-in with the same signature)."""
    corpus = Corpus(tuple(p.name for p in profiles), [])
    for profile in profiles:
        prof = dataclasses.replace(profile, size=(size, size))
        corpus.sizes[profile.name] = {}
        for offset, split in enumerate(SPLITS):
            n_real, n_fake = sizes.of(split)
            started = time.perf_counter()
            images = make(prof, n_real, n_fake, seed + offset)
            corpus.generate_s += time.perf_counter() - started
            started = time.perf_counter()
            for d in images:
                X, boxes = image_features(d.image, slicer)
                if len(X) == 0:
                    corpus.empty_images += 1
                    continue
                corpus.n_patches += len(X)
                corpus.docs.append(Doc(f"{split}-{d.doc_id}", profile.name, split, int(d.label), d.source, d.kind,
                                       (int(d.image.shape[0]), int(d.image.shape[1])), X, boxes,
                                       d.mask if d.source == "inpaint" else None))
            corpus.extract_s += time.perf_counter() - started
            kept = corpus.select(split, profile.name)
            corpus.sizes[profile.name][split] = {
                "real": sum(d.label == 0 for d in kept),
                **{s: sum(d.source == s for d in kept) for s in ("autoencoder", "upsampler", "inpaint")}}
        if say is not None:
            say(f"  {profile.name}: {corpus.sizes[profile.name]} ({corpus.generate_s:.0f} s generation, "
                f"{corpus.extract_s:.0f} s extraction so far)")
    return corpus
