"""Benchmark datasets for the verifier: public credit tables, columns drawn at random per evaluation.

CAICT's method draws the dataset columns at test time so a platform cannot precompute; the draw comes
from the evaluation's seed (recorded in the manifest, so `manifest.reproduce` gives the same columns).
The seed is a reproducible evaluation seed, not key material: seeded generators are right here.
Splits: horizontal (IID or non-IID by a column), vertical (label holder + feature holder with string ids
and a partial overlap, so PSI exactness can be checked against the plaintext intersection), and a pooled
baseline (plain numpy LR on the pooled training rows) that fixes the AUC reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import SampanError

__all__ = [
    "DATASETS", "BenchTable", "Baseline", "VerticalSplit", "DatasetError", "load_benchmark", "draw_columns",
    "holdout_split", "horizontal_split", "vertical_split", "table_data", "pooled_baseline", "fit_lr",
    "predict_lr", "auc",
]  # fmt: skip

DATASETS = ("german", "taiwan")
LABEL = "label"
ID = "id"


class DatasetError(SampanError):
    """A benchmark dataset is missing or a split cannot be made."""


@dataclass
class BenchTable:
    """A numeric table: ``columns`` are safe names (lower case, ``[a-z0-9_]``), label 1 = default."""

    name: str
    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    columns: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)  # attribute -> its (one-hot) columns

    def cols(self, names: list[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.columns)}
        return self.X[:, [index[c] for c in names]]


def _safe(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def load_benchmark(name: str, data_dir: str | Path | None = None) -> BenchTable:
    """German credit (1,000 rows) or Taiwan default (30,000 rows) from ``../shared/data``."""
    from sampan.data import public

    root = Path(data_dir) if data_dir is not None else public.shared_data_dir()
    if root is None:
        raise DatasetError("the shared data folder (../shared/data or $SAMPAN_SHARED_DATA) is not on this machine")
    if name == "german":
        data = public.load_german_credit(root)
    elif name == "taiwan":
        data = public.load_taiwan_default(root)
    else:
        raise DatasetError(f"unknown benchmark dataset '{name}'; known: {', '.join(DATASETS)}")
    columns = [_safe(c) for c in data.feature_names]
    groups: dict[str, list[str]] = {}
    for raw, safe in zip(data.feature_names, columns, strict=True):
        groups.setdefault(_safe(raw.split("=", 1)[0]), []).append(safe)
    assert data.y is not None
    return BenchTable(name, np.asarray(data.ids).astype(str), np.asarray(data.X, dtype=np.float64),
                      np.asarray(data.y, dtype=np.int64), columns, groups)


def draw_columns(table: BenchTable, rng: np.random.Generator, attributes: int) -> list[str]:
    """Draw ``attributes`` attributes at random (a one-hot attribute brings all its columns), table order."""
    names = sorted(table.groups)
    if not 1 <= attributes <= len(names):
        raise DatasetError(f"cannot draw {attributes} of the {len(names)} attributes of '{table.name}'")
    chosen = set(rng.choice(len(names), size=attributes, replace=False).tolist())
    keep = {c for i, a in enumerate(names) if i in chosen for c in table.groups[a]}
    return [c for c in table.columns if c in keep]


def holdout_split(n: int, rng: np.random.Generator, fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, holdout); the holdout stays with the verifier."""
    order = rng.permutation(n)
    cut = int(round(n * (1 - fraction)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def horizontal_split(rows: np.ndarray, parties: int, rng: np.random.Generator, *,
                     by: np.ndarray | None = None, sizes: list[float] | None = None) -> list[np.ndarray]:
    """Split ``rows`` among parties: IID at random (``sizes``: relative shares), or non-IID sorted by ``by``."""
    if parties < 1 or rows.size < 2 * parties:
        raise DatasetError(f"cannot split {rows.size} rows among {parties} parties")
    shares = np.asarray(sizes if sizes is not None else [1.0] * parties, dtype=np.float64)
    if shares.size != parties or (shares <= 0).any():
        raise DatasetError("sizes must hold one positive share per party")
    order = rows[np.argsort(by[rows], kind="stable")] if by is not None else rng.permutation(rows)
    cuts = np.round(np.cumsum(shares)[:-1] / shares.sum() * rows.size).astype(int)
    return [np.sort(part) for part in np.split(order, cuts)]


@dataclass
class VerticalSplit:
    """Two parties' row sets over string ids: rows whose ids are in both are the expected intersection."""

    label_rows: np.ndarray
    feature_rows: np.ndarray
    label_columns: list[str]
    feature_columns: list[str]
    intersection: list[str]


def vertical_split(table: BenchTable, rows: np.ndarray, columns: list[str], rng: np.random.Generator, *,
                   overlap: float = 0.8) -> VerticalSplit:
    """Columns halved between label holder and feature holder; each drops a different share of the rows."""
    if len(columns) < 2:
        raise DatasetError("a vertical split needs at least two columns")
    half = len(columns) // 2
    order = rng.permutation(rows)
    drop = int(round(rows.size * (1 - overlap) / 2))
    label_rows = np.sort(order[drop:])
    feature_rows = np.sort(np.concatenate([order[:drop], order[2 * drop:]]))
    common = np.intersect1d(label_rows, feature_rows)
    return VerticalSplit(label_rows, feature_rows, columns[:half], columns[half:],
                         sorted(table.ids[common].tolist()))


def table_data(table: BenchTable, rows: np.ndarray, columns: list[str], *, label: bool = True,
               ids: bool = False) -> dict[str, Any]:
    """The API's TableData: ``{"columns": [...], "rows": [[...], ...]}`` (ids as strings first)."""
    names = ([ID] if ids else []) + list(columns) + ([LABEL] if label else [])
    X = table.cols(list(columns))[rows]
    out: list[list[Any]] = []
    for k, r in enumerate(rows):
        row: list[Any] = [str(table.ids[r])] if ids else []
        row.extend(float(v) for v in X[k])
        if label:
            row.append(float(table.y[r]))
        out.append(row)
    return {"columns": names, "rows": out}


# --- pooled baseline: plain LR by Newton steps (exact, no sklearn) ------------------------------------


@dataclass(frozen=True)
class Baseline:
    """Pooled LR on standardised columns: the AUC reference a federated run is held to."""

    auc: float
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray


def fit_lr(X: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised LR (intercept unpenalised) by Newton's method; returns (coef, intercept)."""
    n, d = X.shape
    A = np.hstack([np.ones((n, 1)), X])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2 * n)
    reg[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -30, 30)))
        grad = A.T @ (p - y) + reg * w
        H = (A * (p * (1 - p))[:, None]).T @ A + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[1:], float(w[0])


def predict_lr(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(X @ coef + intercept, -30, 30)))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sampan.metrics import roc_auc

    return float(roc_auc(np.asarray(y, dtype=np.int64), np.asarray(p, dtype=np.float64)))


def pooled_baseline(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> Baseline:
    """Fit on the pooled training rows, score the verifier's holdout."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    coef, b = fit_lr((X - mean) / scale, y)
    return Baseline(auc(y_test, predict_lr((X_test - mean) / scale, coef, b)), coef, b, mean, scale)
