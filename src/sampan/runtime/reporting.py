"""Turn what the store holds about a run into its HTML report (regenerable at any time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sampan.metrics import CalibrationCurve
from sampan.report import PartySummary, ReportSection, RoundRecord, RunReport, write_report
from sampan.runtime.store import Store


def build_run_report(store: Store, run_id: str, *, baselines: dict[str, dict[str, float]] | None = None,
                     notes: list[str] | None = None, sections: list[ReportSection] | None = None) -> RunReport:
    run = store.get_run(run_id)
    info: dict[str, Any] = run.info or {}
    parties = [
        PartySummary(name, int(p["n_train"]), int(p["n_test"]), p.get("positive_rate"))
        for name, p in sorted((info.get("parties") or {}).items())
    ]
    rounds = [
        RoundRecord(round=r.round, global_metrics={**r.metrics.get("global", {}), "train_loss": r.metrics.get("train_loss")},
                    party_metrics=r.metrics.get("party", {}), seconds=r.seconds)
        for r in store.rounds(run_id)
    ]
    roc = info.get("roc")
    calibration = info.get("calibration")
    traffic = info.get("traffic") or []
    all_notes = list(notes or [])
    if run.error:
        all_notes.append(f"Last error: {run.error}")
    if traffic:
        sent = sum(t["bytes"] for t in traffic if t["direction"] == "sent")
        all_notes.append(f"Parties sent {sent:,} bytes in {sum(t['messages'] for t in traffic if t['direction'] == 'sent'):,} "
                         "wire messages (model updates, counts and score histograms only; no records).")
    return RunReport(
        run_id=run.run_id,
        title=f"{run.name} — {run.workflow} federated run",
        status=run.status,
        created_at=run.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        config=run.config,
        parties=parties,
        rounds=rounds,
        final_metrics={k: v for k, v in (info.get("final_metrics") or {}).items() if v is not None},
        roc=(roc[0], roc[1]) if roc else None,
        calibration=CalibrationCurve(*calibration) if calibration else None,
        baselines=baselines or {},
        notes=all_notes,
        sections=sections or [],
    )


def write_run_report(store: Store, run_id: str, report_dir: Path, **extra: Any) -> Path:
    return write_report(build_run_report(store, run_id, **extra), Path(report_dir) / f"{run_id}.html")
