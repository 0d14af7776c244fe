"""R14-CONSENT2-4: one job id, two approved specs (a horizontal and an evaluation job with the same planned
spend) share ONE reservation, and both OPEN as runs of that id; each run keeps its own in-memory ledger, so the
book is charged the larger of the two totals instead of their sum (it records less than was released).

Claim (agent_consent.py, review R14-CONSENT-1/7 fixed): "one approval, one run: a re-run cannot reserve twice";
owner_budget.py: the book is "never smaller than the truth". `OwnerBudgetBook.reserve` hands a second spec with
the same job id, dataset and spend the existing reservation (idempotence meant for a crash), `decide` signs it,
and `PartyAgent._open_run` only short-cuts a re-open of the SAME workflow: a second `deploy.open_run` of the run
id under another workflow goes to `admit_run`, which accepts state "opened". Both runs build a `JobReservation`
(each loads the per-job ledger file once, before the other spent), and `OwnerBudgetBook.admit` treats a
running total not above the recorded one as a no-op: two releases of epsilon 0.8 each leave spent 0.8.
Fixed: the job id is bound to its spec hash (ConsentStore.set_job_state): a second spec under a job id that
holds an approval is refused (`_one_spec_per_job`), admit_run refuses a job id opened under another spec, and
every opening of one job shares one JobReservation (ConsentDesk keeps it per job id). Reviewer's suggestion:
bind the reservation (and the job-state record) to the spec hash: a second spec for a job id that holds an
approval of another spec is refused (or the first released explicitly), and `admit_run` refuses a job id
that is already "opened" under another spec hash/workflow; `JobReservation` instances per job id should be one
(shared) so the ledger is never forked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import admit, consent_federation, gather_approvals, loans_spec, open_run, request_consent  # noqa: E402

from sampan.privacy.ledger import PrivacyEvent  # noqa: E402
from sampan.privacy.party_policy import PolicyRefused  # noqa: E402


def _config(workflow: str) -> dict[str, Any]:
    return {"run": {"name": "dp", "workflow": workflow, "rounds": 2, "seed": 3},
            "training": {"learning_rate": 0.1, "epochs": 1},
            "privacy": {"epsilon": 1.0, "delta": 1e-5},
            "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_one_job_id_opens_one_spec_and_the_book_adds_every_release(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        victim = agents[names[0]]
        columns = victim.consent.served_columns("loans")
        specs = [loans_spec(_config(w), names, columns, "run-x") for w in ("horizontal", "evaluation")]
        approvals, refused = gather_approvals(agents, names, specs[0])
        assert refused is None, refused.meta
        # the second spec under the same job id is refused by the party (one job id, one spec)
        second = request_consent(victim, specs[1])
        assert second.is_error and "job_id" in str(second.meta), second.meta
        assert victim.consent.book.status("loans")["reserved_epsilon"] == pytest.approx(1.0)  # ONE reservation
        # the second opening carries the first spec's approvals: not its own
        opens = [open_run(victim, spec, approvals) for spec in specs]
        assert not opens[0].is_error, opens[0].meta
        assert opens[1].is_error, f"a second spec under job id run-x opened: {opens[1].kind}"
        # every opening of the job shares ONE reservation (one ledger): two releases of 0.8 are both counted
        again = [admit(victim, specs[0], approvals) for _ in range(2)]
        assert again[0] is again[1]
        again[0].admit([PrivacyEvent(party=names[0], level="DP1", mechanism="laplace", epsilon=0.8)])
        with pytest.raises(PolicyRefused):  # 0.8 + 0.8 > the 1.0 reserved for the job
            again[1].admit([PrivacyEvent(party=names[0], level="DP1", mechanism="laplace", epsilon=0.8)])
        assert victim.consent.book.status("loans")["spent_epsilon"] == pytest.approx(0.8)
