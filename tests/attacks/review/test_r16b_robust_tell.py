"""R16B-3: S-BYZANTINE and S-BACKDOOR (five parties, `catalogue/security_robust.py`) always make the attacker the
party the verifier operates, and every platform is told which party that is (``operated_by`` in the registration);
the robust jobs are also the only five-party jobs of the catalogue (and the only ones with a party named bank_e). A
plain-FedAvg platform that drops that one party's update in five-party jobs passes both tests with the four honest
parties' model (AUC under every attack = clean AUC, attack success 0%), while it averages any update elsewhere; the
clean reference job never checks that the verifier's honest update counted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import FiveIgnorer  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16B-3: a mean aggregator that drops the verifier-operated party's update in "
                   "five-party jobs passes S-BYZANTINE and S-BACKDOOR")
def test_dropping_the_known_attacker_only_in_five_party_jobs_does_not_pass() -> None:
    out = verdicts(evaluate(FiveIgnorer(), ["S-BYZANTINE", "S-BACKDOOR"], seed=16))
    # its aggregator is the weak platform's plain mean, which fails both with an attacker it cannot single out
    assert out["S-BYZANTINE"][0] == "fail", out
    assert out["S-BACKDOOR"][0] == "fail", out
