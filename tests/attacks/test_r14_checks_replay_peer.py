"""R14-CHECKS-1: the checks DP mod answers each release once per run, keyed on (run, kind, meta.peer) for every
kind; ``meta.peer`` means something only to ``checks.overlap``, so a coordinator that adds a fresh ``peer`` to each
``checks.label`` / ``checks.histogram`` request gets a new noised answer every time and averages the noise away
(`sampan.checks.privacy` claims "each release is answered once per run"). `sampan.deploy.allow_checks` does not look
at ``peer`` either, so the same requests pass a deployed agent's per-request checks.

Fixed: the mod keys label and histogram releases on (run, kind), the overlap also on its peer; the agent refuses
meta keys a checks release never carries."""

from __future__ import annotations

import _checks_parties as fixture
import pytest

from sampan.checks.capability import CHECKS, checks_job
from sampan.core.capability import PartySetup
from sampan.deploy.allow_checks import check_checks_request
from sampan.deploy.allow_section import JobRefused
from sampan.wire import Message

DP = {"dp": {"label_epsilon": 0.5, "histogram_epsilon": 1.0}}


def test_a_label_release_is_answered_once_per_run_whatever_peer_the_request_names() -> None:
    job = checks_job(fixture.config(DP))
    app = CHECKS.party_app(PartySetup("bank_0", fixture.banks()["bank_0"], job, options={"schema": fixture.SCHEMA}))
    answers = []
    for k in range(50):
        meta = {"dp": {"epsilon": 0.5}, "peer": f"nobody-{k}"}
        with pytest.raises(JobRefused, match="peer"):  # the deployed agent refuses the stray key
            check_checks_request("bank_0", "checks.label", meta, job)
        reply = app.handle(Message("r1", 3, "coordinator", "bank_0", "checks.label", {}, meta))  # the party itself
        if reply.kind != "error":
            answers.append(reply.meta["positives"])
    # the claim: one noised answer per run; today 50 independent answers (mean error ~ 4/sqrt(50) instead of 4)
    assert len(answers) <= 1, f"{len(answers)} noised label releases answered in one run"
