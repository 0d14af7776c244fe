"""`[scoring] kind` chooses which of the trained vertical run's models scores (as `sampan score --model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sampan.config import parse_config
from sampan.data import make_sme_consortium
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

SEED = 7
VERTICAL = {"run": {"name": "kind-vertical", "seed": SEED, "workflow": "vertical"},
            "source": {"kind": "consortium", "n_smes": 2500},
            "vertical": {"label_holder": "bank", "models": ["lr", "scorecard"], "test_fraction": 0.2,
                         "val_fraction": 0.2, "lr": {"epochs": 2, "batch_size": 64, "learning_rate": 0.3}}}


def test_scoring_kind_reaches_the_scoring_workflow_and_picks_that_model(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    vertical = {**VERTICAL, "run": {**VERTICAL["run"], "report_dir": str(tmp_path / "rep")}}
    trained = start_run(parse_config(vertical), store)
    tables = make_sme_consortium(2500, seed=SEED).vertical
    applicants = sorted(set(map(str, tables["bank"].ids)) & set(map(str, tables["payments"].ids)))[:8]

    def score(**section: Any) -> list[dict[str, Any]]:
        name = f"kind-score-{section.get('kind', 'default')}"
        config = parse_config(
            {
                **parse_config(vertical).to_dict(),
                "run": {"name": name, "seed": SEED, "workflow": "scoring"},
                "scoring": {"model": trained.run_id, "applicants": applicants, **section},
            }
        )
        assert config.workflow == "scoring"
        finished = start_run(config, store)
        assert finished.result.info["scoring"]["kind"] == section.get("kind", "lr")
        (record,) = [m for m in store.models_for_run(finished.run_id) if m.name == f"{name}-scores:bank"]
        return list(record.meta["results"])

    lr, scorecard = score(), score(kind="scorecard")
    assert [r["applicant"] for r in lr] == [r["applicant"] for r in scorecard] == applicants
    assert not np.allclose([r["logit"] for r in lr], [r["logit"] for r in scorecard])  # another model's scores
    store.close()
