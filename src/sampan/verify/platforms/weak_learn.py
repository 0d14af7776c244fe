"""The weak platform's arithmetic: tables to arrays, plain logistic regression, FedAvg. Numpy only, no protection.

Kept apart from the HTTP and job code so the same functions serve the platform-operated parties (in process) and
the weak party kit (in the verifier's thread): both sides of the weak protocol compute the same way.
"""

from __future__ import annotations

import numpy as np

from sampan.errors import DataError
from sampan.metrics import log_loss, roc_auc
from sampan.verify.api import TableData

Array = np.ndarray


class WeakDataError(DataError):
    """A party's table the weak platform cannot use (names the party and the column)."""


def column_index(table: TableData, column: str, *, party: str) -> int:
    try:
        return table.columns.index(column)
    except ValueError:
        raise WeakDataError(f"party {party!r}: column {column!r} is not in its table "
                            f"(columns: {', '.join(table.columns[:20])})") from None


def numeric_matrix(table: TableData, columns: list[str], *, party: str) -> Array:
    """The named columns as a float matrix (rows x columns); a missing or non-numeric value names its cell."""
    ks = [column_index(table, name, party=party) for name in columns]
    try:  # fast path: numpy converts the whole selection at once; any doubt falls back to the cell-by-cell check
        fast = np.array([[row[k] for k in ks] for row in table.rows], dtype=np.float64).reshape(-1, len(ks))
        if np.all(np.isfinite(fast)):
            return fast
    except (TypeError, ValueError):
        pass
    out = np.empty((len(table.rows), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        k = column_index(table, name, party=party)
        for i, row in enumerate(table.rows):
            value = row[k]
            if value is None or isinstance(value, bool):
                raise WeakDataError(f"party {party!r}: column {name!r}, row {i}: missing value")
            try:
                out[i, j] = float(value)
            except (TypeError, ValueError):
                raise WeakDataError(f"party {party!r}: column {name!r}, row {i}: {value!r} is not a number") from None
    if not np.all(np.isfinite(out)):
        raise WeakDataError(f"party {party!r}: a feature value is not finite")
    return out


def labels(table: TableData, column: str, *, party: str) -> Array:
    """The label column as 0/1 integers (numbers or "0"/"1" strings); anything else names the row."""
    y = numeric_matrix(table, [column], party=party)[:, 0]
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise WeakDataError(f"party {party!r}: label column {column!r}, row {int(bad[0])}: "
                            f"{y[bad[0]]!r} is not 0 or 1")
    return y.astype(np.int64)


def string_ids(table: TableData, column: str, *, party: str) -> list[str]:
    k = column_index(table, column, party=party)
    ids = ["" if row[k] is None else str(row[k]) for row in table.rows]
    if len(set(ids)) != len(ids):
        raise WeakDataError(f"party {party!r}: id column {column!r} has duplicate values")
    return ids


def sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500.0, 500.0)))


def clear_stats(X: Array) -> tuple[int, Array, Array]:
    """What each party sends in the clear for pooled standardisation: count, column sums, sums of squares."""
    return X.shape[0], X.sum(axis=0), (X * X).sum(axis=0)


def pooled_standardisation(stats: list[tuple[int, Array, Array]]) -> tuple[Array, Array]:
    n = sum(s[0] for s in stats)
    if n == 0:
        raise WeakDataError("no rows to standardise on")
    total = np.sum([s[1] for s in stats], axis=0)
    squares = np.sum([s[2] for s in stats], axis=0)
    mean = total / n
    var = np.maximum(squares / n - mean * mean, 0.0)
    scale = np.sqrt(var)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def local_sgd(X: Array, y: Array, w: Array, b: float, *, epochs: int, lr: float, batch_size: int, l2: float,
              rng: np.random.Generator) -> tuple[Array, float]:
    """Plain minibatch SGD on the logistic loss from the global (w, b); X already standardised."""
    w = np.array(w, dtype=np.float64, copy=True)
    n = X.shape[0]
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            residual = sigmoid(X[rows] @ w + b) - y[rows]
            w -= lr * (X[rows].T @ residual / rows.size + l2 * w)
            b -= lr * float(residual.mean())
    return w, b


def fedavg(updates: list[tuple[Array, int]]) -> Array:
    """Weighted mean of flat weight vectors by row count: every update counts, whoever sent it, however often."""
    total = sum(n for _, n in updates)
    if total <= 0:
        raise WeakDataError("no rows behind the updates of this round")
    return np.sum([np.asarray(w, dtype=np.float64) * n for w, n in updates], axis=0) / total


def holdout_split(n: int, rng: np.random.Generator, fraction: float = 0.2) -> tuple[Array, Array]:
    """(train rows, scored rows): a random `fraction` held out, at least one row on each side when n >= 2.

    fraction 0: every row trains and the scores are in-sample (train and scored rows are the same)."""
    if fraction <= 0:
        return np.arange(n), np.arange(n)
    order = rng.permutation(n)
    k = int(round(n * fraction))
    if n >= 2:
        k = min(max(k, 1), n - 1)
    return np.sort(order[k:]), np.sort(order[:k])


def score_metrics(y: Array, p: Array) -> dict[str, float]:
    """AUC (when both classes are present), log loss and accuracy at 0.5."""
    out: dict[str, float] = {"logloss": float(log_loss(y, p)), "accuracy": float(np.mean((p >= 0.5) == (y == 1)))}
    if 0 < int(y.sum()) < y.size:
        out["auc"] = float(roc_auc(y, p))
    return out
