"""The party's count of the training rounds it served in one run: at most the approved job's `rounds`.

Why (review R14-CONSENT-4): a party approves a job of so many rounds. Every `fit` it answers is one more model
update of its rows; in an exact job (no DP, reserving nothing) the privacy budget bounds nothing, so the
agent itself must stop a coordinator that asks for more rounds than were approved. The gate admits a `fit`
only at a round number 1..rounds and, at a round it served before, only the very same request (same
parameters, model, training settings and seed): a coordinator resuming after a crash re-sends the round it
lost and gets the same update again (in an exact job nothing new; under DP2/DP3 the re-sent round draws
fresh noise, so it is a new release and is charged to the run's ledger and reservation like any other),
while one that re-asks a served round with other parameters, or a round past the approved count, is refused.

The count is persisted write-ahead (atomically, 0600) under the party's state folder
(`<state_dir>/consent/rounds/<sha256(run id)>.json`), so a restarted agent does not serve the rounds again.
What it cannot see: whether the parameters the coordinator sends are the honest aggregate of the last round
(secure aggregation and DP3 bound what a forged model can extract; the count bounds how often).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sampan.deploy.allow_section import JobRefused
from sampan.files import atomic_write_bytes, private_directory

__all__ = ["RoundGate", "request_digest"]

_TRAINING_META = ("model", "train", "seed", "dp2", "dp3", "public_rows")


def request_digest(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    """SHA-256 of what determines a `fit`'s update: its arrays but the SecAgg ones, and its training meta
    (not the SecAgg round keys or the carried evaluation, which a retried round may change)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name.startswith("secagg"):
            continue
        value = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, str(value.dtype), list(value.shape)]).encode())
        h.update(value.tobytes())
    terms = {k: meta[k] for k in _TRAINING_META if k in meta}
    if isinstance(terms.get("dp3"), Mapping):
        terms["dp3"] = {k: v for k, v in terms["dp3"].items() if k != "noise_parties"}
    h.update(json.dumps(terms, sort_keys=True, default=str).encode())
    return h.hexdigest()


class RoundGate:
    """Admits the `fit` requests of run `run_id` within its approved `rounds` (see the module docstring)."""

    def __init__(self, state_dir: str | Path, run_id: str, rounds: int, party: str) -> None:
        self.folder = Path(state_dir) / "consent" / "rounds"
        self.path = self.folder / f"{hashlib.sha256(run_id.encode()).hexdigest()}.json"
        self.run_id, self.rounds, self.party = run_id, int(rounds), party
        self._lock = threading.Lock()

    def _served(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return dict(data.get("served") or {}) if data.get("run_id") == self.run_id else {}

    def served(self) -> int:
        """How many distinct rounds were served."""
        return len(self._served())

    def admit(self, step: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Raise JobRefused (rule "rounds") unless this `fit` is within the approved rounds; record it first."""
        digest = request_digest(arrays, meta)
        with self._lock:
            served = self._served()
            key = str(int(step))
            if key in served:
                if served[key] != digest:
                    raise JobRefused(self.party, "rounds", f"round {step} of run {self.run_id!r} was served "
                                     "already; a different request for it would be one more model update than "
                                     "approved")
                return
            if not 1 <= int(step) <= self.rounds:
                raise JobRefused(self.party, "rounds", f"'fit' for round {step}: the approved job has {self.rounds} "
                                 f"rounds ({len(served)} served)")
            served[key] = digest
            private_directory(self.folder.parent)
            private_directory(self.folder)
            atomic_write_bytes(self.path, json.dumps({"run_id": self.run_id, "rounds": self.rounds,
                                                      "served": served}).encode(), mode=0o600)
