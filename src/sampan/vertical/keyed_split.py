"""The bank's keyed split of aligned customers into training, validation and test sets, and their seeded order.

Apart from the row rules (`sampan.vertical.rows`) because it is the rule the bank itself computes by
(`sampan.vertical.bank_splits`), not a check of what the coordinator sends: each customer's set and place
depend only on HMAC-SHA256(the bank's secret split key, run seed, customer id), never on the aligned order,
which is a fresh secret permutation every run.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

__all__ = ["complete_split", "in_seeded_order", "seeded_split"]


def _unit_hash(label: str, seed: int, ids: np.ndarray, key: bytes | None = None) -> np.ndarray:
    """A uniform number in [0, 1) per id, from (label, seed, id), keyed with the bank's secret split `key`
    (HMAC-SHA256): without the key no one can predict or grind a seed for it (review R13-VSPLIT-2); the
    same key, seed and id give the same number. `key=None`: the public hash (tests of the rule only)."""
    out = np.empty(len(ids), dtype=np.float64)
    for i, customer in enumerate(ids):
        text = f"sampan/split/{label}/{int(seed)}/{customer}".encode()
        digest = hmac.new(key, text, hashlib.sha256).digest() if key is not None else hashlib.sha256(text).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return out


def seeded_split(ids: np.ndarray, seed: int, *, test_fraction: float, val_fraction: float,
                 test_ids: set[str] | None = None, key: bytes | None = None) -> dict[str, np.ndarray]:
    """Training, validation and test positions of aligned `ids`, from the run seed and each customer's id only.

    Why: the aligned order is a fresh secret permutation every run, so positions drawn from the seed named
    other customers each time (same files and seed, AUC 0.829 then 0.772). A customer's set now depends only on
    hash(key, seed, id), keyed with the bank's secret split key: the same bank, files and seed give the same test
    customers; only the bank computes it (it tells the others positions, never the key).
    `test_ids` (the bank's explicit test file) fixes the test set; the rest is split into validation and training
    by the same rule. Sizes are exact (round(n x fraction)): customers are ranked by their hash, so adding one
    moves at most one other across each boundary.
    """
    ids = np.asarray([str(i) for i in np.asarray(ids).ravel()])
    n = len(ids)
    test, val = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if test_ids is not None:
        test = np.isin(ids, sorted(test_ids))
        rest = np.flatnonzero(~test)
        share = val_fraction / max(1.0 - test_fraction, 1e-12)
        ranked = rest[np.argsort(_unit_hash("val", seed, ids[rest], key), kind="stable")]
        val[ranked[:int(round(len(rest) * share))]] = True
    else:  # exact sizes, as before: the customers ranked by their hash, the first test_fraction held out
        order = np.argsort(_unit_hash("holdout", seed, ids, key), kind="stable")
        n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
        test[order[:n_test]], val[order[n_test:n_test + n_val]] = True, True
    train = ~(test | val)
    return {k: in_seeded_order(np.flatnonzero(m).astype(np.int64), ids, seed, key)
            for k, m in (("train", train), ("val", val), ("test", test))}


def complete_split(pinned: dict[str, np.ndarray], ids: np.ndarray, seed: int, *, test_fraction: float,
                   val_fraction: float, test_ids: set[str] | None = None, key: bytes | None = None
                   ) -> dict[str, np.ndarray]:
    """The dataset's pinned sets where it has them, the rest by `seeded_split`; every set in seeded order."""
    drawn = seeded_split(ids, seed, test_fraction=test_fraction, val_fraction=val_fraction, test_ids=test_ids,
                         key=key)
    taken = np.concatenate([np.zeros(0, dtype=np.int64), *pinned.values()])
    return {k: in_seeded_order(pinned[k] if k in pinned else drawn[k][~np.isin(drawn[k], taken)], ids, seed, key)
            for k in drawn}


def in_seeded_order(positions: np.ndarray, ids: np.ndarray, seed: int, key: bytes | None = None) -> np.ndarray:
    """`positions` ordered by hash(key, seed, id) of their customers, not by place in the aligned order (a fresh
    secret permutation per run): minibatches drawn by index then hold the same customers in every run."""
    positions = np.asarray(positions, dtype=np.int64)
    keys = _unit_hash("order", seed, np.asarray([str(i) for i in np.asarray(ids).ravel()])[positions], key)
    return positions[np.argsort(keys, kind="stable")]
