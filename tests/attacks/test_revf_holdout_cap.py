"""REVF-2 (fixed), as found: the per-document cap k (``max_patches_per_doc``, the group-privacy factor of the stated
unit) applies to training rows only; a held-out document gives ALL its patches to the holdout file, whose rows the
coordinator learns exactly (``describe`` n_test in clear, the end-of-run evaluation histogram), DP or not. The
platform receipt declares holdout rows outside the DP unit; the fraud unit statement ("a document contributes at most
k = ... training patches") says nothing of the held-out documents, and nothing bounds what one of them contributes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sampan.fraud.bank_tables import BankData, write_bank_tables


def _bank(per_doc: int = 8, docs: int = 12) -> BankData:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(per_doc * docs, 4))
    y = np.repeat(np.arange(docs) % 2, per_doc)
    ids = np.repeat([f"doc{d}" for d in range(docs)], per_doc)
    return BankData("bank_a", X, y, ids)


def test_no_document_gives_more_than_k_rows_to_any_table(tmp_path: Path) -> None:
    k = 2
    tables = write_bank_tables([_bank()], tmp_path, max_patches_per_doc=k, holdout_fraction=0.25, seed=1)
    t = tables["bank_a"]
    assert t.train_rows <= k * t.train_docs  # holds
    assert t.holdout_rows <= k * t.holdout_docs, f"{t.holdout_rows} holdout rows from {t.holdout_docs} documents"
