"""A capability = one coordinator `Workflow` + the party-side `PartyApp` that answers it.

The same `party_app` builder serves the in-process simulation (`sampan.runtime.federation`) and a
deployed party agent (`sampan.deploy.party_agent`), so a party behaves identically in both; only
what `PartySetup` holds differs (a simulated CA and a temporary folder, or the organisation's
certificate, its state directory and its `[allow]`/`[privacy]` policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sampan.core.party import PartyApp
from sampan.core.workflow import Workflow

__all__ = ["Capability", "PartySetup"]


@dataclass
class PartySetup:
    """What one party's side of a job is built from. ``data`` is the party's table (`sampan.data.PartyData`)
    for this job; ``job`` the job description it accepted (workflow, parties, label_holder, columns,
    protections and the run's settings), so handlers check requests against what was agreed."""

    name: str
    data: Any
    job: Mapping[str, Any]
    identity: Any = None        # sampan.crypto.identity.PartyIdentity: signs this party's run keys
    verifier: Any = None        # IdentityVerifier (an agent narrows it to the job's accepted partners)
    policy: Any = None          # sampan.privacy.party_policy.PartyPrivacyPolicy: floor, required levels, ledger
    state_dir: Path | None = None  # where stateful protocols persist; None = memory only (simulation)
    registry: Any = None        # the party's own model store (sampan.runtime.store.Store): its parts go here
    deployed: bool = False      # an agent across an organisation boundary (stricter defaults where they differ)
    options: dict[str, Any] = field(default_factory=dict)  # capability-specific (holdout split, row book, ...)


class Capability(Protocol):
    """Registered by name in `sampan.runtime.capabilities`; the runner and the agents look it up there."""

    name: str

    def workflow(self, config: Any) -> Workflow: ...

    def party_app(self, setup: PartySetup) -> PartyApp:
        """The party's handlers (and its privacy `Mod`s) for one job: used in simulation and by agents."""

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        """Simulation only: every party's setup from the run config's data bindings (each table loaded and
        validated at its party, a simulated consortium CA for run keys, splits derived from the seed)."""
