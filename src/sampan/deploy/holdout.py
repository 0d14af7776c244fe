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

Memory (review R15-HLR-4): the agent keeps its table cached for later runs, so a split that copied the training
rows held the matrix twice (and once more per open run). `holdout_split` instead reorders the cached table in
place, once, training rows first and holdout rows after (each part in its original order, the rows of
`pinned_split`), and hands out two row-range views of it (read-only): every later run of the dataset finds it
already in that order and copies nothing. The peak is the table plus its holdout, while it is reordered. A table
that other code may be reading by position (``shared``: another open run of the dataset) or whose matrix cannot
be moved in place is split by copying, as `pinned_split` does. Row order inside a party's table carries no
meaning elsewhere (vertical runs order rows by the PSI's canonical order, results are keyed by id).
"""

from __future__ import annotations

import dataclasses
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
from sampan.horizontal.row_split import compact_rows

__all__ = ["holdout_split", "pinned_split", "pinned_views", "keyed_holdout", "withdraw", "withdrawn"]


def holdout_split(party: str, state_dir: str | Path, dataset: str, table: PartyData, asked: float,
                  max_test_fraction: float, *, shared: bool = False) -> tuple[PartyData, PartyData]:
    """(train, holdout) of ``table`` under this party's pin for ``dataset`` (made at first use): views of the table,
    reordered in place once (`pinned_views`), or copies when ``shared`` (another holder reads it by position)."""
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
    return pinned_split(table, pin, dataset) if shared else pinned_views(table, pin, dataset)


def pinned_split(table: PartyData, pin: dict[str, Any], dataset: str) -> tuple[PartyData, PartyData]:
    """(train, holdout) of `table` under a dataset's pin from split-seeds.json ({"key": hex, "test_fraction": f})."""
    holdout = keyed_holdout(table.ids, float(pin["test_fraction"]), bytes.fromhex(pin["key"]), dataset)
    if holdout.all():
        raise ValueError(f"party {table.party!r}: dataset {dataset!r} would keep no training row")
    return table.subset(~holdout), table.subset(holdout)


def pinned_views(table: PartyData, pin: dict[str, Any], dataset: str) -> tuple[PartyData, PartyData]:
    """`pinned_split`'s rows as read-only views of ``table``, which is reordered in place (training rows first)
    unless it already is; a matrix that cannot be moved in place (read-only, not row-major) is split by copying."""
    holdout = keyed_holdout(table.ids, float(pin["test_fraction"]), bytes.fromhex(pin["key"]), dataset)
    if holdout.all():
        raise ValueError(f"party {table.party!r}: dataset {dataset!r} would keep no training row")
    matrices = [m for m in (table.X, table.trees_X) if m is not None]
    if not all(m.flags.writeable and m.flags.c_contiguous for m in matrices):
        return table.subset(~holdout), table.subset(holdout)
    k = int(np.count_nonzero(~holdout))
    if not holdout[k:].all():  # not yet in the pinned order: move the rows, in place, once per loaded table
        test_idx = np.flatnonzero(holdout)
        # every n-sized allocation before the first write (review R15-REFIX-1): a failure here leaves the table as
        # it was; a failure while rows move withdraws the table, so the agent re-reads its file at the next job
        order = np.concatenate([np.flatnonzero(~holdout), test_idx])
        ids, y = table.ids[order], None if table.y is None else table.y[order]
        helds = [m[test_idx] for m in matrices]  # the holdout's rows: the only copy
        try:
            for m, held in zip(matrices, helds, strict=True):
                m[compact_rows(m, ~holdout):] = held
        except BaseException:
            withdraw(table)
            raise
        del helds
        table.ids, table.y = ids, y
        # new array objects over the same memory (review R15-REFIX-3): whatever an engine cached by the old
        # arrays' identity (a cluster's copy of the table in the old row order) is never found for these
        table.X = table.X.view()
        table.trees_X = None if table.trees_X is None else table.trees_X.view()
    return _rows(table, 0, k), _rows(table, k, len(table))


_WITHDRAWN = "_sampan_withdrawn"


def withdraw(table: PartyData) -> None:
    """Marks a cached table whose rows may no longer sit beside their ids: the agent must not serve it again."""
    object.__setattr__(table, _WITHDRAWN, True)


def withdrawn(table: PartyData) -> bool:
    """Whether `withdraw` marked ``table`` (a failed in-place reorder): the agent re-reads the dataset instead."""
    return bool(getattr(table, _WITHDRAWN, False))


def _rows(table: PartyData, start: int, stop: int) -> PartyData:
    """Rows ``start:stop`` of ``table`` as views, read-only: a run never writes into the agent's cached table."""
    part = dataclasses.replace(table, ids=table.ids[start:stop], X=table.X[start:stop],
                               y=None if table.y is None else table.y[start:stop],
                               trees_X=None if table.trees_X is None else table.trees_X[start:stop])
    for array in (part.ids, part.X, part.y, part.trees_X):
        if array is not None:
            array.flags.writeable = False
    return part


def keyed_holdout(ids: np.ndarray, fraction: float, key: bytes, dataset: str) -> np.ndarray:
    """Boolean holdout mask: row i is in the holdout iff HMAC-SHA256(key, dataset, id_i) / 2^64 < fraction.

    A Bernoulli(fraction) draw per row, independent of every other row and of the row count, that only the
    key's holder can compute."""
    threshold = int(fraction * 2.0 ** 64)
    prefix = dataset.encode() + b"\0"
    return np.fromiter((int.from_bytes(hmac.new(key, prefix + str(i).encode(), hashlib.sha256).digest()[:8], "big")
                        < threshold for i in ids), dtype=bool, count=len(ids))
