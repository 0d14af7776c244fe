"""`CoordinatorGateway`: the control plane's `AgentGateway` over a deploy `Coordinator` in the same process.

Why in-process: the control plane runs on the coordinator (issue 14), so it reaches the party agents the way
the coordinator does, over the parties' own outbound mutual-TLS streams; it opens no connection of its own
and holds no party key. Each call maps to one coordinator method:

    parties()          the hub's members and their liveness (connected / silent / disconnected)
    catalogue(p)       Coordinator.party_catalogue(p): the agent's `consent.catalogue` (schemas, row counts,
                       budget status; never rows)
    request_approval   Coordinator.request_approval(p, spec, decided_by): the agent decides, signs or refuses
    add_rule           a console rule relayed as `consent.request` {rule}: the agent keeps its own copy
    remove_rule        its removal relayed as `consent.request` {remove_rule}: the agent drops its copy
    release            Coordinator.release_approval(p, job_id): the agent withdraws its approval of a job that
                       has not started (voided; its reservation returns to the budget)
    start              Coordinator.submit_approved(spec, config, approvals, by): every agent re-checks
    cancel             the operator's cancel path (`OperatorCalls.cancel`), named as the control plane
    run_view           `sampan.web.run_view.read_run_view` over the coordinator's own store

Trust: nothing here decides consent. A console operator's click becomes `decided_by="person:<user>"` and
reaches the agent only if that party set `[consent] console_decisions = true`; the agent recomputes the
spec hash, checks its rules and lifetime budget, and signs; the approvals it returns are verified again by
every party when the run opens. A party that is not connected is reported as such, not waited for: the
control plane answers people, so a gateway call never blocks on an absent agent longer than the
coordinator's request timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sampan.web.gateway import BudgetStatus, DatasetInfo, PartyStatus
from sampan.web.run_view import RunView, read_run_view

if TYPE_CHECKING:
    from sampan.deploy.consent.approval import Approval
    from sampan.deploy.consent.spec import JobSpec
    from sampan.deploy.coordinator import Coordinator

__all__ = ["CoordinatorGateway", "dataset_info"]

CONTROL_PLANE = "control-plane"


def _columns(entry: Mapping[str, Any]) -> dict[str, str]:
    """A catalogue entry's columns as {name: type}: a mapping already, or a list of {name, kind|type}."""
    columns = entry.get("columns") or {}
    if isinstance(columns, Mapping):
        return {str(k): str(v) for k, v in columns.items()}
    out: dict[str, str] = {}
    for column in columns:
        if isinstance(column, Mapping):
            out[str(column.get("name"))] = str(column.get("kind") or column.get("type") or "")
        else:
            out[str(column)] = ""
    return out


def dataset_info(party: str, entry: Mapping[str, Any]) -> DatasetInfo:
    """One `consent.catalogue` entry as the control plane's `DatasetInfo`."""
    budget = entry.get("budget")
    rows = entry.get("rows", entry.get("row_count"))  # None: the party publishes no size
    return DatasetInfo(
        party=party,
        name=str(entry.get("name") or entry.get("dataset")),
        columns=_columns(entry),
        label=(str(entry["label"]) if entry.get("label") else None),
        rows=None if rows is None else int(rows),
        budget=BudgetStatus.from_mapping(budget) if isinstance(budget, Mapping) else None,
    )


class CoordinatorGateway:
    """`AgentGateway` over a running `Coordinator` (see the module docstring)."""

    def __init__(self, coordinator: Coordinator, *, name: str = CONTROL_PLANE) -> None:
        self.coordinator = coordinator
        self.name = name

    def parties(self) -> list[PartyStatus]:
        hub = self.coordinator.hub
        health = {h["party"]: h for h in hub.health()}
        out = []
        for name in hub.party_names:
            entry = health.get(name) or {}
            state = str(entry.get("state", "disconnected"))
            out.append(PartyStatus(name=name, connected=state == "connected", last_seen=None,
                                   detail={k: entry.get(k) for k in ("state", "seconds", "outstanding")}))
        return out

    def catalogue(self, party: str) -> list[DatasetInfo]:
        return [dataset_info(party, entry) for entry in self.coordinator.party_catalogue(party)]

    def request_approval(self, party: str, spec: JobSpec, decided_by: str) -> Approval:
        return self.coordinator.request_approval(party, spec, decided_by)

    def add_rule(self, party: str, rule: Mapping[str, Any], decided_by: str) -> dict[str, Any]:
        """Relay a standing rule set in the console to the party's agent, which keeps its own copy (only with
        `[consent] console_decisions = true`; otherwise ConsentRefused). Returns the rule as the agent stored it;
        the agent then approves jobs by it when asked with decided_by "rule:<id>"."""
        from sampan.deploy.consent import ConsentRefused

        reply = self.coordinator._ask(party, "consent.request", "consent",
                                      {"rule": {**dict(rule), "party": party}, "decided_by": decided_by})
        stored = reply.meta.get("rule")
        if not isinstance(stored, Mapping):
            raise ConsentRefused(party, "its reply holds no rule")
        return dict(stored)

    def remove_rule(self, party: str, rule_id: str, decided_by: str) -> None:
        """Relay the removal of a standing rule to the party's agent, which drops its own copy (audited there);
        ConsentRefused when it refuses (console_decisions = false) or cannot be reached (R14-WEB-15)."""
        from sampan.deploy.consent import ConsentRefused

        reply = self.coordinator._ask(party, "consent.request", "consent",
                                      {"remove_rule": rule_id, "decided_by": decided_by})
        if reply.kind != "consent.rule_removed":
            raise ConsentRefused(party, f"its reply is {reply.kind!r}, not a rule removal")

    def release(self, party: str, job_id: str, decided_by: str = CONTROL_PLANE) -> None:
        """Withdraw `party`'s approval of job `job_id` (not started): ConsentRefused when the agent refuses."""
        self.coordinator.release_approval(party, job_id, decided_by)

    def start(self, job_id: str, spec: JobSpec, config: Mapping[str, Any], approvals: Sequence[Approval]) -> str:
        """`job_id` is the control plane's own job number (logged); the run id is `spec.job_id`, the id every
        approval names, so a job cannot be started twice under fresh run ids on the same approvals."""
        run_id = self.coordinator.submit_approved(spec, dict(config), list(approvals), f"{self.name}:job-{job_id}")
        return str(run_id)

    def cancel(self, run_id: str) -> None:
        from sampan.transport.grpc_session import Identity
        from sampan.wire import Message

        self.coordinator.cancel(Identity(self.name, "operator"),
                                Message(run_id, 0, self.name, "coordinator", "deploy.cancel", meta={"run_id": run_id}))

    def run_view(self, run_id: str) -> RunView:
        return read_run_view(self.coordinator.store, run_id,
                             report_dir=self.coordinator.config.coordinator.report_dir)
