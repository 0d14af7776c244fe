"""A bank's evaluated test customers and its evaluation cap over ALL its datasets (`BankTests`).

Apart from the per-dataset row book (`sampan.vertical.row_book`) because a deployed bank shares one of these
over every dataset it serves: the cap counts over all of them, and two datasets' test customers must be the
same or disjoint (review R13-VSPLIT-4). The overview of the row rules is `sampan.vertical.rows`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from sampan.vertical.row_rules import DEFAULT_MAX_EVALUATIONS, RowRuleError

__all__ = ["BankTests"]


class BankTests:
    """A bank's evaluated test customers over ALL its datasets, and its evaluation cap over them (review
    R13-VSPLIT-4: one row book per dataset gave each dataset of the same customers its own "first" evaluation).

    A dataset's first evaluation is admitted only if its test customers are the same as, or disjoint from, every
    other dataset's evaluated test customers: two held-out aggregates over sets that differ by a few customers
    would difference their labels. With `path` it is persisted (JSON, the bank's private state dir, 0600)."""

    def __init__(self, party: str, *, path: str | Path | None = None,
                 max_evaluations: int = DEFAULT_MAX_EVALUATIONS) -> None:
        self.party, self.max_evaluations = party, int(max_evaluations)
        self.lock = threading.RLock()
        self._path = Path(path) if path is not None else None
        state = json.loads(self._path.read_text()) if self._path is not None and self._path.exists() else {}
        self._tests: dict[str, set[str]] = {k: set(v) for k, v in dict(state.get("tests") or {}).items()}
        self._evaluated = int(state.get("evaluated", 0))

    def _save(self) -> None:
        if self._path is not None:
            from sampan.files import atomic_write_bytes, private_directory

            private_directory(self._path.parent)
            state = {"tests": {k: sorted(v) for k, v in self._tests.items()}, "evaluated": self._evaluated}
            atomic_write_bytes(self._path, json.dumps(state).encode(), mode=0o600)

    def fix(self, dataset: str, ids: set[str]) -> None:
        """Record `dataset`'s test customers, refusing a partial overlap with another dataset's."""
        with self.lock:
            for other, earlier in self._tests.items():
                if other != dataset and earlier & ids and earlier != ids:
                    raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation: its test customers "
                                       f"overlap, but differ by {len(earlier ^ ids)} customers from, those already "
                                       "evaluated in another of this bank's datasets (two evaluations over sets "
                                       "differing by a few customers give their labels)")
            self._tests[dataset] = set(ids)
            self._save()

    def count(self) -> None:
        """One more evaluated model, over all the bank's datasets; refused once `max_evaluations` is reached."""
        with self.lock:
            if self._evaluated >= self.max_evaluations:
                raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation: its cap of "
                                   f"{self.max_evaluations} evaluated models over all its runs and datasets is reached")
            self._evaluated += 1
            self._save()
