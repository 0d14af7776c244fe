"""The label holder's answer to ``vertical.splits``: its own training, validation and test customers.

Why the bank decides (review R13-VSPLIT-1/2/3/5): test rows are outside the DP unit and evaluated exactly, so
the coordinator must not choose them. The bank computes the run's sets itself, from

* the dataset's pinned partition (`sampan.vertical.rows.RowBook`) where it has one;
* else its ``[vertical] test_ids`` file (checked here, at first use, before anything is pinned: readable, no
  repeated id, every id in the bank's table, at least `MIN_EVALUATION_ROWS` aligned customers, not already
  training/validation customers, and the same as a test set pinned earlier: a file that cannot take effect is
  an error naming it, never silently ignored);
* else a hash of the run seed and each id keyed with the bank's secret split key (HMAC-SHA256, 32 random bytes
  in the bank's state folder, one per bank for all its datasets: the same customer lands in the same set in
  every dataset and run with that seed; without a state folder the key is derived from the bank's own table,
  which the coordinator never holds). The coordinator can neither predict nor grind a seed for a customer;
  it asks a test share of at most the bank's ``max_test_fraction``.

What each role learns: the coordinator learns the positions of each set in this run's aligned order (a fresh
secret permutation), never the key; the partners learn the same positions. The bank remembers the test
customers it announced, and admits a first evaluation of exactly those (`RunRows.admit_evaluation`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sampan.errors import DataError
from sampan.vertical.party_parts import read_test_id_list
from sampan.vertical.rows import DEFAULT_MAX_TEST_FRACTION, MIN_EVALUATION_ROWS, RowRuleError, complete_split
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.vertical.party import VerticalParty

__all__ = ["BankSplits", "load_split_key", "SPLIT_KEY_FILE"]

SPLIT_KEY_FILE = "vertical-split-key"


def load_split_key(path: str | Path) -> bytes:
    """The bank's secret split key at `path` (hex), made from the OS CSPRNG and written (0600) before first use."""
    from sampan.files import atomic_write_bytes, private_directory

    target = Path(path)
    if target.exists():
        return bytes.fromhex(target.read_text().strip())
    private_directory(target.parent)
    key = secrets.token_bytes(32)
    atomic_write_bytes(target, key.hex().encode(), mode=0o600)
    return key


class BankSplits:
    """`vertical.splits` at the label holder (see the module docstring)."""

    def __init__(self, party: VerticalParty, *, key: bytes | Callable[[], bytes] | None = None,
                 test_ids_file: str | Path | None = None,
                 max_test_fraction: float = DEFAULT_MAX_TEST_FRACTION) -> None:
        self.party, self.test_ids_file, self.max_test_fraction = party, test_ids_file, float(max_test_fraction)
        self._key = key

    def key(self) -> bytes:
        if callable(self._key):
            self._key = self._key()
        if self._key is None:  # no state folder: a key only the holder of this table can compute
            data = self.party.data
            digest = hashlib.sha256(b"sampan/split-key\0")
            for part in (np.asarray([str(i) for i in data.ids]).astype("U"), data.X, data.y):
                if part is not None:
                    digest.update(np.ascontiguousarray(part).tobytes())
            self._key = digest.digest()
        return self._key

    def handle(self, msg: Message) -> Message:
        """The positions of this run's training/validation/test customers (pinned, else the bank's rule)."""
        party = self.party
        if party.data.y is None:
            raise ValueError(f"party {party.name!r} has no labels: only the label holder answers vertical.splits")
        aligned = party._aligned_rows()
        if aligned is None:
            raise ValueError(f"party {party.name!r}: no aligned rows; run PSI alignment first")
        run = party.run_rows(msg.run_id)
        pinned = run.pinned_positions(len(aligned))
        ids = np.array([str(i) for i in party._ids_of(np.arange(len(aligned)))])
        arrays = {k: v for k, v in pinned.items() if v is not None}
        test_ids = self._test_ids(ids, arrays)
        if "seed" in msg.meta:
            fraction = float(msg.meta["test_fraction"])
            if test_ids is None and "test" not in arrays and not 0.0 < fraction <= self.max_test_fraction:
                raise RowRuleError(f"party {party.name!r}: refusing test_fraction={fraction}: above its "
                                   f"max_test_fraction {self.max_test_fraction} (test rows are outside the DP unit "
                                   "and evaluated exactly)")
            arrays = complete_split(arrays, ids, int(msg.meta["seed"]), test_fraction=fraction,
                                    val_fraction=float(msg.meta["val_fraction"]), test_ids=test_ids, key=self.key())
        if "test" in arrays:
            run.announce_test(arrays["test"])
        return msg.reply("vertical.splits", arrays, {"pinned": sorted(k for k, v in pinned.items() if v is not None)})

    def _test_ids(self, ids: np.ndarray, pinned: dict[str, np.ndarray]) -> set[str] | None:
        """The aligned customers of the bank's test file, checked before anything is pinned (None: no file)."""
        if self.test_ids_file is None:
            return None
        name, where = self.party.name, f"the test ids file {str(self.test_ids_file)!r} ([vertical] test_ids)"
        listed = read_test_id_list(name, self.test_ids_file)
        repeated = len(listed) - len(set(listed))
        unknown = set(listed) - {str(i) for i in self.party.data.ids}
        if repeated or unknown:
            raise DataError(f"party {name!r}: {where} names {len(unknown)} ids that are not in its table and repeats "
                            f"{repeated} ids; nothing was fixed for this dataset")
        chosen = set(listed) & set(ids)
        if len(chosen) < MIN_EVALUATION_ROWS:
            raise DataError(f"party {name!r}: {where} names {len(chosen)} customers aligned with the partners; "
                            f"held-out evaluation needs at least {MIN_EVALUATION_ROWS}; nothing was fixed")
        fit = {str(i) for k in ("train", "val") if k in pinned for i in ids[pinned[k]]}
        if chosen & fit:
            raise RowRuleError(f"party {name!r}: {where} cannot take effect: {len(chosen & fit)} of its customers "
                               "are this dataset's training or validation customers, fixed by an earlier run")
        if "test" in pinned and set(ids[pinned["test"]]) != chosen:
            raise RowRuleError(f"party {name!r}: {where} cannot take effect: this dataset's test customers were "
                               f"fixed by its first evaluation ({len(pinned['test'])} customers, `sampan runs "
                               "holdout`) and the file names others")
        return chosen
