"""What the control plane needs from the party agents, as one Protocol: `AgentGateway`.

Why a Protocol: the control plane never talks to an agent itself. On a coordinator, `CoordinatorGateway`
(sampan.web.gateway_coordinator) relays over the deploy `Coordinator`; in tests and demos, `FakeGateway`
(sampan.web.fake_gateway) plays in-memory agents that sign and refuse like real ones. Everything the console
shows about a party (its datasets' schemas and row counts, its budget) comes from the party through here;
rows never do. A party's answer to an approval request is the party's own decision: the gateway returns its
signed `Approval` or raises `ConsentRefused(party, reason)`; the control plane only records what it is told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sampan.deploy.consent.approval import Approval
    from sampan.deploy.consent.spec import JobSpec
    from sampan.web.run_view import RunView

__all__ = ["AgentGateway", "BudgetStatus", "DatasetInfo", "PartyStatus"]


@dataclass(frozen=True)
class PartyStatus:
    """A party agent as the coordinator sees it (connected or not), never anything about its data."""

    name: str
    connected: bool
    last_seen: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetStatus:
    """A dataset's lifetime budget as its party reports it (None totals: no limit set)."""

    total_epsilon: float | None
    total_delta: float | None
    spent_epsilon: float = 0.0
    spent_delta: float = 0.0
    reserved_epsilon: float = 0.0
    reserved_delta: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def remaining_epsilon(self) -> float | None:
        if self.total_epsilon is None:
            return None
        return max(0.0, self.total_epsilon - self.spent_epsilon - self.reserved_epsilon)

    @property
    def remaining_delta(self) -> float | None:
        if self.total_delta is None:
            return None
        return max(0.0, self.total_delta - self.spent_delta - self.reserved_delta)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BudgetStatus:
        """From a party's `consent.catalogue` budget entry: flat (`total_epsilon`, ..., as
        `OwnerBudgetBook.status` writes it) or nested (`total: {epsilon, delta}`)."""
        def pair(key: str) -> tuple[Any, Any]:
            value = data.get(key)
            if isinstance(value, Mapping):
                return value.get("epsilon"), value.get("delta")
            return data.get(f"{key}_epsilon", value), data.get(f"{key}_delta")
        total, spent, reserved = pair("total"), pair("spent"), pair("reserved")
        return cls(total_epsilon=total[0], total_delta=total[1], spent_epsilon=float(spent[0] or 0.0),
                   spent_delta=float(spent[1] or 0.0), reserved_epsilon=float(reserved[0] or 0.0),
                   reserved_delta=float(reserved[1] or 0.0), history=list(data.get("history") or []))


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset a party's agent serves: its columns and types, label column, row count and budget."""

    party: str
    name: str
    columns: dict[str, str]
    label: str | None
    rows: int | None  # the size the party publishes ([data.<name>] public_rows); None: not published
    budget: BudgetStatus | None = None


@runtime_checkable
class AgentGateway(Protocol):
    """The party agents, reached through the coordinator (or simulated)."""

    def parties(self) -> list[PartyStatus]:
        """Every party the coordinator knows, connected or not."""
        ...

    def catalogue(self, party: str) -> list[DatasetInfo]:
        """The party's datasets: schema, published size (or None), budget status (never rows)."""
        ...

    def request_approval(self, party: str, spec: JobSpec, decided_by: str) -> Approval:
        """Ask the party's agent to approve `spec`; its signed Approval, or ConsentRefused(party, reason)."""
        ...

    def start(self, job_id: str, spec: JobSpec, config: Mapping[str, Any], approvals: Sequence[Approval]) -> str:
        """Start the approved job as run `spec.job_id`; returns the run id (every agent re-checks approvals)."""
        ...

    def cancel(self, run_id: str) -> None:
        ...

    def run_view(self, run_id: str) -> RunView:
        """The run as the store has it: status, progress, per-round metrics, epsilon per party and level, events."""
        ...


# Optional, not part of the Protocol (a gateway without it still conforms):
#     add_rule(party: str, rule: dict, decided_by: str) -> None
# relays a standing rule added in the console to the party's agent (a `consent.request` carrying the rule), which
# accepts it only with `[consent] console_decisions = true` and raises ConsentRefused(party, reason) otherwise.
#     remove_rule(party: str, rule_id: str, decided_by: str) -> None
# relays the removal of such a rule (`consent.request` {remove_rule}); the agent drops its copy, audited; it raises
# ConsentRefused(party, reason) when the agent refuses or cannot be reached, and the control plane changes nothing.
#     release(party: str, job_id: str, decided_by: str = ...) -> None
# withdraws the party's approval of a job that has not started (`consent.release`): the agent voids its stored
# approval and returns the whole reservation to its budget; ConsentRefused(party, reason) when it refuses (the
# job opened there) or cannot be reached. The control plane calls it on a cancel of an unstarted job, a refusal
# after approving, and an edit that voids approvals (review R14-WEB-3/4).
