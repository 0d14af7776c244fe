"""R16-VERDICT-10: F-DROPOUT-RESUME learnt that the party left only from the platform's own per-round party lists
(all four parties were platform-operated). A platform that never drops the party but edits its round reports passed.

Fixed (`catalogue.dropout`): the party that leaves is the verifier's own; its kit really stops after round 2 (the
first message of round 3 is not handled, no update leaves, the kit stops: `dataplane.PartyLeft`). The verdict rests
on what the verifier observed: its party's updates (rounds 1-2 only), the job's end state, the final model moving on
from the last model its party received, and its own holdout AUC; the platform's round lists are recorded, not
trusted. A platform that ignores the dropout waits for an update that never comes, and the job fails at the TaskSpec's
timeout_s. The verifier asks for 120 s (`dropout.TIMEOUT_S`); here the platform runs the job under a shorter deadline of
its own (`QuickTimeout`: the TaskSpec value it enforces, not the catalogue's default), so the same failure comes in
about 10 s instead of 121 s."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, DropoutIgnored, Recording, evaluate, verdicts  # noqa: E402

from sampan.verify.api import Job, TaskSpec  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")

QUICK_TIMEOUT_S = 6  # the platform's own job deadline here (the verifier asks for dropout.TIMEOUT_S)


class QuickTimeout(DropoutIgnored):
    """`DropoutIgnored`, which enforces a deadline of QUICK_TIMEOUT_S on every job instead of the TaskSpec's: the
    job that waits for the party that left fails as it would at 120 s, without waiting 120 s."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        return super().submit_job(project_id, spec.model_copy(update={"timeout_s": min(spec.timeout_s,
                                                                                       QUICK_TIMEOUT_S)}))


@pytest.mark.slow
def test_dropout_is_not_passed_by_editing_the_round_reports() -> None:
    ev = evaluate(QuickTimeout(), ["F-DROPOUT-RESUME"])
    verdict, message = verdicts(ev)["F-DROPOUT-RESUME"]
    assert verdict == "fail", message  # the party never left
    assert "did not finish after the verifier's party left" in message and "failed" in message, message
    evidence = ev.outcomes[0].evidence
    assert evidence["party_update_rounds"] == [1, 2]  # the verifier's party really took part, then left
    assert evidence["asked_after_leaving"]  # the platform still wanted it in round 3


def test_an_honest_dropout_passes_on_what_the_verifier_saw() -> None:
    ev = evaluate(Recording(), ["F-DROPOUT-RESUME"])
    verdict, message = verdicts(ev)["F-DROPOUT-RESUME"]
    assert verdict == "pass", message
    evidence = ev.outcomes[0].evidence
    assert evidence["party_update_rounds"] == [1, 2]
    assert evidence["final_model_change_since_party_left"] > 0  # training went on without the party
    assert evidence["evidence_source"].startswith("verifier-observed")
