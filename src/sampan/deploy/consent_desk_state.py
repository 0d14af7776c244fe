"""The state a party's consent desk (`sampan.deploy.agent_consent.ConsentDesk`) decides, admits and releases
with: its configuration (as the agent holds it now), its consent store, its lifetime budget book, the keys it
signs and verifies approvals with, and the one reservation each open job shares. The desk's jobs (decisions,
admission, release) are mixins over this class, so each reads the same state and none holds a copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampan.deploy.consent import ConsentStore, JobSpec
from sampan.deploy.run_budget import JobReservation
from sampan.privacy.owner_budget import DatasetBudget, OwnerBudgetBook

if TYPE_CHECKING:
    from sampan.deploy.config import PartyConfig

__all__ = ["DeskState"]


class DeskState:
    """One party's consent store, budget book and keys (`PartyAgent.consent`)."""

    def __init__(self, config: PartyConfig, audit: Any, signer: Any = None, *,
                 current: Callable[[], PartyConfig] | None = None) -> None:
        self._config, self._current, self.name = config, current, config.party.name
        self._audit = audit  # (run_id, kind, detail) -> None: the party's own signed audit log
        self.signer = signer  # anything with .sign(bytes) and .certificate_pem (an HSM key too); default its TLS key
        state = Path(config.party.state_dir)
        self.records = ConsentStore(state)
        limits = {name: (DatasetBudget(b.budget.epsilon, b.budget.delta, b.budget.period_days, b.budget.period_epsilon)
                         if b.budget is not None else None) for name, b in config.data.items()}
        self.book = OwnerBudgetBook(state / "owner-budget.json", self.name, limits)
        self._gate = threading.Lock()  # a release and an opening of the same job never interleave
        self._runs: dict[str, tuple[JobSpec, JobReservation]] = {}  # one shared reservation per open job id

    @property
    def config(self) -> PartyConfig:
        """The party's configuration as its agent holds it now (`current`), else the one given."""
        return self._current() if self._current is not None else self._config

    # --- keys -----------------------------------------------------------------------------------------
    def _signer(self) -> Any:
        if self.signer is None:  # the TLS key file, or with [hsm] the organisation key in an HSM
            from sampan.deploy.identity_source import load_identity

            self.signer = load_identity(self.config)
        return self.signer

    def verifier(self) -> Any:
        from sampan.deploy.identity_source import load_verifier

        return load_verifier(self.config.tls, Path(self.config.party.state_dir) / "revocation_high_water.json")

    # --- what it serves ---------------------------------------------------------------------------------
    def served_columns(self, dataset: str) -> list[str]:
        return [c.name for c in self.config.data[dataset].schema_.features]
