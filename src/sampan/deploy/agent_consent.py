"""The party agent's consent desk: it decides `consent.request`s, describes its datasets (`consent.catalogue`)
and admits a run at `deploy.open_run` only with consent.

Threat model: the coordinator (and the console on its host) may be malicious. It may send a spec other
than the one a person saw, change the job after approval, replay or forge approvals, drop a partner's, open
a run without any, re-run an approved job, or relay a "decision" no person made. The agent therefore:
- recomputes the spec hash itself and checks the spec against what it will serve (its dataset and exactly
  the columns it reads, the job description — whose rounds, training and model must be the spec's,
  `sampan.deploy.consent_spec_check` —, its code version) and against `[allow]`, its hard limit;
- binds a job id to one spec: a second spec under a job id it approved or opened is refused, and every
  opening of a job shares one reservation (review R14-CONSENT2-4);
- decides by its own rules (`[consent] mode = "rules"`: the rules added locally or, only with
  `console_decisions = true`, through the console; while it holds none, `[allow]` as its one implicit
  rule, R14-CONSENT-6), or by a person's decision
  (relayed from the console only with `console_decisions = true`; locally with `sampan consent approve`);
- reserves the job's planned (epsilon, delta) in its lifetime budget book before it signs (a job over the
  remainder or the period cap is refused), keeps the approval it signed in its own store, and writes every
  decision and refusal to its own signed audit log;
- at `deploy.open_run` requires ITS OWN stored approval for exactly this spec hash, the spec's job id to be
  the run id (one approval, one run: a re-run cannot reserve twice, and a job id once closed is never
  admitted again, review R14-CONSENT-7), the job description and columns it is asked to serve to be the
  spec's, the standing rule that granted its approval to still stand unexpired (removing a rule voids its
  unopened approvals and returns their reservations, review R14-CONSENT2-3), `[allow] max_epsilon` to hold,
  and every party's approval to verify (CA, CRL, name, signature) — else no handler is built and no data read;
- on `consent.release` (the control plane's cancel of an unstarted job, an operator's refusal after approving,
  an edit that voids approvals) withdraws its approval of a job that never opened here: the stored approval is
  voided and the whole reservation returns to the budget (audited); a job that opened is refused (its spend
  stays; it is settled when it closes) (review R14-WEB-3).
Residual trust: with `console_decisions = true` the console host could fake an operator's click; a party
that does not trust it keeps the flag false and approves locally or by rules.
"""

from __future__ import annotations

from sampan.deploy.consent_desk_admit import DeskAdmission
from sampan.deploy.consent_desk_decide import DeskDecisions
from sampan.deploy.consent_desk_release import DeskRelease
from sampan.wire import Message

__all__ = ["ConsentDesk"]


class ConsentDesk(DeskDecisions, DeskAdmission, DeskRelease):
    """One party's consent decisions and budget book (`PartyAgent.consent`): its state
    (`sampan.deploy.consent_desk_state`), decisions (`consent_desk_decide`), admission of runs
    (`consent_desk_admit`) and release of approvals (`consent_desk_release`), and its catalogue here."""

    def catalogue(self, message: Message) -> Message:
        """`consent.catalogue`: each bound dataset's schema, published size and budget status (never rows).

        The size is the operator's declared `[data.<name>] public_rows` (None: not published), never the table's
        count: an exact count answered on request, outside any job and uncharged, would tell the coordinator
        whether one customer was added or removed (review R14-CONSENT-5). The table is not read here."""
        out = []
        for name, binding in self.config.data.items():
            schema = binding.schema_
            out.append({"name": name, "columns": [{"name": c.name, "kind": c.kind} for c in schema.features],
                        "label": schema.label_column, "id": schema.id_column, "rows": binding.public_rows,
                        "budget": {**self.book.status(name), "history": self.book.history(name)}})
        return message.reply("consent.catalogue", meta={"datasets": out})
