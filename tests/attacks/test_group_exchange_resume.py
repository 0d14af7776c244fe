"""A run killed after its group exchange resumes and finishes (issue 13 review, item 8): each party replays its
stored answer to an identical repeat of the group request (`group_release_mod`, `AnswerBook`).

The finding it pins:

R13-GRP-7: the horizontal workflow promises "a run killed at any point resumes from its last round and finishes"
(`sampan.horizontal.workflow` docstring). The group exchange comes after the last checkpoint, and each party
answers ONE `evaluate_groups` per run (`group_release_mod`, in memory). A coordinator killed after the parties
answered it but before the result is stored resumes, re-evaluates (allowed: the same model) and asks the groups
again: every party refuses, and the run fails with a `PartyError` on every resume (only restarting every agent,
i.e. R13-GRP-3, unblocks it). Simulated here by running the same run id twice over the same party apps (the
second run resumes from the stored last round, as after a kill at that point).
"""

from __future__ import annotations

from pathlib import Path

from sampan.config import parse_config
from sampan.core.workflow import RunContext
from sampan.horizontal.workflow import HorizontalWorkflow
from sampan.runtime.federation import simulated_party_apps
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.runner import hook_progress
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport


def test_a_run_killed_after_its_group_exchange_resumes_and_finishes(tmp_path: Path) -> None:
    import test_fairness as fairness  # the fairness test's 3-bank data and schema (tests/ is on the path)

    config = parse_config({"run": {"name": "fair", "rounds": 1, "seed": 4}, "schema": fairness.SCHEMA,
                           "parties": [{"name": "placeholder", "path": "unused.csv"}],
                           "training": {"learning_rate": 0.2, "batch_size": 16}, "evaluation": fairness.GROUPS})
    apps = simulated_party_apps("horizontal", fairness._banks(), job={"workflow": "horizontal", "groups": True})
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = store.create_run(name="fair", workflow="horizontal", seed=4, config=config.to_dict(), total_rounds=1)

    def attempt() -> dict[str, object]:
        ctx = RunContext(run_id=run_id, seed=4, config=config, transport=InProcessTransport(apps),
                         recorder=StoreRecorder(store, run_id), progress=hook_progress(None))
        return HorizontalWorkflow(config).run(ctx).info

    assert "groups" in attempt()  # the parties answered the group request; then the coordinator is killed
    assert "groups" in attempt()  # the resumed run finishes
