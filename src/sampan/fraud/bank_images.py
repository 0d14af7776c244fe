"""A bank's labelled document images -> its patch rows (`BankData`), computed at the bank.

Two sources: a folder per bank with ``real/`` and ``fake/`` sub-folders of image files (what `sampan fraud train`
reads), or generated `DocImage`s (the demo corpus). Each image's non-flat patches are fingerprinted with the
detector's slicer settings; every patch row carries its image's document id, so the training split and the
per-document cap (`sampan.fraud.bank_tables`) work by document. An image whose patches are all flat gives no rows
and is counted, not silently lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sampan.fraud.bank_tables import BankData, BankDataError
from sampan.fraud.documents import DocImage
from sampan.fraud.fingerprint import image_features
from sampan.fraud.slicer import SlicerConfig

__all__ = ["IMAGE_SUFFIXES", "LabelledImage", "bank_from_docs", "bank_from_images", "folder_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_CLASSES = (("real", 0), ("fake", 1))


@dataclass(frozen=True)
class LabelledImage:
    """An image file of a bank's folder and its label (1 = fake)."""

    path: Path
    label: int

    @property
    def doc_id(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def folder_images(folder: Path) -> list[LabelledImage]:
    """The labelled images of ``folder/real`` and ``folder/fake`` (sorted); a missing or empty class folder is an
    error naming it."""
    if not folder.is_dir():
        raise BankDataError(f"bank folder {str(folder)!r} does not exist or is not a folder")
    found: list[LabelledImage] = []
    for sub, label in _CLASSES:
        path = folder / sub
        if not path.is_dir():
            raise BankDataError(f"bank folder {str(folder)!r} has no {sub!r} sub-folder (expected {sub}/*.png, "
                                "... with the bank's " + ("genuine" if label == 0 else "known forged") + " documents)")
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BankDataError(f"folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        found += [LabelledImage(p, label) for p in files]
    return found


def bank_from_images(name: str, items: Iterable[tuple[str, np.ndarray, int]], slicer: SlicerConfig,
                     origin: str = "") -> tuple[BankData, int]:
    """(the bank's patch rows, the number of images that gave no patch) from (doc_id, RGB image, label) items."""
    features, labels, doc_ids, empty = [], [], [], 0
    for doc_id, image, label in items:
        X, _ = image_features(image, slicer)
        if len(X) == 0:
            empty += 1
            continue
        features.append(X)
        labels.append(np.full(len(X), int(label)))
        doc_ids.append(np.full(len(X), doc_id, dtype=object))
    if not features:
        where = f" ({origin})" if origin else ""
        raise BankDataError(f"bank {name!r}{where}: none of its images has a non-flat patch to train on")
    data = BankData(name, np.vstack(features), np.concatenate(labels), np.concatenate(doc_ids).astype(str), origin)
    return data, empty


def bank_from_docs(name: str, docs: Sequence[DocImage], slicer: SlicerConfig) -> tuple[BankData, int]:
    """The demo corpus's documents as patch rows."""
    return bank_from_images(name, ((d.doc_id, d.image, d.label) for d in docs), slicer, origin="generated corpus")
