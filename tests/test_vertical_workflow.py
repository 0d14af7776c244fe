"""The vertical workflow over messages only: same results as the session pipeline, parts kept by their parties,
stages resumable, scores only at the bank."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import sampan.vertical.psi_party
from sampan.core.workflow import RunCancelled
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.federation import build_inprocess_vertical
from sampan.runtime.runner import resume_run, start_run
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.capability import SCORING, VERTICAL, ScoringJob, simulate_vertical, vertical_party
from sampan.vertical.job import VerticalJob, job_of, load_tables
from sampan.vertical.session import VerticalSession
from sampan.vertical.training import VerticalLRConfig

N_SMES, DATA_SEED = 4000, 4
SRC = Path(__file__).resolve().parents[1] / "src" / "sampan"


@pytest.fixture(autouse=True)
def _seeded_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed alignment order, so pinned test rows hold defaults and runs compare row for row."""
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(7).permutation(n))


class _CoordinatorCrash(RuntimeError):
    pass


def test_a_cancelled_run_stops_between_stages() -> None:
    store = Store.open("sqlite://")
    with pytest.raises(RunCancelled):
        start_run(_job(), store, cancelled=lambda: True)
    assert store.list_runs(1)[0].status == "cancelled"


def _job(**kw: Any) -> VerticalJob:
    base: dict[str, Any] = dict(name="wf", label_holder="bank", partners=("payments", "delivery"), models=("lr",),
                                lr=VerticalLRConfig(epochs=3), seed=3,
                                source={"kind": "consortium", "n_smes": N_SMES, "seed": DATA_SEED})
    return VerticalJob(**{**base, **kw})


def _transport(job: VerticalJob, registry: Any) -> InProcessTransport:
    setups = simulate_vertical(job, 0, registry=registry)
    return InProcessTransport({n: VERTICAL.party_app(s) for n, s in setups.items()})


def test_workflow_matches_the_session_pipeline_for_a_seeded_run() -> None:
    """The old in-process path (session calls on the same parties) and the workflow give the same rows and AUC."""
    job = _job()
    transport, _ = build_inprocess_vertical(load_tables(job))
    session = VerticalSession(transport, label_holder="bank", partners=["payments", "delivery"], run_id="old-path")
    session.connect()
    session.align()
    splits = session.splits(seed=3)
    session.train(splits, job.lr, seed=3)
    joint, bank_only = session.evaluate(splits.test), session.bank_only(splits, job.lr, seed=3)

    outcome = start_run(job, Store.open("sqlite://")).result.outcome
    assert outcome["alignment"]["n_aligned"] == session.n_aligned
    assert outcome["joint"]["n"] == joint["n"] == len(splits.test)
    # secure LR's fixed-point truncation draws fresh randomness (CSPRNG): equal up to its rounding
    assert outcome["joint"]["auc"] == pytest.approx(joint["auc"], abs=0.01)
    assert outcome["bank_only"]["auc"] == pytest.approx(bank_only["auc"], abs=1e-12)  # plaintext at the bank


def test_the_workflow_never_reads_a_party_object() -> None:
    """Everything the coordinator reports comes from replies: no party attribute is read from the workflow."""
    for path in [*SRC.glob("vertical/workflow*.py"), SRC / "vertical" / "capability.py",
                 SRC / "runtime" / "reports_vertical.py"]:
        text = path.read_text()
        for forbidden in (".lr.part", ".scoring.results", ".woe.report", ".gbdt.results", "parties["):
            assert forbidden not in text, f"{path.name} reads party memory ({forbidden})"
        assert not re.search(r"\.gbdt\.part_arrays|\.loaded_part", text), path.name


def test_each_party_registers_its_own_parts_in_its_own_registry() -> None:
    job = _job(models=("lr", "scorecard"))
    registries = {p: Store.open("sqlite://") for p in job.parties}
    setups = simulate_vertical(job, 0)
    for name, setup in setups.items():
        setup.registry = registries[name]
    transport = InProcessTransport({n: VERTICAL.party_app(s) for n, s in setups.items()})
    coordinator = Store.open("sqlite://")
    finished = start_run(job, coordinator, transport=transport)
    assert finished.model_version is None and not list(coordinator.models_for_run(finished.run_id))
    for party, registry in registries.items():
        names = sorted(m.name for m in registry.models_for_run(finished.run_id))
        held_out = [f"wf-holdout:{party}"] if party == job.label_holder else []  # the bank's record of its test ids
        assert names == sorted([*held_out, f"wf-scorecard:{party}", f"wf:{party}"])
    info = coordinator.get_run(finished.run_id).info
    # the report's scorecard rows are what each party released, and a partner releases only its own
    assert {r["party"] for r in info["vertical"]["scorecard"]} == set(job.parties)
    assert set(info["vertical"]["iv"]) == set(job.parties)  # the bank's IV report
    assert info["final_metrics"]["auc"] > 0.5


def test_resume_skips_the_stages_the_parties_still_hold(tmp_path: Path) -> None:
    job = _job(models=("lr", "gbdt"))
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    transport = _transport(job, store)  # the parties (an agent's) outlive the coordinator

    def crash_after_lr(kind: str, info: Any) -> None:
        if kind == "stage_done" and info["stage"] == "lr":
            raise _CoordinatorCrash("the coordinator died after the LR stage")

    with pytest.raises(_CoordinatorCrash):
        start_run(job, store, crash_after_lr, transport=transport)
    run_id = store.list_runs(1)[0].run_id
    assert store.get_run(run_id).status == "failed"
    assert store.latest_checkpoint(run_id).meta["done"] == ["aligned", "lr"]

    stages: list[str] = []
    finished = resume_run(store, run_id, lambda kind, info: stages.append(str(info.get("stage"))),
                          transport=transport, config=job_of(store.get_run(run_id).config))
    assert "training secure vertical LR" not in stages and "aligning customers by PSI" not in stages
    assert "training vertical GBDT" in stages
    assert any(e.kind == "vertical_resumed" for e in store.events(run_id))
    assert set(finished.result.outcome["comparison"]) >= {"vertical LR (secure)", "vertical GBDT"}


def test_a_restarted_party_makes_the_run_start_again_from_alignment(tmp_path: Path) -> None:
    job = _job()
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")

    def crash(kind: str, info: Any) -> None:
        if kind == "stage_done":
            raise _CoordinatorCrash("the coordinator died after alignment")

    with pytest.raises(_CoordinatorCrash):
        start_run(job, store, crash, transport=_transport(job, store))
    run_id = store.list_runs(1)[0].run_id
    stages: list[str] = []
    resume_run(store, run_id, lambda kind, info: stages.append(str(info.get("stage"))),
               transport=_transport(job, store), config=job)  # fresh parties: their run state is gone
    assert "aligning customers by PSI" in stages
    assert any(e.kind == "vertical_restart_from_alignment" for e in store.events(run_id))
    assert store.get_run(run_id).status == "completed"


def test_scores_stay_with_the_bank() -> None:
    store = Store.open("sqlite://")
    bank_ids = [str(i) for i in load_tables(_job())["bank"].ids[-3:]]
    trained = start_run(_job(applicants=tuple(bank_ids[:1])), store)
    scoring = ScoringJob(model_run=trained.run_id, label_holder="bank", partners=("payments", "delivery"),
                         applicants=tuple(bank_ids), name="wf-score", training=store.get_run(trained.run_id).config)
    finished = start_run(scoring, store)  # type: ignore[arg-type]
    for run_id in (trained.run_id, finished.run_id):  # the coordinator's records: request ids and counts only
        text = json.dumps(store.get_run(run_id).info)
        assert "probability_of_default" not in text and not any(a in text for a in bank_ids)
    assert finished.result.outcome["n"] == 3
    record = store.get_model("wf-score-scores:bank")  # the bank's own record in its registry
    assert [r["applicant"] for r in record.meta["results"]] == bank_ids
    assert all(0 < r["probability_of_default"] < 1 for r in record.meta["results"])


def test_party_setup_fields_build_a_party(tmp_path: Path) -> None:
    """What an agent passes: its state folder persists LR instances and the row book."""
    job = _job()
    setup = simulate_vertical(job, 0)["payments"]
    setup.state_dir, setup.deployed, setup.options = tmp_path, True, {"psi_workers": 1}
    party = vertical_party(setup)
    assert party.psi.workers == 1 and party.row_book._path == tmp_path / "vertical-rows.json"
    setup.options = {"with_baselines": True}
    with pytest.raises(ValueError, match="insecure plaintext baselines"):
        SCORING.party_app(setup)


def test_a_stored_vertical_run_config_resumes_through_the_runner(tmp_path: Path) -> None:
    """`sampan run --resume`: the runner rebuilds the run from its stored config (fresh parties, so from alignment)."""
    from sampan.cli.vertical import demo_job

    config = demo_job(N_SMES, DATA_SEED, tmp_path / "reports", models=("lr",), lr={"epochs": 3})
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")

    def crash(kind: str, info: Any) -> None:
        if kind == "stage_done":
            raise _CoordinatorCrash("the coordinator died after alignment")

    with pytest.raises(_CoordinatorCrash):
        start_run(config, store, crash)
    run_id = store.list_runs(1)[0].run_id
    finished = resume_run(store, run_id)
    assert store.get_run(run_id).status == "completed" and finished.report_path is not None
    assert finished.final_metrics["auc"] > 0.5
    assert {m.name for m in store.models_for_run(run_id)} == {f"demo-vertical-sme:{p}" for p in
                                                               ("bank", "payments", "delivery")} | {
        "demo-vertical-sme-holdout:bank"}  # the bank's record of its held-out ids (a simulation: the run store)
