"""The console's run view, read from the store of a real in-process run (issue 14, item 5's live run page).

The view must show what the runner persisted and nothing it would have to recompute: rounds with their
metrics, epsilon per party and per level equal to the privacy receipt's (the same ledger summary), both
while the run is going (the durable write-ahead ledger) and after it, the run's signed events, the
report and receipt files. `compare_runs` lines up final metrics and names the config keys that differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sampan.config import parse_config
from sampan.privacy.ledger import LEVELS, Ledger
from sampan.runtime.receipt import build_receipt
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store, StoreError
from sampan.web.run_view import compare_runs, read_run_view


def _config(tmp_path: Path, *, learning_rate: float = 0.1, rounds: int = 3) -> dict[str, Any]:
    return {"run": {"name": "view", "rounds": rounds, "seed": 3, "report_dir": str(tmp_path / "reports")},
            "training": {"learning_rate": learning_rate},
            "source": {"kind": "consortium", "n_smes": 3000},
            "data": {"standardize": False},
            "privacy": {"epsilon": 4.0, "dp2": {"max_grad_norm": 1.0}, "dp3": {"noise_multiplier": 5.0, "clip": 1.0}}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, dict[str, Any]]:
    """One DP run (DP1 row counts, DP2, DP3); the view is also read live, from inside the progress callback."""
    tmp = tmp_path_factory.mktemp("runview")
    store = Store.open(f"sqlite:///{tmp / 'runs.db'}")
    live: dict[str, Any] = {}

    def progress(stage: str, info: Any) -> None:
        if stage == "round" and int(info["round"]) == 2:
            live["view"] = read_run_view(store, str(run_id_of(store)))
            live["ledger"] = Ledger.from_json(store.ledger(str(run_id_of(store))) or "")

    def run_id_of(s: Store) -> str:
        return s.list_runs(1)[0].run_id

    run = start_run(parse_config(_config(tmp)), store, progress)
    return store, run.run_id, live


def test_finished_run_shows_rounds_status_models_and_files(finished: tuple[Store, str, dict[str, Any]]) -> None:
    store, run_id, _ = finished
    view = read_run_view(store, run_id)
    assert view.status == "completed" and view.finished
    assert (view.round, view.total_rounds) == (3, 3)
    assert [r.round for r in view.rounds] == [1, 2, 3]
    assert view.parties == ["bank_harbour", "bank_kowloon", "bank_lionrock"]
    assert all(r.parties == view.parties for r in view.rounds)
    assert view.rounds[-1].global_metrics["auc"] == pytest.approx(view.final_metrics["auc"])
    assert set(view.rounds[-1].party_metrics) == set(view.parties)
    assert view.models and view.models[0]["name"] and view.models[0]["version"] == 1
    assert view.report_path and Path(view.report_path).is_file() and view.report_path.endswith(f"{run_id}.html")
    assert view.receipt_path and Path(view.receipt_path).is_file()


def test_epsilon_per_party_and_level_is_the_receipts(finished: tuple[Store, str, dict[str, Any]]) -> None:
    store, run_id, _ = finished
    view = read_run_view(store, run_id)
    receipt = build_receipt(store, run_id)
    assert view.differential_privacy and view.accountant == "rdp"
    assert set(view.epsilon) == set(receipt["parties"])
    for party, spend in view.epsilon.items():
        entry = receipt["parties"][party]
        assert spend.epsilon_spent == pytest.approx(entry["epsilon_spent"])
        assert spend.by_level == pytest.approx({lvl: entry["epsilon_by_level"][lvl] for lvl in LEVELS})
        assert spend.epsilon_budget == 4.0 and 0 < spend.epsilon_spent <= 4.0
        assert all(spend.by_level[lvl] > 0 for lvl in ("DP1", "DP2", "DP3"))  # row counts, DP-SGD, aggregator


def test_live_view_reads_the_write_ahead_ledger(finished: tuple[Store, str, dict[str, Any]]) -> None:
    """Mid-run (after round 2 of 3): status running, two rounds, epsilon from the durable ledger so far."""
    store, run_id, live = finished
    view, ledger = live["view"], live["ledger"]
    assert view.run_id == run_id and view.status == "running" and not view.finished
    assert [r.round for r in view.rounds] == [1, 2] and view.round == 2
    assert not view.final_metrics and view.report_path is None
    for party, spend in view.epsilon.items():
        assert spend.epsilon_spent == pytest.approx(ledger.spent(party))
        assert spend.by_level["DP3"] == pytest.approx(ledger.spent(party, "DP3"))
    final = read_run_view(store, run_id)
    assert all(final.epsilon[p].epsilon_spent > view.epsilon[p].epsilon_spent for p in view.epsilon)


def test_events_are_the_signed_log_newest_last_and_bounded(finished: tuple[Store, str, dict[str, Any]]) -> None:
    store, run_id, _ = finished
    view = read_run_view(store, run_id)
    kinds = [e.kind for e in view.events]
    assert kinds[0] == "run_created" and "run_completed" in kinds and "budget_charged" in kinds
    assert view.events_total == len(store.events(run_id)) == len(view.events)
    traffic = [e for e in view.events if e.kind == "traffic"]
    assert traffic and all(set(e.detail) <= {"round", "parties"} for e in traffic)  # bulky detail summarised
    short = read_run_view(store, run_id, events_limit=5)
    assert [e.seq for e in short.events] == [e.seq for e in view.events[-5:]]
    assert short.events_total == view.events_total


def test_unknown_run_is_a_store_error_naming_it(finished: tuple[Store, str, dict[str, Any]]) -> None:
    store, _, _ = finished
    with pytest.raises(StoreError, match="no-such-run"):
        read_run_view(store, "no-such-run")


def test_compare_runs_lines_up_metrics_and_names_what_differs(
        finished: tuple[Store, str, dict[str, Any]], tmp_path: Path) -> None:
    store, first, _ = finished
    second = start_run(parse_config(_config(tmp_path, learning_rate=0.3, rounds=2)), store).run_id
    comparison = compare_runs(store, [first, second, first])
    assert comparison.run_ids == [first, second]  # a repeated id is shown once
    assert comparison.metrics["auc"] == [pytest.approx(v.final_metrics["auc"]) for v in comparison.runs]
    assert comparison.config_differences["training.learning_rate"] == [0.1, 0.3]
    assert comparison.config_differences["run.rounds"] == [3, 2]
    assert "run.seed" not in comparison.config_differences and "privacy.epsilon" not in comparison.config_differences
    assert set(comparison.epsilon_spent) == {"bank_harbour", "bank_kowloon", "bank_lionrock"}
    assert comparison.to_dict()["runs"][1]["run_id"] == second
