"""REV16-1: S-BACKDOOR's five-party clean reference is still the platform's job (R-LAST-1 left it so, and said that
shaping it around a partial backdoor "was not tried"). `RiggedCleanReference` damps the verifier's party (a plain
mean: the backdoor gets partly through, 41-84% against the verifier-fitted references on seeds 16-20, R-LAST-1) and
gives the clean job, submitted after the backdoor job when S-BACKDOOR runs on its own, the backdoor job's final model
(published to the verifier's party, so the export tie holds). Every triggered row the attacked model calls good, the
clean reference calls good too, so none is counted: 0% attack success, pass.

The secure outcome asserted: fail (the verifier-fitted references alone show the backdoor).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the R16-VERDICT / R-LAST / REV16 fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate  # noqa: E402
from _rev16_fakes import RiggedCleanReference, SelfPlantedBackdoor  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="REV16-1: S-BACKDOOR's clean reference is the platform's job; a platform that "
                   "exports (and sends) the attacked job's model there leaves no counted row flipped")
def test_a_rigged_clean_reference_does_not_pass_a_partial_backdoor() -> None:
    backend = RiggedCleanReference()
    out = {o.id: o for o in evaluate(backend, ["S-BACKDOOR"], seed=16).outcomes}
    backdoor = out["S-BACKDOOR"]
    print(backdoor.verdict, backdoor.message, backdoor.figures, backdoor.evidence.get("references"))
    assert backend.donor_of, "the rig never fired (the clean job ran before the backdoor job?)"
    assert backdoor.verdict == "fail", backdoor.message


@pytest.mark.xfail(strict=True, reason="REV16-1: a backdoor the platform plants in every five-party job sits in the "
                   "clean reference too, so S-BACKDOOR counts no row, in the catalogue's own order")
def test_a_backdoor_in_every_robust_job_does_not_pass() -> None:
    backend = SelfPlantedBackdoor()
    out = {o.id: o for o in evaluate(backend, ["S-BYZANTINE", "S-BACKDOOR"], seed=16).outcomes}
    backdoor = out["S-BACKDOOR"]
    print(out["S-BYZANTINE"].verdict, backdoor.verdict, backdoor.message, backdoor.figures,
          backdoor.evidence.get("references"))
    assert len(backend.planted) >= 2, "the plant never fired"
    assert backdoor.verdict == "fail", backdoor.message
