"""Empirical privacy checks of a synthetic table (they can reveal a leak, never certify its absence).

- **Distance to closest record (DCR).** Rows are embedded with numeric columns as standardised signed
  logs and categorical columns one-hot scaled so a mismatch counts 1. For synthetic rows, the distance
  to the closest training row is compared with the distance to the closest row of an equally large
  real holdout that the synthesiser never saw. Without memorisation about half of the synthetic rows
  are closer to the training sample (``share_closer_to_train`` ≈ 0.5).
- **Exact copies.** Synthetic rows identical to a training row, against the same count for holdout
  rows (scaled to the training size): a synthesiser that copies rows shows many more of the former.
- **Membership inference on the synthesiser.** The attacker holds candidate records and the synthetic
  table and scores each candidate by minus its distance to the closest synthetic row (closer ⇒
  member). Members are training rows, non-members holdout rows; the attack's ROC AUC (0.5 = chance)
  and TPR at 1% / 10% FPR are reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.metrics import roc_auc, roc_curve
from sampan.synth.schema import SynthSchema
from sampan.synth.table import category_codes

__all__ = ["privacy"]


class _Embedding:
    def __init__(self, schema: SynthSchema, reference: Mapping[str, np.ndarray]) -> None:
        self.schema = schema
        self.stats: dict[str, tuple[float, float]] = {}
        for spec in schema.columns:
            if spec.kind == "numeric":
                z = self._log(reference[spec.name])
                std = float(z.std())
                self.stats[spec.name] = (float(z.mean()), std if std > 1e-12 else 1.0)

    @staticmethod
    def _log(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.sign(x) * np.log1p(np.abs(x))

    def __call__(self, table: Mapping[str, np.ndarray]) -> np.ndarray:
        blocks = []
        for spec in self.schema.columns:
            values = np.asarray(table[spec.name])
            if spec.kind == "numeric":
                mean, std = self.stats[spec.name]
                blocks.append(((self._log(values) - mean) / std)[:, None])
            else:
                onehot = np.zeros((len(values), spec.size))
                onehot[np.arange(len(values)), category_codes(values.astype(object), spec)] = np.sqrt(0.5)
                blocks.append(onehot)
        return np.hstack(blocks)


def _nearest(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each row of ``a`` to its nearest row of ``b``."""
    b_sq = (b**2).sum(1)
    out = np.empty(len(a))
    for s in range(0, len(a), chunk):
        block = a[s: s + chunk]
        d2 = (block**2).sum(1)[:, None] + b_sq[None, :] - 2.0 * block @ b.T
        out[s: s + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _row_keys(table: Mapping[str, np.ndarray], schema: SynthSchema) -> set[tuple[str, ...]]:
    cols = []
    for spec in schema.columns:
        values = np.asarray(table[spec.name])
        cols.append([f"{float(v):.9g}" for v in values] if spec.kind == "numeric" else [str(v) for v in values])
    return set(zip(*cols, strict=False))


def _subsample(table: Mapping[str, np.ndarray], k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(next(iter(table.values())))
    idx = rng.choice(n, size=min(k, n), replace=False)
    return {name: np.asarray(v)[idx] for name, v in table.items()}


def privacy(real_train: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray],
            holdout: Mapping[str, np.ndarray], schema: SynthSchema, *, max_rows: int = 2000,
            seed: int = 0) -> dict[str, Any]:
    """DCR, exact copies and a distance-based membership-inference attack (see module doc)."""
    rng = np.random.default_rng(seed)  # chooses evaluation subsets only; no DP noise is drawn here
    m = min(max_rows, len(next(iter(real_train.values()))), len(next(iter(holdout.values()))))
    members, nonmembers = _subsample(real_train, m, rng), _subsample(holdout, m, rng)
    synth = _subsample(synthetic, max(max_rows, m), rng)
    embed = _Embedding(schema, real_train)
    e_synth, e_mem, e_non = embed(synth), embed(members), embed(nonmembers)
    to_train, to_holdout = _nearest(e_synth, e_mem), _nearest(e_synth, e_non)
    closer = float(np.mean((to_train < to_holdout) + 0.5 * (to_train == to_holdout)))

    train_keys, holdout_keys = _row_keys(real_train, schema), _row_keys(holdout, schema)
    synth_keys_all = list(zip(*[
        [f"{float(v):.9g}" for v in np.asarray(synthetic[s.name])] if s.kind == "numeric"
        else [str(v) for v in np.asarray(synthetic[s.name])] for s in schema.columns], strict=False))
    copies_train = sum(k in train_keys for k in synth_keys_all)
    copies_holdout = sum(k in holdout_keys for k in synth_keys_all)
    n_train, n_holdout = len(next(iter(real_train.values()))), len(next(iter(holdout.values())))

    score_mem, score_non = -_nearest(e_mem, e_synth), -_nearest(e_non, e_synth)
    labels = np.concatenate([np.ones(m, np.int64), np.zeros(m, np.int64)])
    scores = np.concatenate([score_mem, score_non])
    fpr, tpr, _ = roc_curve(labels, scores)
    return {
        "dcr": {
            "median_to_train": float(np.median(to_train)),
            "median_to_holdout": float(np.median(to_holdout)),
            "share_closer_to_train": closer,
            "rows_compared": int(len(e_synth)),
        },
        "exact_copies": {
            "of_training_rows": int(copies_train),
            "of_holdout_rows": int(copies_holdout),
            "holdout_baseline_scaled_to_train_size": float(copies_holdout * n_train / max(n_holdout, 1)),
            "synthetic_rows": len(synth_keys_all),
        },
        "membership_inference": {
            "attack": "distance to closest synthetic record",
            "auc": float(roc_auc(labels, scores)),
            "tpr_at_fpr": {str(f): float(tpr[fpr <= f + 1e-12].max()) for f in (0.01, 0.1)},
            "members": m,
            "non_members": m,
        },
    }
