"""R16B-3: S-BYZANTINE and S-BACKDOOR (five parties, `catalogue/security_robust.py`) always make the attacker the
party the verifier operates, and every platform is told which party that is (``operated_by`` in the registration);
the robust jobs are also the only five-party jobs of the catalogue (and the only ones with a party named bank_e). A
plain-FedAvg platform that dropped that one party's update in five-party jobs passed both tests with the four honest
parties' model (AUC under every attack = clean AUC, attack success 0%).

Fixed for the mean (`security_robust.mean_carries_attacker`): without robust_aggregation the jobs name the mean, and
the clean job shares the attacked jobs' seed, so the first global's change between the two jobs, regressed on the
difference of the two updates the verifier's party sent, is that party's weight in the mean (its row share, 0.2;
the weak platform gives 0.200). Below half of it (`robust_mean_share_min`), the test fails: the attack was never
tested. A late-attack twin of the clean job (attacker from a secret round 2-5) makes the same comparison at that
round, so counting the party in round 1 only fails too (`LateFiveIgnorer`). Not fixed under Krum or a median (they
may leave any update out): catalogue.md states that limit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import FiveIgnorer  # noqa: E402

from sampan.verify.api import Job, TaskSpec  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_dropping_the_known_attacker_only_in_five_party_jobs_does_not_pass() -> None:
    out = verdicts(evaluate(FiveIgnorer(), ["S-BYZANTINE", "S-BACKDOOR"], seed=16))
    # its aggregator is the weak platform's plain mean, which fails both with an attacker it cannot single out
    assert out["S-BYZANTINE"][0] == "fail", out
    assert out["S-BACKDOOR"][0] == "fail", out
    # and it fails because the verifier's update is missing from the mean, not by chance
    assert "left the verifier's party out" in out["S-BYZANTINE"][1], out
    assert "left the verifier's party out" in out["S-BACKDOOR"][1], out


class LateFiveIgnorer(FiveIgnorer):
    """FiveIgnorer, except that it counts the verifier's party in the first round of a five-party job (the round
    the first check compares) and leaves it out from the second on."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        room = self.room(job.job_id)
        ignoring = room.post
        original = type(room).post.__get__(room)  # the plain post, before FiveIgnorer wrapped it
        seen: set[str] = set()

        def late_post(what: str, body: dict[str, Any]) -> dict[str, Any]:
            party = str(body.get("party"))
            if what == "update" and party not in seen:
                seen.add(party)
                return original(what, body)  # first update of each party: counted
            return ignoring(what, body)

        if "post" in vars(room):  # FiveIgnorer wrapped it: a five-party job with the verifier's party
            room.post = late_post
        return job


def test_counting_the_known_attacker_only_in_the_first_round_does_not_pass() -> None:
    out = verdicts(evaluate(LateFiveIgnorer(), ["S-BYZANTINE", "S-BACKDOOR"], seed=16))
    assert out["S-BYZANTINE"][0] == "fail", out
    assert out["S-BACKDOOR"][0] == "fail", out
    # S-BACKDOOR's attack starts in round 1, which is counted: the late job's drawn round catches it (S-BYZANTINE may
    # fail first on the final-step check: the rounds' models it saw were wrecked by its counted first-round attack)
    assert "left the verifier's party out" in out["S-BACKDOOR"][1], out
