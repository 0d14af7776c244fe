"""A party's own train/holdout split of a dataset, pinned in its state folder (review R8-1).

Holdout rows are outside the DP unit and evaluated exactly, so a coordinator must neither move rows in
and out of the holdout from run to run nor learn the training row count from the holdout's size (exact
holdout counts round(f·n) at several coordinator-chosen fractions pinned n_train and its positives).

Each row is in the holdout by its own Bernoulli draw: a keyed hash (HMAC-SHA256 under a 32-byte secret
the party draws from the OS CSPRNG at the dataset's first run) of the row id, below the fraction.
Membership of one row never depends on any other row, so the holdout's size and label counts are
Binomial draws that reveal the holdout's composition, not the training count. The secret and the
fraction are pinned per dataset in <state_dir>/split-seeds.json (0600, written before first use); a run
asking another fraction is refused, as is a first fraction above `[privacy] max_test_fraction`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from sampan.data import PartyData
from sampan.files import atomic_write_bytes, private_directory

__all__ = ["holdout_split", "pinned_split", "keyed_holdout"]


def holdout_split(party: str, state_dir: str | Path, dataset: str, table: PartyData, asked: float,
                  max_test_fraction: float) -> tuple[PartyData, PartyData]:
    """(train, holdout) of ``table`` under this party's pin for ``dataset`` (made at first use)."""
    path = private_directory(state_dir) / "split-seeds.json"
    pins = json.loads(path.read_text()) if path.exists() else {}
    pin = pins.get(dataset)
    if not isinstance(pin, dict):  # first use (an old seed-only pin is replaced once: it was coordinator-known)
        if not 0.0 < asked <= max_test_fraction:
            raise ValueError(f"party {party!r} refuses test_fraction={asked} for dataset {dataset!r}: above "
                             f"its [privacy] max_test_fraction {max_test_fraction} (holdout rows are outside the "
                             "DP unit)")
        pin = pins[dataset] = {"key": secrets.token_bytes(32).hex(), "test_fraction": asked}
        atomic_write_bytes(path, json.dumps(pins, sort_keys=True).encode(), mode=0o600)  # before it is used
    if not math.isclose(asked, float(pin["test_fraction"]), rel_tol=0, abs_tol=1e-12):
        raise ValueError(f"party {party!r} refuses test_fraction={asked} for dataset {dataset!r}: its holdout "
                         f"is pinned at {pin['test_fraction']} ({path}); another fraction would move rows in "
                         "or out of the exactly evaluated holdout")
    return pinned_split(table, pin, dataset)


def pinned_split(table: PartyData, pin: dict[str, Any], dataset: str) -> tuple[PartyData, PartyData]:
    """(train, holdout) of `table` under a dataset's pin from split-seeds.json ({"key": hex, "test_fraction": f})."""
    holdout = keyed_holdout(table.ids, float(pin["test_fraction"]), bytes.fromhex(pin["key"]), dataset)
    if holdout.all():
        raise ValueError(f"party {table.party!r}: dataset {dataset!r} would keep no training row")
    return table.subset(~holdout), table.subset(holdout)


def keyed_holdout(ids: np.ndarray, fraction: float, key: bytes, dataset: str) -> np.ndarray:
    """Boolean holdout mask: row i is in the holdout iff HMAC-SHA256(key, dataset, id_i) / 2^64 < fraction.

    A Bernoulli(fraction) draw per row, independent of every other row and of the row count, that only the
    key's holder can compute."""
    threshold = int(fraction * 2.0 ** 64)
    prefix = dataset.encode() + b"\0"
    return np.fromiter((int.from_bytes(hmac.new(key, prefix + str(i).encode(), hashlib.sha256).digest()[:8], "big")
                        < threshold for i in ids), dtype=bool, count=len(ids))
