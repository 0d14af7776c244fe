"""Pins the fix of review R12-SAC-4 (issue 12; was tests/attacks/review/test_secagg_carried_evaluation_capped_party.py)
(low, availability): a party whose evaluation cap is
spent (`max_evaluations`, e.g. 0: "never evaluate my holdout") is now dropped from the TRAINING of every round
that carries an evaluation, not only from the evaluations.

`policy_mod` admits the carried evaluation as part of the `fit` (`_admit_evaluate(state, evaluation_request(msg))`)
and a refusal refuses the whole fit; the coordinator cannot know a party's cap, so an honest SecAgg run without DP
loses that party's updates from round 2 on (below the floor, the run fails). Before edfc784 the fit was answered
and only the separate evaluation instance counted the party as a dropout. No privacy loss: the party's rows
simply stop contributing, which the docs (workflow "a party that errs ... is a dropout"; SECURITY.md "counted
against `max_evaluations`") do not announce as a consequence of its evaluation cap.

Fix (in place): a capped party answers the fit with an empty evaluation part (zeros, n = 0); the cap holds
(it records no evaluation); the coordinator learns only the summed n. Was: let the party answer a carried fit with its
fit part and a refused (e.g. zero, n = 0) evaluation
part when only the evaluation is refused (n = 0 is then visible only in the sum), or let the party announce
"no evaluation" at job acceptance so the workflow sends it a plain fit.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from _horizontal_run import run_workflow  # noqa: E402
from test_secagg_workflow import _config, _events, _splits  # noqa: E402

from sampan.core.party import PartyApp  # noqa: E402
from sampan.crypto.identity import simulated_consortium  # noqa: E402
from sampan.horizontal.party import HorizontalParty  # noqa: E402
from sampan.privacy.secagg import SecAggClient  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402
from sampan.transport.inprocess import InProcessTransport  # noqa: E402

CAPPED = "bank_4"


def test_a_party_that_never_evaluates_still_trains_in_every_secure_round(tmp_path: Path) -> None:
    splits = _splits(5)
    verifier, identities = simulated_consortium(list(splits))
    apps, parties = {}, {}
    for name, split in splits.items():
        app = PartyApp(name)
        client = SecAggClient(name, identity=identities[name], verifier=verifier)
        party = HorizontalParty(
            name, split.train, split.test, secagg=client, max_evaluations=0 if name == CAPPED else None
        )
        for kind, handler in party.handlers().items():
            app.register(kind, handler)
        apps[name], parties[name] = app, party
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    config = _config(rounds=3, secagg={"threshold": 0.6})
    run_id = store.create_run(name="sa", workflow="horizontal", seed=4, config=config.to_dict(), total_rounds=3)
    run_workflow(InProcessTransport(apps), store, run_id, config, 4)
    by_round = {r["round"]: r["contributors"] for r in _events(store, run_id, "secagg_round")}
    assert by_round[1] and CAPPED in by_round[1]  # round 1 carries no evaluation: it trains
    assert all(CAPPED in by_round[r] for r in (2, 3)), by_round  # today: refused (its evaluation cap)
    assert parties[CAPPED].dp.evaluated == {}  # the cap holds: it evaluated nothing, in any round
    carried = [e for e in _events(store, run_id, "secagg_evaluation") if "carried_by_round" in e]
    holdout = sum(len(split.test) for name, split in splits.items() if name != CAPPED)
    assert carried and all(e["metrics"]["n"] == holdout for e in carried), carried  # the sum's n: without it
