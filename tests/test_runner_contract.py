"""The one runner's contract, with a toy capability: run life, terminal states, resume, transport ownership.

Nothing here is horizontal or vertical: a toy workflow sums numbers its parties hold, one request per
party and round, checkpointing the running total, so the runner is pinned down on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import sampan.runtime.runner as runner
from sampan.core import (
    ModelArtifact,
    PartyApp,
    PartySetup,
    RunCancelled,
    RunContext,
    Workflow,
    WorkflowResult,
    raise_for_error,
)
from sampan.report import ReportSection
from sampan.runtime import capabilities, reporting
from sampan.runtime.capabilities import CapabilityError, get_capability
from sampan.runtime.receipt import build_receipt
from sampan.runtime.store import Store, StoreError
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

PARTIES = {"alpha": 1.0, "beta": 2.0, "gamma": 4.0}


class Boom(RuntimeError):
    pass


class ToyWorkflow(Workflow):
    """Round r: every party adds its number to the running total; the total is checkpointed each round."""

    name = "toy"

    def __init__(self, config: Any) -> None:
        self.config = config

    def total_rounds(self, config: Any) -> int:
        return int(config.run.rounds)

    def run(self, ctx: RunContext) -> WorkflowResult:
        last = ctx.recorder.last_checkpoint()
        total = float(last.arrays["total"][0]) if last is not None else 0.0
        start = last.round + 1 if last is not None else 1
        ctx.recorder.event("toy_started", {"from_round": start})
        ctx.progress("run_started", {"run_id": ctx.run_id, "total_rounds": self.config.run.rounds,
                                     "resumed_from": start - 1})
        for round_number in range(start, self.config.run.rounds + 1):
            ctx.check_cancelled()
            if round_number == self.config.fail_at:
                raise Boom(f"toy failure at round {round_number}")
            requests = (Message(ctx.run_id, round_number, ctx.coordinator, p, "toy.add", {}, {"round": round_number})
                        for p in ctx.transport.parties)
            for reply in ctx.transport.exchange(requests):
                total += float(raise_for_error(reply).meta["value"])
            ctx.recorder.checkpoint(round_number, {"total": np.array([total])}, {"round": round_number},
                                    {"total": total}, 0.0)
            ctx.progress("round", {"round": round_number, "parties": list(ctx.transport.parties),
                                   "train_loss": None, "global": {"total": total}})
        ctx.recorder.info("toy_note", "summed")
        models = [ModelArtifact(self.config.run.name, {"total": np.array([total])}, {"kind": "toy"})] \
            if self.config.register else []
        return WorkflowResult(final_metrics={"total": total}, models=models,
                              info={"receipt": {"threat_model": "toy: each party reveals its number",
                                                "reveals": {"sum": "the coordinator learns every number"},
                                                "protections": {"toy.value": "none: the number in clear"}}},
                              outcome=SimpleNamespace(total=total))


class ToyCapability:
    name = "toy"

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []
        self.registries: list[Any] = []

    def workflow(self, config: Any) -> Workflow:
        return ToyWorkflow(config)

    def party_app(self, setup: PartySetup) -> PartyApp:
        app = PartyApp(setup.name)
        self.registries.append(setup.registry)
        value = float(setup.data)

        def add(message: Message) -> Message:
            self.requests.append((setup.name, int(message.meta["round"])))
            return message.reply("toy.value", {}, {"value": value})

        app.register("toy.add", add)
        return app

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        return {name: PartySetup(name=name, data=value, job={"workflow": "toy"}) for name, value in PARTIES.items()}


class ToyConfig(SimpleNamespace):
    def to_dict(self) -> dict[str, Any]:
        return {"run": vars(self.run), "fail_at": self.fail_at, "register": self.register}


def toy_config(tmp_path: Path, *, rounds: int = 3, fail_at: int | None = None, register: bool = True,
               workers: int = 1) -> ToyConfig:
    return ToyConfig(run=SimpleNamespace(name="toy-model", workflow="toy", seed=7, rounds=rounds, workers=workers,
                                         report_dir=str(tmp_path / "reports")),
                     fail_at=fail_at, register=register)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ToyCapability:
    """Register the toy capability in the runner's table (as a module attribute the table names)."""
    capability = ToyCapability()
    monkeypatch.setitem(capabilities.CAPABILITIES, "toy", f"{__name__}:TOY")
    monkeypatch.setattr(sys.modules[__name__], "TOY", capability)

    def parse_stored(data: dict[str, Any], *, source: str = "") -> ToyConfig:
        return ToyConfig(run=SimpleNamespace(**data["run"]), fail_at=None, register=data["register"])
    monkeypatch.setattr(runner, "parse_config", parse_stored)
    return capability


TOY: Any = None


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'runs.db'}")


class TrackingTransport(InProcessTransport):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_unknown_workflow_is_a_clear_error_naming_the_known_ones() -> None:
    with pytest.raises(CapabilityError, match=r"unknown workflow 'nope'.*horizontal.*synthesis.*vertical"):
        get_capability("nope")


def test_missing_capability_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(capabilities.CAPABILITIES, "ghost", "sampan.no_such_package.capability:GHOST")
    with pytest.raises(CapabilityError, match=r"workflow 'ghost'.*sampan.no_such_package.capability"):
        get_capability("ghost")


def test_run_is_created_completed_registered_with_receipt_and_report(tmp_path: Path, store: Store,
                                                                     toy: ToyCapability) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    finished = runner.start_run(toy_config(tmp_path), store, lambda stage, info: seen.append((stage, dict(info))))
    run = store.get_run(finished.run_id)
    assert run.workflow == "toy" and run.status == "completed" and run.total_rounds == 3 and run.current_round == 3
    assert finished.final_metrics == {"total": 21.0} and finished.outcome.total == 21.0
    assert (finished.model_name, finished.model_version) == ("toy-model", 1)
    model = store.get_model("toy-model")
    np.testing.assert_array_equal(model.arrays["total"], [21.0])
    assert model.lineage["workflow"] == "toy" and model.receipt is not None
    assert run.info["model"] == {"name": "toy-model", "version": 1} and run.info["toy_note"] == "summed"
    receipt = build_receipt(store, finished.run_id)
    assert receipt["workflow"] == "toy" and receipt["reveals"] == {"sum": "the coordinator learns every number"}
    assert {s["kind"] for s in receipt["parties"]["alpha"]["sent"]} == {"toy.value"}
    assert receipt["parties"]["alpha"]["sent"][0]["protection"] == "none: the number in clear"
    assert finished.report_path is not None and finished.report_path.exists()
    assert (finished.report_path.parent / f"{finished.run_id}.receipt.json").exists()
    assert [s for s, _ in seen].count("round") == 3
    assert toy.registries == [store] * 3  # simulated parties register their own parts in the run's store
    kinds = [e.kind for e in store.events(finished.run_id)]
    assert kinds[0] == "run_created" and "run_running" in kinds and "run_completed" in kinds
    assert "model_registered" in kinds and "model_receipt_attached" in kinds
    assert store.verify_events(finished.run_id)


def test_a_workflow_without_models_completes_with_no_model(tmp_path: Path, store: Store, toy: ToyCapability) -> None:
    finished = runner.start_run(toy_config(tmp_path, register=False), store)
    assert finished.model_name is None and finished.model_version is None
    assert store.get_run(finished.run_id).status == "completed" and store.list_models() == []


def test_failure_marks_the_run_failed_with_its_error(tmp_path: Path, store: Store, toy: ToyCapability) -> None:
    with pytest.raises(Boom):
        runner.start_run(toy_config(tmp_path, fail_at=2), store)
    run = store.list_runs()[0]
    assert run.status == "failed" and "Boom: toy failure at round 2" in (run.error or "")
    assert store.list_models() == []


def test_cancel_marks_the_run_cancelled_and_it_does_not_resume(tmp_path: Path, store: Store,
                                                              toy: ToyCapability) -> None:
    asked = iter([False, True])
    with pytest.raises(RunCancelled):
        runner.start_run(toy_config(tmp_path), store, cancelled=lambda: next(asked, True))
    run = store.list_runs()[0]
    assert run.status == "cancelled" and run.current_round == 1
    with pytest.raises(StoreError, match="cancelled"):
        runner.resume_run(store, run.run_id)


def test_interrupt_marks_the_run_interrupted(tmp_path: Path, store: Store, toy: ToyCapability) -> None:
    def interrupt() -> bool:
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        runner.start_run(toy_config(tmp_path), store, cancelled=interrupt)
    assert store.list_runs()[0].status == "interrupted"


def test_resume_continues_after_the_last_checkpoint(tmp_path: Path, store: Store, toy: ToyCapability) -> None:
    with pytest.raises(Boom):
        runner.start_run(toy_config(tmp_path, rounds=4, fail_at=3), store)
    run_id = store.list_runs()[0].run_id
    assert sorted({r for _, r in toy.requests}) == [1, 2]
    toy.requests.clear()
    finished = runner.resume_run(store, run_id)
    assert sorted({r for _, r in toy.requests}) == [3, 4]  # rounds 1-2 were not asked again
    assert finished.final_metrics["total"] == 28.0 and store.get_run(run_id).status == "completed"
    with pytest.raises(StoreError, match="completed"):
        runner.resume_run(store, run_id)


def test_passed_in_transport_is_not_closed_a_built_one_is(tmp_path: Path, store: Store, toy: ToyCapability,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    apps = {name: toy.party_app(setup) for name, setup in toy.simulate(None, 0).items()}
    given = TrackingTransport(apps)
    finished = runner.start_run(toy_config(tmp_path), store, transport=given)
    assert not given.closed and finished.final_metrics["total"] == 21.0
    assert given.traffic.summary()  # the workflow's messages went through the given transport

    built: list[TrackingTransport] = []

    def build(capability: Any, config: Any, seed: int, **_: Any) -> TrackingTransport:
        built.append(TrackingTransport(apps))
        return built[-1]
    monkeypatch.setattr(runner, "build_transport", build)
    runner.start_run(toy_config(tmp_path), store)
    assert built and built[0].closed
    with pytest.raises(Boom):
        runner.start_run(toy_config(tmp_path, fail_at=1), store)
    assert built[-1].closed  # also after a failure


def test_workers_run_each_party_in_its_own_process(tmp_path: Path, store: Store, toy: ToyCapability) -> None:
    finished = runner.start_run(toy_config(tmp_path, workers=2), store)
    assert finished.final_metrics["total"] == 21.0


def test_hook_progress_adapts_a_progress_hook() -> None:
    calls: list[tuple[str, tuple[Any, ...]]] = []

    class Hook:
        def run_started(self, *a: Any) -> None: calls.append(("run_started", a))
        def round_started(self, *a: Any) -> None: calls.append(("round_started", a))
        def party_done(self, *a: Any) -> None: calls.append(("party_done", a))
        def round_finished(self, result: Any) -> None:
            calls.append(("round_finished", (result.round, result.train_loss)))

    progress = runner.hook_progress(Hook())
    progress("run_started", {"run_id": "r", "total_rounds": 3, "resumed_from": 1})
    progress("round_started", {"round": 2, "parties": ["a", "b"]})
    progress("party_done", {"party": "a"})
    progress("round", {"round": 2, "train_loss": None})
    progress("epoch", {"epoch": 1})
    assert [c[0] for c in calls] == ["run_started", "round_started", "party_done", "round_finished"]
    assert calls[1][1] == (2, 2) and calls[3][1][0] == 2 and calls[3][1][1] != calls[3][1][1]  # NaN loss


def toy_report(store: Store, run_id: str) -> list[ReportSection]:
    return [ReportSection("Toy sums", f"<p>total {store.get_run(run_id).info['final_metrics']['total']}</p>")]


def test_report_builder_is_picked_by_workflow_name(
    tmp_path: Path, store: Store, toy: ToyCapability, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(reporting.REPORT_BUILDERS, "toy", f"{__name__}:toy_report")
    finished = runner.start_run(toy_config(tmp_path), store)
    assert finished.report_path is not None
    html = finished.report_path.read_text()
    assert "Toy sums" in html and "total 21.0" in html and "Privacy receipt" in html

    monkeypatch.setitem(reporting.REPORT_BUILDERS, "toy", "sampan.no_such_reports:build")  # not there: generic
    path = reporting.write_run_report(store, finished.run_id, tmp_path / "again")
    assert "Toy sums" not in path.read_text() and "Privacy receipt" in path.read_text()


def test_a_report_that_cannot_be_written_leaves_the_run_completed(
    tmp_path: Path, store: Store, toy: ToyCapability, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_disk(*args: Any, **kwargs: Any) -> Path:
        raise PermissionError("report folder is read-only")

    monkeypatch.setattr(runner, "write_run_report", no_disk)
    with pytest.raises(PermissionError):
        runner.start_run(toy_config(tmp_path), store)
    run = store.list_runs()[0]
    assert run.status == "completed" and store.get_model("toy-model").receipt is not None


def test_the_runtime_reaches_capabilities_only_through_the_table() -> None:
    """No module of sampan.runtime imports a capability package; they are found by name (importlib strings)."""
    import ast

    runtime = Path(runner.__file__).parent
    offenders = []
    for path in sorted(runtime.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[:2] in (["sampan", "horizontal"], ["sampan", "vertical"], ["sampan", "synth"])
            ]
    assert offenders == []
