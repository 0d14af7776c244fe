"""Consent and lifetime budgets in a real deployment: a coordinator and three bank agents over gRPC with mutual
TLS (threads of this process, `sampan.deploy.local` files), as the console's gateway drives them.

approve -> run -> settle: every party approves by its standing rule ([allow]), reserves the job's epsilon in its
lifetime book, the run spends within it and the unspent rest is released at the end. A second job reading one
more column is refused by the agents' rule; a job over a dataset's remaining budget cannot be approved; the
operator path (`sampan submit`) asks the same approvals and fails a refused job before any data message.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sampan.data import make_sme_consortium
from sampan.deploy.config import load_coordinator_config, load_party_config
from sampan.deploy.consent import ConsentRefused
from sampan.deploy.coordinator import Coordinator
from sampan.deploy.local import Binding, write_federation
from sampan.deploy.party_agent import PartyAgent
from sampan.transport.grpc_hub import Identity
from sampan.wire import Message

OPERATOR = Identity("ops", "operator")
BUDGET = 5.0


def _schema(schema: Any, drop_last: bool) -> dict[str, Any]:
    features = list(schema.features)[:-1] if drop_last else list(schema.features)
    return {"id": schema.id_column, "label": schema.label_column,
            "features": [{"name": f.name, "kind": f.kind, **({"categories": list(f.categories)} if f.categories
                                                                else {})} for f in features]}


def _without(path: Path, column: str) -> Path:
    """A copy of the party's table without one column (the `loans` dataset)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = path.with_name(path.stem + "-narrow.csv")
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, [k for k in rows[0] if k != column])
        writer.writeheader()
        writer.writerows({k: v for k, v in row.items() if k != column} for row in rows)
    return out


class Federation:
    """Dataset `loans` without the table's last column, `loans_plus` with it; [allow] admits loans' columns only."""

    def __init__(self, root: Path) -> None:
        consortium = make_sme_consortium(900, seed=4)
        paths = consortium.write_csv(root / "data")
        name0 = next(iter(paths))
        self.columns = [f["name"] for f in _schema(consortium.schema_for(name0), True)["features"]]
        extra = consortium.schema_for(name0).features[-1].name
        narrow = {n: _without(p, extra) for n, p in paths.items()}
        files = write_federation(root / "fed", {n: {
            "loans": Binding(str(narrow[n]), _schema(consortium.schema_for(n), True)),
            "loans_plus": Binding(str(p), _schema(consortium.schema_for(n), False))} for n, p in paths.items()},
            allow={n: {"columns": self.columns} for n in paths}, coordinator={"connect_timeout_s": 30})
        for path in files.party_configs.values():
            path.write_text(path.read_text() + "".join(f"\n[data.{d}.budget]\nepsilon = {BUDGET}\ndelta = 1e-3\n"
                                                       for d in ("loans", "loans_plus")))
        self.coordinator = Coordinator(load_coordinator_config(files.coordinator_config))
        self.coordinator.start()
        self.stop = threading.Event()
        self.agents = {n: PartyAgent(load_party_config(p)) for n, p in files.party_configs.items()}
        self.threads = [threading.Thread(target=self.coordinator.serve, args=(self.stop,), daemon=True)]
        self.threads += [threading.Thread(target=a.serve, args=(self.stop,), daemon=True) for a in self.agents.values()]
        for t in self.threads:
            t.start()
        assert self.coordinator.hub.wait_for(list(self.agents), 120) == []

    def wait(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            meta = self.coordinator.status(OPERATOR, Message("", 0, "ops", "coordinator", "s",
                                                             meta={"run_id": run_id})).meta
            if meta["status"] in ("completed", "failed", "cancelled"):
                return dict(meta)
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish")

    def close(self) -> None:
        self.stop.set()
        for agent in self.agents.values():
            if agent.link is not None:
                agent.link.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path)
    yield fed
    fed.close()


def _job(dataset: str, epsilon: float) -> dict[str, Any]:
    return {"run": {"name": f"{dataset}-{epsilon}", "rounds": 2, "seed": 5},
            "privacy": {"epsilon": epsilon, "delta": 1e-5, "dp2": {"noise_multiplier": 1.5}},
            "data": {"standardize": False}, "deploy": {"dataset": dataset}}


def _kinds(agent: PartyAgent, run_id: str) -> list[str]:
    return [e.kind for e in agent.store().events(run_id)]


def _settled(agent: PartyAgent, run_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the close (and so the settlement) follows the run's completion
        entry = agent.consent.book.entry(run_id)
        # the book settles first, then the agent audits it: wait for both (reading between them raced)
        if entry is not None and entry.state == "settled" and "budget_settled" in _kinds(agent, run_id):
            return entry
        time.sleep(0.05)
    raise AssertionError(f"{agent.name}: run {run_id} was not settled")


def test_approve_run_settle_then_refuse_a_wider_job_and_one_over_the_remaining_budget(federation: Federation) -> None:
    coordinator = federation.coordinator
    catalogue = coordinator.party_catalogue("bank_harbour")
    assert [d["name"] for d in catalogue] == ["loans", "loans_plus"]
    loans = catalogue[0]
    assert [c["name"] for c in loans["columns"]] == federation.columns
    assert loans["rows"] is None  # no `public_rows` in party.toml: no size published (never the exact count)
    assert loans["budget"]["total_epsilon"] == BUDGET and loans["budget"]["remaining_epsilon"] == BUDGET
    assert "rows" in loans and not any(k in loans for k in ("data", "values", "sample"))  # counts, never rows

    spec, stored = coordinator.build_spec(_job("loans", 2.0), "ops")
    approvals = [coordinator.request_approval(p, spec, "operator:ops") for p in spec.parties]
    assert {a.party for a in approvals} == set(federation.agents)
    assert all(a.reserved.epsilon == 2.0 and a.decided_by == "operator:ops" for a in approvals)
    run_id = coordinator.submit_approved(spec, stored, approvals, "ops")
    assert run_id == spec.job_id
    status = federation.wait(run_id)
    assert status["status"] == "completed", status
    for name, agent in federation.agents.items():
        entry = _settled(agent, run_id)
        assert 0.0 < entry.spent_epsilon <= 2.0, (name, entry)
        book = agent.consent.book.status("loans")
        assert book["reserved_epsilon"] == pytest.approx(0.0)  # the unspent rest was released
        assert book["remaining_epsilon"] == pytest.approx(BUDGET - entry.spent_epsilon)
        events = [e.kind for e in agent.store().events(run_id)]
        assert events[:2] == ["consent_approved", "job_accepted"] and "budget_settled" in events
    from sampan.runtime.receipt import build_receipt

    consent = build_receipt(coordinator.store, run_id)["consent"]  # the receipt names every party's consent
    assert consent["spec_hash"] == spec.spec_hash() and set(consent["parties"]) == set(federation.agents)
    assert all(p["reserved"]["epsilon"] == 2.0 and not p["exact"] for p in consent["parties"].values())
    history = coordinator.party_catalogue("bank_harbour")[0]["budget"]["history"]
    assert [h["event"] for h in history][0] == "reserve" and history[-1]["event"] == "settle"

    wider, _ = coordinator.build_spec(_job("loans_plus", 1.0), "ops")  # one more column than [allow] admits
    with pytest.raises(ConsentRefused, match="columns") as refused:
        coordinator.request_approval("bank_harbour", wider, "operator:ops")
    assert refused.value.party == "bank_harbour"
    spent = federation.agents["bank_harbour"].consent.book.status("loans")["spent_epsilon"]
    over, _ = coordinator.build_spec(_job("loans", BUDGET - spent + 0.01), "ops")
    with pytest.raises(ConsentRefused, match="remaining lifetime budget"):
        coordinator.request_approval("bank_harbour", over, "operator:ops")
    assert federation.agents["bank_harbour"].consent.book.entry(over.job_id) is None

    # the operator path: `sampan submit` asks the same approvals and a refusal fails the run before any data
    reply = coordinator.submit(OPERATOR, Message("", 0, "ops", "coordinator", "deploy.submit",
                                                 meta={"config": _job("loans_plus", 1.0)}))
    failed = federation.wait(str(reply.meta["run_id"]))
    assert failed["status"] == "failed" and "columns" in failed["error"], failed
    for agent in federation.agents.values():
        assert "job_accepted" not in [e.kind for e in agent.store().events(str(reply.meta["run_id"]))]
