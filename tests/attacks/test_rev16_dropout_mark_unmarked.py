"""REV16-3: F-DROPOUT-RESUME's mark went on the kit's ``LEAVE_AFTER``-th update *call*, and a mark that never went on
was "not checked", which failed nothing. `StaleSkipFirst` never drops the verifier's party (its round-2 update is
filed again in rounds 3-6: `StaleDropout`) and hides round 1 from it (a no-op update filed in its name), so the party
sent one update, in round 2, unmarked: the job passed.

Fixed (`catalogue/dropout_mark.py`, `catalogue/dropout.py`): the mark goes on the update the party sends in the
TaskSpec's dropout round (by the round the kit's hook receives, not by call count); the party must send updates in
exactly rounds 1..LEAVE_AFTER; a party that sent updates of which none was marked fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B / REV16 fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate  # noqa: E402
from _rev16_fakes import StaleSkipFirst  # noqa: E402

from sampan.verify.catalogue.dropout_mark import Mark  # noqa: E402
from sampan.verify.catalogue.jobs import PartySpec  # noqa: E402


def _parties() -> list[PartySpec]:
    rng = np.random.default_rng(3)
    rows = [[float(a), float(c), float(y)] for a, c, y in zip(rng.normal(size=60), rng.normal(size=60),
                                                             rng.integers(0, 2, 60), strict=True)]
    return [PartySpec(f"p{i}", "data_owner", {"columns": ["a", "c", "label"], "rows": rows}) for i in range(4)]


def test_the_mark_goes_on_the_dropout_round_whatever_the_call_count() -> None:
    mark = Mark.plan(_parties(), ["a", "c"], after=2)
    w = np.zeros(3)
    first = mark.hook(2, w.copy())  # the platform hid round 1: the round-2 update is the first call
    assert mark.marked == [2] and np.allclose(first - w, mark.size * mark.direction)
    unmarked = Mark.plan(_parties(), ["a", "c"], after=2)
    unmarked.hook(1, w.copy())
    got = unmarked.judge(w, w)
    assert got["status"] == "not checked" and got.get("unmarked") is True
    assert "round 2" in got["why"] and "no update of the model's size" not in got["why"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")
def test_a_stale_update_refiled_after_a_hidden_first_round_fails() -> None:
    out = {o.id: o for o in evaluate(StaleSkipFirst(), ["F-DROPOUT-RESUME"], seed=16).outcomes}
    dropout = out["F-DROPOUT-RESUME"]
    assert dropout.verdict == "fail", dropout.message
    assert dropout.evidence["party_update_rounds"] == [2]
    assert "not in each of rounds 1-2" in dropout.message
    assert dropout.evidence["mark"]["status"] == "repeated", dropout.evidence["mark"]
