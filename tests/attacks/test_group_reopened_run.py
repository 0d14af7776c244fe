"""Deployed: a coordinator re-opens a run to get a second grouping, and is refused (the bank's once-per-run group
answer and its DP runs are kept in its state dir, `sampan.privacy.run_marks`, `admission.DPRuns`).

The finding it pins (issue 13 review, item 8):

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

from sampan.deploy.party_agent import MAX_OPEN_RUNS
from sampan.wire import Message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/attacks: the shared deployed federation
from _consent_grant import open_with_consent  # noqa: E402
from _deploy_federation import ThreadFederation  # noqa: E402

PARTIES = ["bank_harbour", "bank_kowloon", "bank_lionrock"]


def _job(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The job as the coordinator announces it: the exact groups (review R13-GRP-5), here its own new choice."""
    return {"operator": "ops", "parties": PARTIES, "protections": [],
            "groups": [{"column": g["column"], "cuts": g["cuts"]} for g in groups]}


def test_a_reopened_run_answers_no_second_grouping(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agent = fed.agents["bank_harbour"]
        names = list(agent.table("loans")[1].feature_names)
        model, params = {"kind": "logistic", "n_features": len(names)}, np.eye(len(names) + 1)[0]

        def send(run: str, kind: str, **meta: Any) -> Message:
            return agent.handle(Message(run, 3, "coordinator", "bank_harbour", kind, arrays={"params": params},
                                        meta={"model": model, **meta}))

        def open_run(run: str, groups: list[dict[str, Any]]) -> Message:
            return open_with_consent(agent, Message(run, 0, "coordinator", "bank_harbour", "deploy.open_run", meta={
                "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1,
                "job": _job(groups)}))

        def evict(groups: list[dict[str, Any]]) -> None:  # open (never evaluate in) other runs until R is evicted
            for i in range(MAX_OPEN_RUNS):
                assert not open_run(f"filler-{i}", groups).is_error

        feature = next(name for name in names if "=" not in name)  # a numeric column
        first = [{"column": feature, "feature": feature, "cuts": [0.0]}]
        second = [{"column": feature, "feature": feature, "cuts": [1.0]}]
        assert not open_run("R", first).is_error and send("R", "evaluate", bins=100).kind == "evaluation"
        answer = send("R", "evaluate_groups", groups=first, bins=100)
        assert answer.kind == "group_evaluation"
        assert send("R", "evaluate_groups", groups=second, bins=100).is_error  # refused while R is open
        evict(first)
        # re-opening R with a job announcing the other grouping is another spec under the same job id: refused
        # outright (one job id, one spec: review R14-CONSENT2-4); and the other grouping is still never answered
        assert open_run("R", second).is_error
        assert send("R", "evaluate_groups", groups=second, bins=100).is_error  # must still be refused
        evict(first)
        assert not open_run("R", first).is_error
        again = send("R", "evaluate_groups", groups=first, bins=100)  # the same request: the same answer back
        assert again.kind == "group_evaluation", again.meta
        assert all(np.array_equal(again.arrays[k], answer.arrays[k]) for k in ("pos", "neg"))
    finally:
        fed.coordinator.security.close()
