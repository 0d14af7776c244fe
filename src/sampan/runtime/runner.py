"""Run lifecycle: start a run from a config, resume it by id, finish it (model registry + report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sampan.config import RunConfig, parse_config
from sampan.runtime.federation import build_inprocess_federation
from sampan.runtime.horizontal_workflow import HorizontalWorkflow, RunOutcome
from sampan.runtime.progress import ProgressHook
from sampan.runtime.reporting import write_run_report
from sampan.runtime.seeds import fresh_seed
from sampan.runtime.receipt import build_receipt, stored_traffic
from sampan.runtime.store import Store, StoreError

RESUMABLE = {"created", "running", "interrupted", "failed"}


@dataclass(frozen=True)
class FinishedRun:
    outcome: RunOutcome
    report_path: Path
    model_name: str
    model_version: int


def _downsample(xs: np.ndarray, ys: np.ndarray, limit: int = 400) -> tuple[list[float], list[float]]:
    if len(xs) > limit:
        idx = np.unique(np.linspace(0, len(xs) - 1, limit).round().astype(int))
        xs, ys = xs[idx], ys[idx]
    return [round(float(x), 6) for x in xs], [round(float(y), 6) for y in ys]


def start_run(config: RunConfig, store: Store, progress: ProgressHook | None = None) -> FinishedRun:
    seed = config.run.seed if config.run.seed is not None else fresh_seed()
    run_id = store.create_run(name=config.run.name, workflow="horizontal", seed=seed,
                              config=config.to_dict(), total_rounds=config.run.rounds)
    return _execute(config, store, run_id, seed, progress)


def resume_run(store: Store, run_id: str, progress: ProgressHook | None = None) -> FinishedRun:
    row = store.get_run(run_id)
    if row.status not in RESUMABLE:
        raise StoreError(f"run {run_id!r} is {row.status}; only {sorted(RESUMABLE)} runs can be resumed")
    config = parse_config(row.config, source=f"stored config of run {run_id}")
    return _execute(config, store, run_id, int(row.seed), progress)


def _execute(config: RunConfig, store: Store, run_id: str, seed: int, progress: ProgressHook | None) -> FinishedRun:
    transport = None
    try:
        transport, _ = build_inprocess_federation(config, seed)
        outcome = HorizontalWorkflow(transport, store, run_id, config, seed, progress).run()
    except KeyboardInterrupt:
        store.set_status(run_id, "interrupted", error="interrupted by user; resume with `sampan run --resume`")
        raise
    except Exception as exc:
        store.set_status(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if transport is not None:
            transport.close()
    # every process's traffic (a resumed run's transport only counted its own), from the stored events
    return _finish(config, store, outcome, stored_traffic(store, run_id) or transport.traffic.summary())


def _finish(config: RunConfig, store: Store, outcome: RunOutcome, traffic: list[dict[str, Any]]) -> FinishedRun:
    info: dict[str, Any] = {"final_metrics": outcome.final_metrics, "traffic": traffic,
                            "privacy": outcome.privacy, "budget_stop": outcome.budget_stop}
    if outcome.histogram is not None and 0 < outcome.histogram.positive_rate < 1:
        fpr, tpr, _ = outcome.histogram.roc_curve()
        info["roc"] = _downsample(np.asarray(fpr), np.asarray(tpr))
        cal = outcome.histogram.calibration(10)
        info["calibration"] = [list(map(float, cal.mean_predicted)), list(map(float, cal.fraction_positive)),
                               list(map(int, cal.counts))]
    arrays = {"params": outcome.params, **{f"scaler.{k}": v for k, v in outcome.scaler.items()}}
    meta = {"model": outcome.model.config(), "metrics": outcome.final_metrics,
            "feature_names": store.get_run(outcome.run_id).info.get("feature_names", [])}
    version = store.register_model(config.run.name, outcome.run_id, arrays, meta)
    info["model"] = {"name": config.run.name, "version": version}
    store.set_status(outcome.run_id, "completed", info=info)
    store.attach_receipt(config.run.name, version, build_receipt(store, outcome.run_id))
    report_path = write_run_report(store, outcome.run_id, Path(config.run.report_dir))
    return FinishedRun(outcome, report_path, config.run.name, version)
