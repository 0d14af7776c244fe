"""Each bank's patch table for federated training: checked, capped per document, split by document, written privately.

Why a module of its own: what a bank writes, and where, is the privacy boundary of the fraud workflow. Every bank's
rows (one row per image patch: an id ``<doc_id>#<n>``, the fingerprint features and the label, 1 = fake) are
written inside that bank's own folder (``work_dir/<bank>/``, 0700, files 0600): there is no pooled file, and the
horizontal party loader of the simulated run reads each bank's table at that bank only.

Two choices fix what differential privacy means here (`sampan.fraud.federated`): a document contributes at most
``max_patches_per_doc`` rows (k, a setting, so it is known and can be reported) to ANY table -- training rows, which
the DP unit covers, and holdout rows, which are outside it (the coordinator learns their count and the run's
end-of-run evaluation exactly) -- and the train / holdout split is drawn by DOCUMENT, so no document has patches
on both sides (patches of one image are strongly correlated: a row-level split would score the model on
documents it was trained on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sampan.errors import DataError
from sampan.files import private_directory
from sampan.runtime.array_runs import TableSchema, party_rng, table_csv, write_private_table

__all__ = ["BankData", "BankTables", "BankDataError", "ID_COLUMN", "LABEL_COLUMN", "bank_rng", "check_banks",
           "feature_columns", "split_bank", "write_bank_tables"]

ID_COLUMN = "patch_id"
LABEL_COLUMN = "fake"


class BankDataError(DataError):
    """A bank's patch data that cannot be trained on; the message names the bank and its file or folder."""


@dataclass(frozen=True)
class BankData:
    """One bank's patches: ``features`` (N, F), ``labels`` (N,) with 1 = fake, ``doc_ids`` (N,) naming the document
    each patch was cut from; ``origin`` names where they came from (a folder or file) for error messages."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    doc_ids: np.ndarray
    origin: str = ""

    @property
    def where(self) -> str:
        return f"bank {self.name!r}" + (f" ({self.origin})" if self.origin else "")


@dataclass(frozen=True)
class BankTables:
    """What was written for one bank: its files and counts (the counts stay with the caller, in simulation)."""

    name: str
    train_path: Path
    holdout_path: Path
    train_rows: int
    holdout_rows: int
    train_docs: int
    holdout_docs: int
    dropped_rows: int  # patches over the per-document cap (training and holdout), in neither table
    docs_by_label: dict[int, int] = field(default_factory=dict)


def feature_columns(n_features: int) -> list[str]:
    """Neutral column names f000, f001, ... (the fingerprint's own names stay in the model's metadata)."""
    return [f"f{j:03d}" for j in range(n_features)]


def check_banks(banks: Sequence[BankData]) -> int:
    """Refuse banks that cannot train a detector; returns the common feature count.

    A bank needs rows, finite features, labels 0/1, and both real and fake documents (a bank with one class
    would still train, but its local-only baseline and its holdout metrics would be meaningless, and a
    federated model would silently lean on the others)."""
    if len(banks) < 1:
        raise BankDataError("no banks given: federated training needs at least one bank's patches")
    names = [b.name for b in banks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BankDataError(f"bank names must be unique; repeated: {repeated}")
    widths: dict[int, str] = {}
    for bank in banks:
        _check_bank(bank)
        widths.setdefault(int(bank.features.shape[1]), bank.name)
    if len(widths) > 1:
        detail = ", ".join(f"{n} features in bank {b!r}" for n, b in widths.items())
        raise BankDataError(f"banks disagree on the feature count ({detail}); every bank must extract the same "
                             "fingerprint (same slicer and feature settings)")
    return next(iter(widths))


def _check_bank(bank: BankData) -> None:
    where = bank.where
    if not bank.name or any(c in bank.name for c in "/\\\0") or bank.name in (".", ".."):
        raise BankDataError(f"bank name {bank.name!r} cannot name a folder (no slashes, not . or ..)")
    X, y, ids = np.asarray(bank.features), np.asarray(bank.labels), np.asarray(bank.doc_ids)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise BankDataError(f"{where}: no patches to train on (features of shape {X.shape}); is its folder empty "
                             "or are all its images flat?")
    if y.shape != (X.shape[0],) or ids.shape != (X.shape[0],):
        raise BankDataError(f"{where}: {X.shape[0]} feature rows but labels of shape {y.shape} and doc_ids of "
                             f"shape {ids.shape}")
    if not np.isfinite(X).all():
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise BankDataError(f"{where}: non-finite features in {rows.size} patch row(s) (first: {rows[:5].tolist()})")
    if not np.isin(y, (0, 1)).all():
        raise BankDataError(f"{where}: labels must be 0 (real) or 1 (fake), got {sorted(set(y.tolist()))[:5]}")
    for label, word in ((0, "real"), (1, "fake")):
        if not (y == label).any():
            raise BankDataError(f"{where}: no {word} documents; each bank needs real and fake examples to train "
                                 "and to be evaluated")
    labels_per_doc: dict[str, set[int]] = {}
    for doc, label in zip(ids.astype(str), y.tolist(), strict=True):
        labels_per_doc.setdefault(doc, set()).add(int(label))
    mixed = sorted(d for d, s in labels_per_doc.items() if len(s) > 1)
    if mixed:
        raise BankDataError(f"{where}: documents {mixed[:5]} have both real and fake patches; a document's label "
                             "is one value")


def split_bank(bank: BankData, cap: int, holdout_fraction: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(train row indices, holdout row indices, rows dropped by the cap): documents split per class, so both
    sides hold real and fake documents when the bank has two or more of a class; every document's rows capped at
    ``cap`` on both sides (the holdout rows are outside the DP unit, but what one document gives them is bounded)."""
    ids, y = np.asarray(bank.doc_ids).astype(str), np.asarray(bank.labels).astype(int)
    docs, first = np.unique(ids, return_index=True)
    doc_label = y[first]
    holdout_docs: set[str] = set()
    for label in (0, 1):
        of_class = docs[doc_label == label]
        n_out = int(round(holdout_fraction * of_class.size)) if of_class.size >= 2 else 0
        n_out = min(max(n_out, 1 if of_class.size >= 2 else 0), of_class.size - 1)
        holdout_docs.update(rng.permutation(of_class)[:n_out].tolist())
    train: list[np.ndarray] = []
    held: list[np.ndarray] = []
    dropped = 0
    for doc in docs:
        rows = np.flatnonzero(ids == doc)
        if rows.size > cap:
            dropped += rows.size - cap
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        (held if doc in holdout_docs else train).append(rows)
    empty = np.empty(0, dtype=np.int64)
    return (np.concatenate(train) if train else empty), (np.sort(np.concatenate(held)) if held else empty), dropped


def _csv_bytes(bank: BankData, rows: np.ndarray, columns: list[str]) -> bytes:
    """The table as CSV: id ``<doc_id>#<row>``, features at full float precision, the label."""
    ids = np.asarray(bank.doc_ids).astype(str)
    return table_csv(TableSchema(ID_COLUMN, tuple(columns), LABEL_COLUMN), [f"{ids[i]}#{i}" for i in rows.tolist()],
                     np.asarray(bank.features, dtype=np.float64)[rows].reshape(rows.size, len(columns)),
                     np.asarray(bank.labels)[rows])


def bank_rng(seed: int | None, bank: str) -> np.random.Generator:
    """The bank's own generator for its split and cap: from (seed, bank name) when a seed is given, so a bank's
    split is the same in the federated run and in its local-only baseline; else from the OS CSPRNG
    (`sampan.runtime.array_runs.party_rng`)."""
    return party_rng(seed, bank)


def write_bank_tables(banks: Sequence[BankData], work_dir: Path, *, max_patches_per_doc: int,
                      holdout_fraction: float, seed: int | None) -> dict[str, BankTables]:
    """Write ``work_dir/<bank>/patches-train-<hash>.csv`` and ``patches-holdout-<hash>.csv`` for every bank (all
    banks checked first)."""
    if max_patches_per_doc < 1:
        raise BankDataError(f"max_patches_per_doc must be >= 1 (got {max_patches_per_doc})")
    if not 0 < holdout_fraction < 1:
        raise BankDataError(f"holdout_fraction must be in (0, 1) (got {holdout_fraction})")
    columns = feature_columns(check_banks(banks))
    private_directory(work_dir)
    written = {}
    for bank in banks:
        folder = private_directory(work_dir / bank.name)
        train, holdout, dropped = split_bank(bank, max_patches_per_doc, holdout_fraction,
                                                 bank_rng(seed, bank.name))
        if holdout.size == 0:
            raise BankDataError(f"{bank.where}: too few documents to hold any out (a bank needs at least two real "
                                 "or two fake documents)")
        train_path = write_private_table(folder, "patches-train", _csv_bytes(bank, train, columns))
        holdout_path = write_private_table(folder, "patches-holdout", _csv_bytes(bank, holdout, columns))
        ids, y = np.asarray(bank.doc_ids).astype(str), np.asarray(bank.labels).astype(int)
        docs, first = np.unique(ids, return_index=True)
        written[bank.name] = BankTables(
            bank.name, train_path, holdout_path, int(train.size), int(holdout.size),
            int(np.unique(ids[train]).size), int(np.unique(ids[holdout]).size), dropped,
            {label: int((y[first] == label).sum()) for label in (0, 1)})
    return written
