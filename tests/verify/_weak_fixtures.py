"""Shared piece of the weak-platform tests: German credit as TableData splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.data import load_german_credit
from sampan.verify.api import TableData

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class German:
    """German credit (1000 rows, 63 encoded features) with an id column and a 0/1 label, split by row sets."""

    def __init__(self) -> None:
        if not (SHARED / "german_credit").is_dir():
            pytest.skip("shared public datasets (../shared/data) not found")
        data = load_german_credit(SHARED / "german_credit")
        assert data.y is not None
        self.X, self.y, self.ids = data.X, data.y.astype(int), [str(i) for i in data.ids]
        self.features = list(data.feature_names)
        self.order = np.random.default_rng(16).permutation(len(self.y))  # fixed: a reproducible test split

    def table(self, rows: np.ndarray, features: list[str] | None = None, *, ids: bool = False,
              label: bool = True) -> TableData:
        cols = features if features is not None else self.features
        idx = [self.features.index(c) for c in cols]
        header = (["id"] if ids else []) + cols + (["label"] if label else [])
        body = [([self.ids[i]] if ids else []) + [float(v) for v in self.X[i, idx]] + ([int(self.y[i])] if label
                                                                                         else [])
                for i in rows]
        return TableData(columns=header, rows=body)
