"""What one party remembers about its secure-LR instances, per run: the party's own rules, not the coordinator's.

Why: every secure-LR instance opens one more weight vector to each owner, and two instances that differ in one
row differ by what that row contributes; a dealer seed or instance nonce used twice repeats masks; a dealer that
failed an audit has shown it deviates. So each party, per run id (a deployed run has one dataset):

* caps the instances it joins at ``max_instances`` (default 2: the LR and the scorecard's LR);
* refuses a coordinator instance nonce or dealer seed it has accepted before in the run, whatever the channels
  (a new `vertical.hello` must not reset this);
* after any failed audit of dealt randomness refuses every later instance of the run (sticky, logged).

With ``folder`` each run's record is a JSON file there (one per run, written atomically before the party
answers), so a restarted party still refuses what it refused before; without it (simulations) the record
lives as long as the party object.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from sampan.files import atomic_write_bytes

__all__ = ["LRRuns", "DEFAULT_MAX_INSTANCES"]

log = logging.getLogger(__name__)

DEFAULT_MAX_INSTANCES = 2  # the LR and the scorecard's LR


class LRRuns:
    """One party's secure-LR record of every run it took part in."""

    def __init__(self, party: str, folder: str | Path | None = None,
                 max_instances: int = DEFAULT_MAX_INSTANCES) -> None:
        if max_instances < 1:
            raise ValueError(f"party {party!r}: max secure-LR instances per run must be >= 1, got {max_instances}")
        self.party, self.max_instances = party, int(max_instances)
        self.folder = Path(folder) if folder is not None else None
        self._runs: dict[str, dict[str, Any]] = {}

    def _path(self, run_id: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / (hashlib.sha256(run_id.encode()).hexdigest()[:32] + ".json")

    def _run(self, run_id: str) -> dict[str, Any]:
        if run_id not in self._runs:
            record: dict[str, Any] = {"instances": 0, "seen": [], "failed": None}
            path = self._path(run_id)
            if path is not None and path.exists():
                try:
                    record = dict(json.loads(path.read_text()))
                except (OSError, ValueError) as exc:
                    raise ValueError(f"party {self.party!r}: the secure-LR record {str(path)!r} cannot be read "
                                     f"({exc}); refusing secure LR in run {run_id!r} without it") from None
            self._runs[run_id] = record
        return self._runs[run_id]

    def _save(self, run_id: str) -> None:
        path = self._path(run_id)
        if path is not None:
            atomic_write_bytes(path, json.dumps(self._runs[run_id], sort_keys=True).encode(), mode=0o600)

    def check_open(self, run_id: str) -> None:
        """Refuse any secure-LR step of a run whose dealer already failed an audit here."""
        failed = self._run(run_id)["failed"]
        if failed:
            raise ValueError(f"party {self.party!r}: refusing secure LR in run {run_id!r}: the dealer's correlated "
                             f"randomness failed an audit earlier in this run ({failed})")

    def admit(self, run_id: str, instance: str, seed: bytes) -> None:
        """A new instance: not after a failed audit, a fresh nonce and seed, within the cap. Recorded before use."""
        self.check_open(run_id)
        run = self._run(run_id)
        keys = {f"instance:{instance}", "seed:" + hashlib.sha256(seed).hexdigest()}
        if keys & set(run["seen"]):
            raise ValueError(f"party {self.party!r}: refusing a secure LR instance that reuses an earlier "
                             "instance nonce or dealer seed (its masks and PRG streams would repeat)")
        if run["instances"] >= self.max_instances:
            raise ValueError(f"party {self.party!r}: refusing secure LR instance {run['instances'] + 1} in run "
                             f"{run_id!r}: this party allows {self.max_instances} per run (each instance opens one "
                             "more weight vector to each party)")
        run["instances"] += 1
        run["seen"] = sorted(set(run["seen"]) | keys)
        self._save(run_id)

    def fail(self, run_id: str, reason: str) -> None:
        """A failed audit: remembered (and persisted) for the rest of the run, and logged."""
        run = self._run(run_id)
        if not run["failed"]:
            run["failed"] = reason
            self._save(run_id)
        log.warning("party %s: run %s: %s; every later secure-LR instance of this run is refused",
                    self.party, run_id, reason)
