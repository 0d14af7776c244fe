"""Utility of a synthetic table: train on synthetic, test on real (TSTR) vs train on real (TRTR).

The classifier is the credit workhorse, L2-regularised logistic regression, on a fixed encoding:
each numeric column as its standardised value and its standardised signed log (amounts are heavy
tailed), each categorical column one-hot over its declared categories. The encoder is fitted on the
training table of each run (synthetic for TSTR), never on the test rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from sampan.metrics import roc_auc
from sampan.synth.schema import SynthSchema
from sampan.synth.table import category_codes

__all__ = ["TableEncoder", "fit_logistic", "label_vector", "train_and_score", "utility"]


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class TableEncoder:
    """Design matrix of a table's features (label excluded), with standardisation learnt on ``fit``."""

    schema: SynthSchema
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def _raw(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        blocks = []
        for spec in self.schema.features:
            values = np.asarray(table[spec.name])
            if spec.kind == "numeric":
                x = values.astype(np.float64)
                blocks.append(np.column_stack([x, _signed_log(x)]))
            else:
                onehot = np.zeros((len(values), spec.size))
                onehot[np.arange(len(values)), category_codes(values.astype(object), spec)] = 1.0
                blocks.append(onehot)
        return np.hstack(blocks)

    def fit(self, table: Mapping[str, np.ndarray]) -> TableEncoder:
        raw = self._raw(table)
        self.mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        self.std = np.where(std > 1e-12, std, 1.0)
        return self

    def transform(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        assert self.mean is not None and self.std is not None, "fit the encoder first"
        return (self._raw(table) - self.mean) / self.std


def label_vector(table: Mapping[str, np.ndarray], schema: SynthSchema) -> np.ndarray:
    """1 for the positive class, 0 otherwise."""
    assert schema.label is not None and schema.positive is not None
    return (np.asarray(table[schema.label]).astype(str) == schema.positive).astype(np.float64)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, max_iter: int = 500) -> np.ndarray:
    """Weights [w, b] minimising mean log loss + l2/2 ||w||² (L-BFGS, exact gradient)."""
    n, d = X.shape

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ params[:-1] + params[-1]
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(params[:-1] @ params[:-1])
        r = (1.0 / (1.0 + np.exp(-z)) - y) / n
        grad = np.empty(d + 1)
        grad[:-1] = X.T @ r + l2 * params[:-1]
        grad[-1] = r.sum()
        return loss, grad

    result = minimize(objective, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return np.asarray(result.x)


def train_and_score(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], schema: SynthSchema) -> float:
    """AUC on ``test`` of logistic regression trained on ``train`` (NaN if train has one class only)."""
    y_train = label_vector(train, schema)
    if y_train.min() == y_train.max():
        return float("nan")
    encoder = TableEncoder(schema).fit(train)
    params = fit_logistic(encoder.transform(train), y_train)
    scores = encoder.transform(test) @ params[:-1] + params[-1]
    return float(roc_auc(label_vector(test, schema).astype(np.int64), scores))


def utility(real_train: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray],
            holdout: Mapping[str, np.ndarray], schema: SynthSchema) -> dict[str, float]:
    """TSTR and TRTR AUC on the real holdout, and their gap (TSTR - TRTR)."""
    tstr = train_and_score(synthetic, holdout, schema)
    trtr = train_and_score(real_train, holdout, schema)
    return {"tstr_auc": tstr, "trtr_auc": trtr, "auc_gap": tstr - trtr}
