"""REV16-1: S-BACKDOOR's five-party clean job was a reference in the AND (a triggered row counted only when it too
called it bad), and it is the platform's job. `RiggedCleanReference` damps the verifier's party (a plain mean: the
backdoor gets partly through) and gives the clean job the backdoor job's final model (published to the verifier's
party, so the export tie holds); `SelfPlantedBackdoor` moves every five-party job's final model toward a backdoor it
fits itself. Either way the clean model called good every row the attacked one did: 0% attack success, pass.

Fixed (`catalogue/backdoor_reference.py`, `security_robust.py`): only the verifier's own references count rows, and
both exports are judged on them; the clean export fails above `backdoor_clean_success_max` with "the clean job
already carries the backdoor". Measured: the rig fails at 33% on 143 rows; the plant at alpha 0.2 at 72-77% on
143-150 rows; alpha 0.3 (which gave `error` before) fails too. The plant at alpha 0.1 flips 20-45% of the counted rows
depending on the draw and passes on the draws under the pass ceiling: judged like any attack (catalogue.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R-LAST / REV16 fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate  # noqa: E402
from _rev16_fakes import RiggedCleanReference, SelfPlantedBackdoor  # noqa: E402

from sampan.verify.catalogue.backdoor_reference import judge_backdoor  # noqa: E402

needs_data = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


def _rows(n: int, k: int) -> np.ndarray:
    return np.arange(n) < k


def test_the_clean_export_is_judged_not_trusted() -> None:
    """Both exports on the verifier's 100 counted rows: a clean export as backdoored as the attacked one fails with
    "the clean job already carries"; an honest-looking wander of the clean export alone (40%) does not fail."""
    counted = np.ones(100, dtype=bool)
    both = judge_backdoor(counted, clean=_rows(100, 35), attacked=_rows(100, 35))
    assert both.problem and "the clean job already carries the backdoor" in both.problem
    wander = judge_backdoor(counted, clean=_rows(100, 40), attacked=_rows(100, 2))
    assert wander.problem is None
    clean_only = judge_backdoor(counted, clean=_rows(100, 70), attacked=_rows(100, 2))
    assert clean_only.problem and "the clean job already carries the backdoor" in clean_only.problem
    uncounted = judge_backdoor(_rows(100, 50), clean=~_rows(100, 50), attacked=~_rows(100, 50))
    assert uncounted.counted == 50 and uncounted.problem is None  # flips outside the counted rows do not count


@needs_data
@pytest.mark.slow
def test_a_rigged_clean_reference_does_not_pass_a_partial_backdoor() -> None:
    backend = RiggedCleanReference()
    out = {o.id: o for o in evaluate(backend, ["S-BACKDOOR"], seed=16).outcomes}
    backdoor = out["S-BACKDOOR"]
    print(backdoor.verdict, backdoor.message, backdoor.figures, backdoor.evidence.get("references"))
    assert backend.donor_of, "the rig never fired (the clean job ran before the backdoor job?)"
    assert backdoor.verdict == "fail", backdoor.message
    assert "verifier-fitted references alone" in backdoor.evidence["references"]["counted_by"]


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize(("alpha", "only"), [(0.2, ["S-BYZANTINE", "S-BACKDOOR"]), (0.3, ["S-BACKDOOR"])])
def test_a_backdoor_in_every_robust_job_does_not_pass(alpha: float, only: list[str]) -> None:
    """alpha 0.3 gave ``error`` before (the clean filter left too few rows): the counted rows are now the verifier's."""
    backend = SelfPlantedBackdoor()
    backend.alpha = alpha
    out = {o.id: o for o in evaluate(backend, only, seed=16).outcomes}
    backdoor = out["S-BACKDOOR"]
    print(alpha, backdoor.verdict, backdoor.message, backdoor.figures)
    assert len(backend.planted) >= 2, "the plant never fired"
    assert backdoor.verdict == "fail", backdoor.message
    assert "the clean job already carries the backdoor" in backdoor.message
    assert backdoor.figures["clean_success_rate"] == backdoor.figures["attack_success_rate"]  # the same export
