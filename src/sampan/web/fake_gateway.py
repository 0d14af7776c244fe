"""`FakeGateway`: in-memory party agents for tests and demos of the control plane, that consent like real ones.

Each simulated party holds a certificate from a simulated consortium CA (`sampan.crypto.simulated_ca`), its
datasets' schemas and row counts (no rows at all), and a lifetime budget book (`sampan.privacy.owner_budget`,
persisted under `state_dir`). Like an agent it refuses an approval for a dataset it does not serve, columns
its dataset lacks, another code version, or a spend beyond the dataset's remaining budget; it signs what it
approves with its own key. `start` verifies EVERY party's approval against the spec (signature, certificate,
hash) and refuses otherwise, then plays the run into the real run store: rounds with per-party metrics, the
privacy summary per party and level, audit events, settled budgets and (for a logistic job) a registered
model, so run views, comparison, the registry and export work on it exactly as on a real run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sampan
from sampan.crypto.identity import PartyIdentity
from sampan.crypto.simulated_ca import SimulatedCA
from sampan.deploy.consent.approval import Approval, ConsentRefused, sign_approval, verify_approval
from sampan.deploy.consent.spec import JobSpec
from sampan.privacy.owner_budget import BudgetRefused, DatasetBudget, OwnerBudgetBook
from sampan.runtime.store import Store
from sampan.web.gateway import BudgetStatus, DatasetInfo, PartyStatus
from sampan.web.run_view import RunView, read_run_view

__all__ = ["FakeDataset", "FakeGateway", "demo_parties"]


@dataclass(frozen=True)
class FakeDataset:
    name: str
    columns: dict[str, str]
    label: str | None = None
    rows: int = 1000
    budget: DatasetBudget = field(default_factory=lambda: DatasetBudget(epsilon=10.0, delta=1e-4))


def demo_parties(names: Sequence[str] = ("bank_a", "bank_b", "bank_c")) -> dict[str, list[FakeDataset]]:
    """Three banks each serving one SME loans table (same columns: horizontal), lifetime budget epsilon 10."""
    columns = {"turnover": "float", "years_trading": "float", "late_payments": "int", "sector": "str",
               "default": "int"}
    return {n: [FakeDataset("sme_loans", dict(columns), "default", 1000 + 250 * i)] for i, n in enumerate(names)}


@dataclass
class _Party:
    name: str
    identity: PartyIdentity
    datasets: dict[str, FakeDataset]
    book: OwnerBudgetBook
    connected: bool = True
    console_decisions: bool = True
    rules: list[dict[str, Any]] = field(default_factory=list)


class FakeGateway:
    """Simulated party agents behind the `AgentGateway` protocol (see the module docstring)."""

    def __init__(self, store: Store, state_dir: str | Path,
                 parties: Mapping[str, Sequence[FakeDataset]] | None = None) -> None:
        self.store = store
        self.ca = SimulatedCA()
        self._parties: dict[str, _Party] = {}
        for name, datasets in (parties if parties is not None else demo_parties()).items():
            book = OwnerBudgetBook(Path(state_dir) / f"{name}.budget.json", name,
                                   {d.name: d.budget for d in datasets})
            self._parties[name] = _Party(name, self.ca.issue(name), {d.name: d for d in datasets}, book)
        self.started: list[str] = []

    @property
    def verifier(self) -> Any:
        return self.ca.verifier()

    def identity(self, party: str) -> PartyIdentity:
        """The party's own key and certificate (a test playing that party signs with it)."""
        return self._party(party).identity

    def set_console_decisions(self, party: str, accepted: bool) -> None:
        self._party(party).console_decisions = accepted

    def rules_of(self, party: str) -> list[dict[str, Any]]:
        return list(self._party(party).rules)

    def set_connected(self, party: str, connected: bool) -> None:
        self._party(party).connected = connected

    def _party(self, party: str) -> _Party:
        if party not in self._parties:
            raise ConsentRefused(party, "no such party is connected to the coordinator")
        return self._parties[party]

    # --- AgentGateway ---------------------------------------------------------------------------------
    def parties(self) -> list[PartyStatus]:
        return [PartyStatus(p.name, p.connected) for p in self._parties.values()]

    def catalogue(self, party: str) -> list[DatasetInfo]:
        p = self._party(party)
        out = []
        for d in p.datasets.values():
            status = dict(p.book.status(d.name))
            status["history"] = p.book.history(d.name)
            out.append(DatasetInfo(party, d.name, dict(d.columns), d.label, d.rows, BudgetStatus.from_mapping(status)))
        return out

    def request_approval(self, party: str, spec: JobSpec, decided_by: str) -> Approval:
        p = self._party(party)
        part = spec.data.get(party)
        if part is None:
            raise ConsentRefused(party, "the job reads no dataset here")
        dataset = p.datasets.get(part.dataset)
        if dataset is None:
            raise ConsentRefused(party, f"this agent serves no dataset {part.dataset!r}")
        unknown = [c for c in part.columns if c not in dataset.columns]
        if unknown:
            raise ConsentRefused(party, f"dataset {part.dataset!r} has no columns {unknown}")
        if spec.code_version != sampan.__version__:
            raise ConsentRefused(party, f"code version {spec.code_version} is not this agent's {sampan.__version__}")
        planned = spec.planned()
        eps, delta = planned if planned is not None else (0.0, 0.0)
        try:
            entry = p.book.reserve(spec.job_id, part.dataset, eps, delta, open_ended=planned is None)
        except BudgetRefused as exc:
            raise ConsentRefused(party, f"budget: {exc}") from None
        return sign_approval(p.identity, spec, party=party, decided_by=decided_by,  # what the book holds
                             reserved={"epsilon": entry.reserved_epsilon, "delta": entry.reserved_delta,
                                       "open_ended": entry.open_ended})

    def start(self, job_id: str, spec: JobSpec, config: Mapping[str, Any], approvals: Sequence[Approval]) -> str:
        given = {a.party: a for a in approvals}
        for party in spec.parties:  # every party checks every party's approval, as the real agents do
            if party not in given:
                raise ConsentRefused(party, "no approval of this party was presented")
            verify_approval(given[party], spec, self.verifier)
            entry = self._party(party).book.entry(spec.job_id)
            if entry is None or entry.state == "settled":
                raise ConsentRefused(party, "this agent holds no approval (reservation) of its own for the job"
                                     + (f" (it was {entry.outcome})" if entry is not None else ""))
        self._play(job_id, spec, config)
        self.started.append(spec.job_id)
        return spec.job_id

    def add_rule(self, party: str, rule: Mapping[str, Any], decided_by: str) -> None:
        """Keep a relayed standing rule, unless this party refuses relayed decisions."""
        p = self._party(party)
        if not p.console_decisions:
            raise ConsentRefused(party, "this agent does not accept decisions relayed by the console "
                                 "([consent] console_decisions = false)")
        p.rules.append({**dict(rule), "decided_by": decided_by})

    def remove_rule(self, party: str, rule_id: str, decided_by: str) -> None:
        """Drop a relayed standing rule (as `consent.request` {remove_rule} at a real agent), unless this party
        refuses relayed decisions."""
        p = self._party(party)
        if not p.console_decisions:
            raise ConsentRefused(party, "this agent does not accept decisions relayed by the console "
                                 "([consent] console_decisions = false)")
        p.rules = [r for r in p.rules if r.get("id") != rule_id]

    def release(self, party: str, job_id: str, decided_by: str = "control-plane") -> None:
        """Withdraw the party's approval of a job not started: its whole reservation returns (as `consent.release`
        at a real agent); ConsentRefused for a job that spent anything."""
        try:
            self._party(party).book.release(job_id)
        except BudgetRefused as exc:
            raise ConsentRefused(party, str(exc)) from None

    def cancel(self, run_id: str) -> None:
        row = self.store.get_run(run_id)
        if row.status not in ("finished", "failed", "cancelled"):
            self.store.set_status(run_id, "cancelled")

    def run_view(self, run_id: str) -> RunView:
        return read_run_view(self.store, run_id)

    # --- the simulated run -------------------------------------------------------------------------------
    def _play(self, job_id: str, spec: JobSpec, config: Mapping[str, Any]) -> None:
        rounds = max(1, spec.rounds or 1)
        run_id = spec.job_id
        self.store.create_run(name=str((config.get("run") or {}).get("name") or f"job-{job_id}"),
                              workflow=spec.workflow, seed=0, config=dict(config), total_rounds=rounds, run_id=run_id)
        self.store.set_status(run_id, "running")
        planned = spec.planned() or (0.0, 0.0)
        for r in range(1, rounds + 1):
            loss = 0.7 / (1 + 0.3 * r)
            per_party = {p: {"train_loss": loss * (1 + 0.01 * i), "rows": self._rows(p, spec)}
                         for i, p in enumerate(spec.parties)}
            for p in spec.parties:
                self._party(p).book.admit(run_id, planned[0] * r / rounds, planned[1] * r / rounds)
            self.store.save_round(run_id, r, state_arrays={"w": np.zeros(2)}, state_meta={}, seconds=0.01,
                                  metrics={"train_loss": loss, "parties": list(spec.parties), "party": per_party,
                                           "global": {"auc": 0.6 + 0.02 * r}})
        for p in spec.parties:
            self._party(p).book.settle(run_id, "completed")
        levels = {k: v for k, v in spec.privacy.levels.items() if v is not None}
        privacy = {"accountant": spec.privacy.accountant, "parties": {p: {
            "epsilon_spent": planned[0], "budget": {"epsilon": planned[0], "delta": planned[1]},
            "epsilon_by_level": {lvl.upper(): planned[0] for lvl in levels}} for p in spec.parties}}
        info: dict[str, Any] = {"privacy": privacy, "final_metrics": {"auc": 0.6 + 0.02 * rounds}}
        if spec.model.get("kind") == "logistic":
            label = {d.label for p in spec.parties for d in self._party(p).datasets.values()}
            features = [c for c in next(iter(spec.data.values())).columns if c not in label]
            name = str((config.get("run") or {}).get("name") or f"job-{job_id}")
            version = self.store.register_model(name, run_id, {"params": np.zeros(len(features) + 1)},
                                                {"model": {"kind": "logistic", "n_features": len(features)},
                                                 "feature_names": features})
            info["models"] = [{"name": name, "version": version}]
        self.store.set_status(run_id, "finished", info=info)

    def _rows(self, party: str, spec: JobSpec) -> int:
        return self._party(party).datasets[spec.data[party].dataset].rows
