"""End-to-end horizontal runs in process: training, resume after SIGKILL, clear failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _crash_hooks import Crash, CrashAfterRound

from sampan.config import parse_config
from sampan.data import PartyData
from sampan.horizontal.simulation import PartySplit
from sampan.horizontal.workflow import FAULT_ENV, FederationError
from sampan.runtime.federation import build_inprocess_federation, build_party_apps
from sampan.runtime.runner import resume_run, start_run
from sampan.runtime.store import Store
from sampan.transport import PartyError
from sampan.transport.inprocess import InProcessTransport


def _config(tmp_path: Path, **run) -> dict:
    return {
        "run": {"name": "t", "rounds": 4, "seed": 11, "report_dir": str(tmp_path / "reports"), **run},
        "training": {"learning_rate": 0.1, "batch_size": 64},
        "source": {"kind": "consortium", "n_smes": 3000},
    }


@pytest.mark.parametrize("strategy,aggregator", [("fedavg", "mean"), ("fedprox", "mean"), ("fedadam", "mean"),
                                                 ("fedavg", "median"), ("fedavg", "trimmed_mean")])
def test_horizontal_run_learns_and_is_recorded(tmp_path: Path, strategy: str, aggregator: str) -> None:
    data = _config(tmp_path)
    data["strategy"] = {"name": strategy, "aggregator": aggregator,
                        **({"server_learning_rate": 0.05} if strategy == "fedadam" else {})}
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    finished = start_run(parse_config(data), store)
    metrics = finished.outcome.final_metrics
    assert metrics["auc"] > 0.68, metrics
    run = store.get_run(finished.outcome.run_id)
    assert run.status == "completed" and run.current_round == 4
    assert [r.round for r in store.rounds(run.run_id)] == [1, 2, 3, 4]
    assert set(run.info["parties"]) == {"bank_harbour", "bank_kowloon", "bank_peak"} or len(run.info["parties"]) == 3
    assert store.verify_events(run.run_id)
    assert finished.report_path.exists() and run.run_id in finished.report_path.read_text()
    model = store.get_model("t")
    np.testing.assert_array_equal(model.arrays["params"], finished.outcome.params)
    kinds = {t["kind"] for t in run.info["traffic"] if t["direction"] == "sent"}
    assert kinds == {"describe", "stats", "fit_result", "evaluation"}  # nothing else ever leaves a party


def test_same_seed_same_model_and_different_seed_differs(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    a = start_run(parse_config(_config(tmp_path)), store).outcome.params
    b = start_run(parse_config(_config(tmp_path)), store).outcome.params
    c = start_run(parse_config(_config(tmp_path, seed=12)), store).outcome.params
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _sampan(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sampan.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_killed_run_resumes_to_identical_model(tmp_path: Path) -> None:
    """SIGKILL the real CLI process after round 3 of 6, resume it, compare with an uninterrupted run."""
    config = tmp_path / "run.toml"
    config.write_text(
        '[run]\nname = "resume-test"\nrounds = 6\nseed = 5\n'
        f'store = "sqlite:///{tmp_path / "runs.db"}"\nreport_dir = "{tmp_path / "reports"}"\n'
        '[model]\nkind = "mlp"\nhidden = [8]\n[strategy]\nname = "fedadam"\nserver_learning_rate = 0.05\n'
        '[source]\nkind = "consortium"\nn_smes = 2000\n'
    )
    killed = _sampan(["run", str(config)], tmp_path, {FAULT_ENV: "3"})
    assert killed.returncode == -9, killed.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    [interrupted] = store.list_runs()
    assert interrupted.status == "running" and interrupted.current_round == 3

    resumed = _sampan(["run", "--resume", interrupted.run_id, "--store", f"sqlite:///{tmp_path / 'runs.db'}"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    clean = _sampan(["run", str(config)], tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    v1, v2 = store.get_model("resume-test", 1), store.get_model("resume-test", 2)
    assert v1.run_id == interrupted.run_id and v2.run_id != interrupted.run_id
    np.testing.assert_array_equal(v1.arrays["params"], v2.arrays["params"])
    assert [r.round for r in store.rounds(interrupted.run_id)] == [1, 2, 3, 4, 5, 6]
    kinds = [e.kind for e in store.events(interrupted.run_id)]
    assert "run_resumed" in kinds and store.verify_events(interrupted.run_id)


def test_resume_of_completed_run_is_refused(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    finished = start_run(parse_config(_config(tmp_path, rounds=1)), store)
    with pytest.raises(Exception, match="completed"):
        resume_run(store, finished.outcome.run_id)


def _party(name: str, names: list[str], n: int = 50, seed: int = 0) -> PartyData:
    rng = np.random.default_rng(seed)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object),
                     X=rng.normal(size=(n, len(names))), y=(rng.random(n) < 0.3).astype(np.int8),
                     feature_names=names)


def test_parties_with_different_features_are_rejected_by_name(tmp_path: Path) -> None:
    splits = {"a": PartySplit(_party("a", ["x", "y"]), _party("a", ["x", "y"])),
              "b": PartySplit(_party("b", ["x", "z"]), _party("b", ["x", "z"]))}
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    config = parse_config(_config(tmp_path))
    run_id = store.create_run(name="t", workflow="horizontal", seed=1, config=config.to_dict(), total_rounds=1)
    with pytest.raises(FederationError, match=r"party 'b' has features that differ from party 'a': \['y', 'z'\]"):
        resume_run(store, run_id, transport=InProcessTransport(build_party_apps(splits)))
    assert store.get_run(run_id).status == "failed"


def test_party_failure_names_the_party(tmp_path: Path) -> None:
    transport, _ = build_inprocess_federation(parse_config(_config(tmp_path)), 1)
    from sampan.wire import Message

    with pytest.raises(PartyError, match="party 'bank_.*' failed on 'fit'"):
        list(transport.exchange([Message("r", 1, "coordinator", transport.parties[0], "fit",
                                         arrays={"params": np.zeros(3)}, meta={})]))


@pytest.mark.postgres
def test_run_and_resume_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """The same lifecycle on the real PostgreSQL server: a run, a crash mid-way, a resume."""
    store = Store.open(postgres_url)
    config = parse_config(_config(tmp_path, rounds=3))
    reference = start_run(config, store).outcome.params
    run_id = store.create_run(name="t", workflow="horizontal", seed=11, config=config.to_dict(), total_rounds=3)
    with pytest.raises(Crash):
        resume_run(store, run_id, CrashAfterRound(2))
    assert store.latest_checkpoint(run_id).round == 2
    resumed = resume_run(store, run_id)
    np.testing.assert_array_equal(resumed.outcome.params, reference)
    assert store.get_run(run_id).status == "completed" and store.verify_events(run_id)
