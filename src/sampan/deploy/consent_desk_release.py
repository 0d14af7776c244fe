"""The consent desk's withdrawal of an approval (`consent.release`: the control plane's cancel of an unstarted
job, an operator's refusal after approving, an edit that voids approvals): a job that never opened here has
its stored approvals voided and its whole reservation returned (audited); a job that opened is refused (its
spend stays; it is settled when it closes) (review R14-WEB-3).
"""

from __future__ import annotations

import logging

from sampan.deploy.consent import ConsentRefused
from sampan.deploy.consent_desk_state import DeskState
from sampan.privacy.owner_budget import BudgetRefused
from sampan.wire import Message

__all__ = ["DeskRelease"]

log = logging.getLogger("sampan.deploy.party")


class DeskRelease(DeskState):
    """Withdrawing this party's approval of a job that never opened (`ConsentDesk`'s third job)."""

    def release(self, message: Message) -> Message:
        """`consent.release` {job_id, decided_by}: withdraw this party's approval of a job that never opened
        here (its stored approvals of the job are voided, its whole reservation returns). Refused for a job
        that opened (what it spent stays; it is settled when it closes). Idempotent."""
        job_id = str(message.meta.get("job_id") or message.run_id)
        decided_by = str(message.meta.get("decided_by") or "")
        with self._gate:
            state = self.records.job_state(job_id)
            if state in ("opened", "closed"):
                reason = (f"job {job_id!r} already {'opened' if state == 'opened' else 'ran and closed'} at "
                          f"{self.name!r}: its approval cannot be withdrawn (cancel the run; what it spent stays)")
                self._audit(job_id, "consent_release_refused", {"decided_by": decided_by, "reason": reason})
                return message.error_reply(ConsentRefused(self.name, reason, rule="release"))
            try:
                entry = self.book.release(job_id)
            except BudgetRefused as exc:
                self._audit(job_id, "consent_release_refused", {"decided_by": decided_by, "reason": str(exc)})
                return message.error_reply(ConsentRefused(self.name, str(exc), rule="release"))
            voided = [a.spec_hash for a in self.records.approvals() if a.job_id == job_id]
            for spec_hash in voided:
                self.records.void_approval(spec_hash)
            if entry is not None or voided:
                self.records.set_job_state(job_id, "released")
        released = {"epsilon": entry.reserved_epsilon if entry else 0.0,
                    "delta": entry.reserved_delta if entry else 0.0}
        if entry is not None or voided:
            self._audit(job_id, "consent_released", {"decided_by": decided_by, "voided_spec_hashes": voided,
                                                     "released": released})
            log.info("party %s released job %s (%s): approval voided, epsilon %g returned", self.name, job_id,
                     decided_by, released["epsilon"])
        return message.reply("consent.released", meta={"job_id": job_id, "voided": len(voided),
                                                       "released": released})
