"""Giving a job's budget reservations back at the party agents when its approvals stop counting.

Why: each party's agent reserves the job's planned (epsilon, delta) in its lifetime budget book when it signs
an approval. A job that is cancelled before it started, an approval its operator withdraws (a refusal after
approving), or approvals an edit voided would otherwise hold that reservation forever: an analyst could drain
a bank's lifetime budget by creating, getting approved and cancelling jobs (review R14-WEB-3). The control
plane therefore asks each such party's agent to release (`AgentGateway.release`, `consent.release`): the agent
voids its stored approval and returns the whole reservation, and refuses for a job that opened there (what a
run spent stays spent). A release that fails (agent unreachable or refusing) is audited; the job's approvals
are void here either way, so the control plane never starts the job on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sampan.web.roles import Principal
from sampan.web.service_base import PlaneBase

__all__ = ["ReleaseCalls"]


class ReleaseCalls(PlaneBase):
    """Mixin of the jobs service: `release_reservations`."""

    if TYPE_CHECKING:
        def refresh_budgets(self, party: str) -> None: ...  # DataService's

    def release_reservations(self, principal: Principal, job_id: int, run_id: str, parties: Iterable[str],
                             why: str) -> list[str]:
        """Ask each party's agent to withdraw its approval of run `run_id` (the job's spec job id) and return
        its reservation; audited per party. Returns the parties where the release failed."""
        release: Any = getattr(self.gateway, "release", None)
        failed: list[str] = []
        for party in dict.fromkeys(parties):
            detail = {"job_id": job_id, "run_id": run_id, "party": party, "why": why}
            if release is None:
                failed.append(party)
                self.audit(principal, "reservation_release_failed", {**detail, "reason": "the gateway cannot release"})
                continue
            try:
                release(party, run_id, principal.actor)
            except Exception as exc:  # noqa: BLE001 - ConsentRefused or an unreachable agent: audited, reported
                failed.append(party)
                self.audit(principal, "reservation_release_failed", {**detail, "reason": str(exc)})
            else:
                self.audit(principal, "reservation_released", detail)
            self.refresh_budgets(party)
        return failed
