"""Review (issue 13 item 8), deployed: a coordinator re-opens a run to get a second grouping, no restart needed.

R13-GRP-9: a party agent keeps at most `MAX_OPEN_RUNS` (8) run contexts (`PartyAgent._runs`, LRU). After the
coordinator opens 8 other runs, `deploy.open_run` for the first run id again builds a FRESH party app: the group
mod's once-per-run memory (`group_release_mod.answered`) and the run's DP flag (`PartyDPState.dp_runs`) are gone,
while `evaluated.json` still admits the run (its evaluation is recorded), so the re-opened run answers
`evaluate_groups` again with another grouping: differencing across groupings (R13-GRP-1 across requests), as
many times as the coordinator repeats the trick, all on ONE `max_evaluations` slot (the dummy runs evaluate
nothing). The job of the re-opened run is the coordinator's new choice: where the bank's [allow] does not require
DP, a DP run re-opened with a plain job answers the groups exact (the gate checks the new job's protections).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.deploy.party_agent import MAX_OPEN_RUNS
from sampan.wire import Message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/attacks: the shared deployed federation
from _deploy_federation import ThreadFederation  # noqa: E402

PARTIES = ["bank_harbour", "bank_kowloon", "bank_lionrock"]
JOB = {"operator": "ops", "parties": PARTIES, "protections": [], "groups": True}


@pytest.mark.xfail(strict=True, reason="R13-GRP-9: re-opening an evicted run id resets the once-per-run group "
                                       "memory; a second grouping of the same holdout is answered")
def test_a_reopened_run_answers_no_second_grouping(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agent = fed.agents["bank_harbour"]
        names = list(agent.table("loans")[1].feature_names)
        model, params = {"kind": "logistic", "n_features": len(names)}, np.eye(len(names) + 1)[0]

        def send(run: str, kind: str, **meta: Any) -> Message:
            return agent.handle(Message(run, 3, "coordinator", "bank_harbour", kind, arrays={"params": params},
                                        meta={"model": model, **meta}))

        def open_run(run: str) -> Message:
            return agent.handle(Message(run, 0, "coordinator", "bank_harbour", "deploy.open_run", meta={
                "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": JOB}))

        feature = names[0]
        assert not open_run("R").is_error and send("R", "evaluate", bins=100).kind == "evaluation"
        first = [{"column": feature, "feature": feature, "cuts": [0.0]}]
        second = [{"column": feature, "feature": feature, "cuts": [1.0]}]
        assert send("R", "evaluate_groups", groups=first, bins=100).kind == "group_evaluation"
        assert send("R", "evaluate_groups", groups=second, bins=100).is_error  # refused while R is open
        for i in range(MAX_OPEN_RUNS):  # open (and never evaluate in) other runs until R is evicted
            assert not open_run(f"filler-{i}").is_error
        assert not open_run("R").is_error
        assert send("R", "evaluate_groups", groups=second, bins=100).is_error  # must still be refused
    finally:
        fed.coordinator.security.close()
