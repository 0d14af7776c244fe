"""R14-WEB-13: the approval inbox tells the operator that a DP job with no stated budget spends nothing.

Claim (T3, inbox docstring): the inbox shows "exactly what each job reads and spends at the operator's own party".
A job whose config turns DP3 on without a total epsilon has `spec.planned() is None`: OPEN-ENDED, "charged against
the dataset's remaining lifetime budget as it runs" (sampan.deploy.consent.spec), i.e. it may spend everything
left. The inbox renders it as "no differential privacy (exact outputs; see protections)" and "Left after this
job: —", and the control plane's own budget check skips it. An analyst who omits `privacy.epsilon` thus gets an
approval from an operator who was told nothing is spent. Fix: say "open-ended: may spend up to the remaining
ε X" (and consider refusing open-ended jobs in the console unless a rule allows them)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _console import seeded  # noqa: E402

OPEN_ENDED = {"run": {"name": "open", "workflow": "horizontal", "rounds": 3}, "model": {"kind": "logistic"},
              "privacy": {"dp3": {"clip": 1.0, "noise_multiplier": 1.1}}}


def test_the_inbox_says_an_open_ended_dp_job_may_spend_the_remaining_budget(tmp_path: Path) -> None:
    console, cid = seeded(tmp_path)
    world = console.world
    job = world.plane.create_job(world.admin, cid, "open-ended", OPEN_ENDED, {"bank_a": "sme_loans"})
    assert job["spec"]["privacy"]["epsilon"] is None and "dp3" in job["spec"]["protections"]  # DP, no budget
    page = console.signed_in("bank_a-op").get("/console/approvals").text
    cell = re.search(r'data-test="inbox-budget">(.*?)</td>', page, re.S)
    assert cell is not None
    shown = cell.group(1).lower()
    assert "no differential privacy" not in shown and "exact" not in shown, shown
    assert "open-ended" in shown or "remaining" in shown, shown
