"""Per-run marks a party keeps across agent restarts and re-opened runs (reviews R13-GRP-3/4/9).

A party's once-per-run rules (a DP run never answers in clear; one release of a kind per run) are only as good
as its memory of the run. A deployed agent rebuilds a run's party app after a restart or when it re-opens an
evicted run id, while its record of evaluated models (`evaluated.json`) still admits the run; so these marks
live in the party's state dir beside that record (as the DP runs do: `sampan.privacy.admission.DPRuns`),
written before the answer they guard leaves. `AnswerBook`: one stored answer per run for a release answered
once per run (the group histograms): an identical repeat (a resumed run) gets the same answer back (no fresh
noise, no charge), any other request is refused.

Without a state dir (a library party, a simulation) it lives in memory only. What each role learns: nothing;
these files never leave the party.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from sampan.files import PRIVATE_FILE, atomic_write_bytes, private_directory

__all__ = ["AnswerBook", "StoredAnswer"]


def _read_json(path: Path, party: str, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"party {party!r}: its record of {what} '{path}' is unreadable ({exc}); refusing to "
                         "answer (restore it: it keeps the party's once-per-run rules)") from None


def _write_json(path: Path, value: Any) -> None:
    private_directory(path.parent)
    atomic_write_bytes(path, json.dumps(value, sort_keys=True).encode(), mode=PRIVATE_FILE)


StoredAnswer = tuple[dict[str, np.ndarray], dict[str, Any]]


class AnswerBook:
    """One answer per run for a once-per-run release, keyed by the digest of the request it answered."""

    def __init__(self, folder: Path | None, party: str) -> None:
        self.folder, self.party = folder, party
        self._memory: dict[str, tuple[str, StoredAnswer]] = {}

    def _path(self, run_id: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha256(run_id.encode()).hexdigest()[:40]}.json"

    def get(self, run_id: str) -> tuple[str, StoredAnswer] | None:
        """(request digest, answer) of the run, from memory or the state dir; None if it answered none."""
        if run_id in self._memory:
            return self._memory[run_id]
        path = self._path(run_id)
        if path is None or not path.exists():
            return None
        data = _read_json(path, self.party, "answered releases")
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in dict(data["arrays"]).items()}
        self._memory[run_id] = (str(data["request"]), (arrays, dict(data["meta"])))
        return self._memory[run_id]

    def put(self, run_id: str, request: str, answer: StoredAnswer) -> None:
        """Record the answer (on disk first, when there is a state dir) before it leaves."""
        arrays, meta = answer
        path = self._path(run_id)
        if path is not None:
            _write_json(path, {"run": run_id, "request": request, "meta": meta,
                               "arrays": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in arrays.items()}})
        self._memory[run_id] = (request, ({k: np.array(v, dtype=np.float64) for k, v in arrays.items()}, dict(meta)))
