"""R13-SCO-9 (review, issue 13): a scoring run's own receipt states nothing of what scoring reveals.

`sampan.vertical.scoring.REVEALS` ("each partner learns the registration number queried", "the bank learns ... the
summed partner contribution and which partners know the applicant") and the GBDT scoring terms (the bank learns
every partner split's routing bit) appear only in the TRAINING run's receipt. A scoring run (`sampan score --run`,
a deployed `[scoring]` job) is a run of its own, and `ScoringWorkflow.run` (`vertical/capability.py`) puts no
``receipt`` terms in its info, so `build_receipt` of that run returns ``reveals == {}`` and the generic threat
model: a partner's operator reading the receipt of the run that queried its customers is not told that it
learned who applied, nor the bank's operator what the bank learned about partners' customers.
"""

from __future__ import annotations

from pathlib import Path


def test_a_scoring_runs_receipt_states_what_each_party_learns(tmp_path: Path) -> None:
    from test_score_applicants import _vertical_run

    from sampan.cli.vertical import score_applicants
    from sampan.runtime.receipt import build_receipt
    from sampan.runtime.store import Store

    store_url, run_id, consortium = _vertical_run(tmp_path)
    store = Store.open(store_url)
    score_applicants(store, run_id, [str(i) for i in consortium.vertical["bank"].ids[:3]], "lr")
    scoring = next(r for r in store.list_runs(5) if r.workflow == "scoring")
    receipt = build_receipt(store, scoring.run_id)
    stated = " ".join(str(v) for v in receipt["reveals"].values()).lower()
    assert "partner" in stated and "registration number" in stated, receipt["reveals"]
