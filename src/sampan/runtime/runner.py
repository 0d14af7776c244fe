"""The one runner: every workflow's run life, in simulation and in deployment alike.

`start_run` / `resume_run` own what is the same for every capability: create the run in the store,
mark it running, build an in-process federation when no transport is given (the capability's
``simulate`` + ``party_app``), hand the workflow a `RunContext` (transport, a `StoreRecorder`,
progress, cancel check), then register the models it returns, store its report material, attach
the privacy receipt and write the report. Nothing here knows a capability: the workflow name in
the config (``run.workflow``) picks one from `sampan.runtime.capabilities`, and the deployed
coordinator calls these same functions with its gRPC transport.

Terminal states: completed (also after a budget stop, which the info notes), cancelled (the
workflow raised `RunCancelled` after ``cancelled()`` turned true), interrupted (Ctrl-C), failed
(any other error, recorded with its message). Each is re-raised to the caller except completed.
Completed is final: a receipt or report that cannot be written afterwards raises, but does not turn
the run (whose models are registered) into a failed one; both can be regenerated from the store.
A transport the runner built is closed by it; one passed in (a deployment's) belongs to the caller.

Progress: a workflow reports through ``ctx.progress(stage, info)``. A `ProgressHook` object (the
CLI's progress bars) is adapted by `hook_progress`, which understands these stages:
``run_started`` {run_id, total_rounds, resumed_from}, ``round_started`` {round, parties},
``party_done`` {party}, ``round`` {round, seconds, parties, train_loss, global, party}; others are
ignored by the hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.compute import Engine, current_engine, make_engine, use_engine
from sampan.config import ConfigError, RunConfig, parse_config
from sampan.core.capability import Capability
from sampan.core.transport import Transport
from sampan.core.workflow import Progress, RunCancelled, RunContext, Workflow, WorkflowResult
from sampan.runtime.capabilities import get_capability
from sampan.runtime.federation import build_transport
from sampan.runtime.progress import ProgressHook, RoundResult
from sampan.runtime.receipt import build_receipt, stored_traffic
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.reporting import write_run_report
from sampan.runtime.seeds import fresh_seed
from sampan.runtime.store import Store, StoreError

__all__ = ["RESUMABLE", "FinishedRun", "hook_progress", "resume_run", "start_run",
           "workflow_name"]

RESUMABLE = frozenset({"created", "running", "interrupted", "failed"})
DEFAULT_WORKFLOW = "horizontal"


@dataclass(frozen=True)
class FinishedRun:
    """A completed run. ``result`` is the workflow's `WorkflowResult`; ``outcome`` is its typed outcome
    for Python callers (e.g. the horizontal `RunOutcome` with params and run_id) when it gave one, else
    the result itself. ``model_version`` is None when the coordinator registered no model (vertical
    model parts stay at their parties)."""

    run_id: str
    result: WorkflowResult
    report_path: Path | None
    model_name: str | None
    model_version: int | None

    @property
    def outcome(self) -> Any:
        return self.result.outcome if self.result.outcome is not None else self.result

    @property
    def final_metrics(self) -> dict[str, Any]:
        return self.result.final_metrics


def workflow_name(config: Any) -> str:
    """``run.workflow`` of the config (horizontal when the config does not name one)."""
    return str(getattr(config.run, "workflow", None) or DEFAULT_WORKFLOW)


def start_run(config: RunConfig, store: Store, progress: ProgressHook | Progress | None = None, *,
              transport: Transport | None = None, cancelled: Callable[[], bool] | None = None) -> FinishedRun:
    """Create a run for ``config`` and drive it to its end (see the module docstring for terminal states)."""
    name = workflow_name(config)
    capability = get_capability(name)  # an unknown workflow fails here, before any run row exists
    workflow = capability.workflow(config)
    seed = config.run.seed if config.run.seed is not None else fresh_seed()
    run_id = store.create_run(name=config.run.name, workflow=name, seed=seed, config=config.to_dict(),
                              total_rounds=workflow.total_rounds(config))
    return _execute(config, store, run_id, seed, capability, workflow, progress, transport, cancelled)


def resume_run(store: Store, run_id: str, progress: ProgressHook | Progress | None = None, *,
               transport: Transport | None = None, cancelled: Callable[[], bool] | None = None,
               config: Any = None) -> FinishedRun:
    """Continue a run from its last checkpoint (a `created` run starts from the beginning). ``config``: the
    run's parsed config when the caller parses the stored one itself (a coordinator: deployed RunSpec)."""
    row = store.get_run(run_id)
    if row.status not in RESUMABLE:
        raise StoreError(f"run {run_id!r} is {row.status}; only runs that are {', '.join(sorted(RESUMABLE))} "
                         "can be resumed")
    if config is None:
        config = parse_config(row.config, source=f"stored config of run {run_id}")
    capability = get_capability(row.workflow)
    return _execute(config, store, run_id, int(row.seed), capability, capability.workflow(config), progress,
                    transport, cancelled)


def _execute(config: Any, store: Store, run_id: str, seed: int, capability: Capability, workflow: Workflow,
             progress: ProgressHook | Progress | None, transport: Transport | None,
             cancelled: Callable[[], bool] | None) -> FinishedRun:
    owned = transport is None
    owned_engine = _simulation_engine(config) if owned else None  # None: the caller's engine (local by default)
    engine: Engine = owned_engine or current_engine()
    try:
        store.set_status(run_id, "running")
        if transport is None:
            with use_engine(engine):
                transport = build_transport(capability, config, seed, registry=store)
        ctx = RunContext(run_id=run_id, seed=seed, config=config, transport=transport,
                         recorder=StoreRecorder(store, run_id), progress=hook_progress(progress),
                         cancelled=cancelled or (lambda: False))
        with use_engine(engine):  # a simulation's parties share the run's [compute] engine (in this process)
            result = workflow.run(ctx)
        # every process's traffic (a resumed run's transport only counted its own), from the stored events
        traffic_log = getattr(transport, "traffic", None)
        traffic = stored_traffic(store, run_id) or (traffic_log.summary() if traffic_log is not None else [])
        registered = _complete(store, run_id, result, traffic)
    except RunCancelled as exc:
        store.set_status(run_id, "cancelled", error=str(exc) or "cancelled by the operator")
        raise
    except KeyboardInterrupt:
        store.set_status(run_id, "interrupted", error="interrupted by user; resume with `sampan run --resume`")
        raise
    except Exception as exc:
        store.set_status(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if owned and transport is not None:
            transport.close()
        if owned_engine is not None:
            owned_engine.close()
    # the run is completed from here on: a receipt or report that cannot be written raises, but leaves it so
    return _publish(config, store, run_id, result, registered)


def _simulation_engine(config: Any) -> Engine | None:
    """The engine of a simulation's [compute] table (None without one): its parties live in this process, so Ray
    needs run.workers 1."""
    settings = getattr(config, "compute", None)
    if settings is None:
        return None
    if settings and settings.engine != "local" and int(getattr(config.run, "workers", 1) or 1) > 1:
        raise ConfigError("[compute] engine = 'ray' runs the simulated parties' blocks from this process; "
                          "set run.workers = 1 (forked party processes cannot share one Ray runtime)")
    return make_engine(settings)


def _complete(store: Store, run_id: str, result: WorkflowResult,
              traffic: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Register the workflow's models, store its info and mark the run completed; (name, version) per model."""
    registered = [(artifact.name, store.register_model(artifact.name, run_id, artifact.arrays, artifact.meta))
                  for artifact in result.models]
    info: dict[str, Any] = {**result.info, "final_metrics": result.final_metrics, "traffic": traffic,
                            "budget_stop": result.budget_stop}
    if registered:
        info["model"] = {"name": registered[0][0], "version": registered[0][1]}
        if len(registered) > 1:
            info["models"] = [{"name": n, "version": v} for n, v in registered]
    store.set_status(run_id, "completed", info=info)
    return registered


def _publish(config: Any, store: Store, run_id: str, result: WorkflowResult,
             registered: list[tuple[str, int]]) -> FinishedRun:
    """Attach the privacy receipt to each registered model; write the report and receipt files."""
    if registered:
        receipt = build_receipt(store, run_id)
        for model, version in registered:
            store.attach_receipt(model, version, receipt)
    report_dir = getattr(config.run, "report_dir", None)
    report_path = write_run_report(store, run_id, Path(report_dir)) if report_dir else None
    if not registered:
        return FinishedRun(run_id, result, report_path, None, None)
    return FinishedRun(run_id, result, report_path, *registered[0])


def hook_progress(progress: ProgressHook | Progress | None) -> Progress:
    """The workflow-side `Progress` callable for a CLI `ProgressHook` (or a callable, passed through)."""
    if progress is None:
        return lambda stage, info: None
    if not hasattr(progress, "round_finished"):
        return progress
    hook: ProgressHook = progress  # type: ignore[assignment]

    def forward(stage: str, info: Mapping[str, Any]) -> None:
        if stage == "run_started":
            hook.run_started(str(info.get("run_id", "")), int(info.get("total_rounds", 0)),
                             int(info.get("resumed_from", 0)))
        elif stage == "round_started":
            parties = info.get("parties", 0)
            hook.round_started(int(info["round"]), len(parties) if isinstance(parties, (list, tuple)) else int(parties))
        elif stage == "party_done":
            hook.party_done(str(info["party"]))
        elif stage == "warning" and hasattr(hook, "warning"):  # e.g. destructive DP1 noise (issue 13)
            hook.warning(str(info.get("message", "")))
        elif stage == "round":
            loss = info.get("train_loss")
            hook.round_finished(RoundResult(
                round=int(info["round"]), seconds=float(info.get("seconds", 0.0)),
                parties=list(info.get("parties") or []), train_loss=math.nan if loss is None else float(loss),
                global_metrics=dict(info.get("global") or {}), party_metrics=dict(info.get("party") or {})))
    return forward
