"""Turn what the store holds about a run into its HTML report (regenerable at any time).

One entry point for every workflow: `write_run_report` picks the report builder registered for the
run's workflow in `REPORT_BUILDERS` (a ``"module:function"`` string, imported lazily so the runtime
never imports a protocol package), else the generic `build_run_report`, which works from any run's
stored info. A builder takes ``(store, run_id)`` and returns a `RunReport` (or a list of extra
`ReportSection`s for the generic report); the privacy receipt is added to every report here.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from sampan.metrics import CalibrationCurve
from sampan.report import PartySummary, ReportSection, RoundRecord, RunReport, write_report
from sampan.report.bank_alone import bank_alone_section
from sampan.report.content import importance_section
from sampan.report.credit_tables import credit_sections
from sampan.runtime.receipt import build_receipt, receipt_section, write_receipt
from sampan.runtime.store import Store

log = logging.getLogger(__name__)

# workflow name -> "module:function(store, run_id) -> RunReport | list[ReportSection]"
REPORT_BUILDERS: dict[str, str] = {
    "vertical": "sampan.runtime.reports_vertical:build_vertical_report",
    "checks": "sampan.checks.report:report_sections",
}


def build_run_report(store: Store, run_id: str, *, baselines: dict[str, dict[str, float]] | None = None,
                     notes: list[str] | None = None, sections: list[ReportSection] | None = None) -> RunReport:
    run = store.get_run(run_id)
    info: dict[str, Any] = run.info or {}
    parties = [
        PartySummary(name, int(p.get("n_train") or 0), int(p.get("n_test") or 0), p.get("positive_rate"))
        for name, p in sorted((info.get("parties") or {}).items()) if isinstance(p, dict)
    ]
    rounds = [
        RoundRecord(round=r.round,
                    global_metrics={**r.metrics.get("global", {}), "train_loss": r.metrics.get("train_loss")},
                    party_metrics=r.metrics.get("party", {}), seconds=r.seconds)
        for r in store.rounds(run_id)
    ]
    comparisons = info.get("comparisons") or {}
    baselines = {**(comparisons.get("baselines") or {}), **(baselines or {})}
    notes = [*(comparisons.get("notes") or []), *(notes or [])]
    sections = [*credit_sections(info), *(sections or [])]  # threshold, score bands, groups (issue 13)
    if info.get("gbdt_importance"):  # horizontal GBDT: each feature's share of the split gain (issue 13)
        sections = [*sections, importance_section("horizontal GBDT", info["gbdt_importance"])]
    if info.get("bank_alone"):  # each bank alone vs the consortium, measured at each bank (issue 13)
        sections = [bank_alone_section(info["bank_alone"]), *sections]
    if comparisons.get("alone"):
        sections = [per_party_section(comparisons.get("federated_by_party") or {}, comparisons["alone"]),
                    *(sections or [])]
    roc = info.get("roc")
    calibration = info.get("calibration")
    traffic = info.get("traffic") or []
    all_notes = list(notes or [])
    if run.error:
        all_notes.append(f"Last error: {run.error}")
    if (run.config or {}).get("privacy") and run.workflow == "horizontal":
        all_notes.append("Differential privacy: no training loss and no per-round evaluation are released; the model "
                         "is evaluated once, after the last round, on holdout rows (outside the DP unit), so the "
                         "per-round curves hold that single point.")
    if traffic:
        sent = sum(t["bytes"] for t in traffic if t["direction"] == "sent")
        messages = sum(t["messages"] for t in traffic if t["direction"] == "sent")
        all_notes.append(f"Parties sent {sent:,} bytes in {messages:,} "
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


def per_party_section(federated: dict[str, dict[str, Any]], alone: dict[str, dict[str, float]]) -> ReportSection:
    """A table: each party's own model vs the federated model, both on that party's holdout rows."""
    rows = []
    for party in sorted(alone):
        a, f = alone[party], federated.get(party, {})
        fed_auc = f.get("auc")
        cells = [escape(party), f"{a['auc']:.4f}", f"{fed_auc:.4f}" if fed_auc is not None else "–",
                 f"{fed_auc - a['auc']:+.4f}" if fed_auc is not None else "–"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    html = ("<p>What each party gains from the consortium: its own model (trained on its rows alone, same "
            "training budget) against the federated model, both scored on the party's own holdout rows.</p>"
            "<table><thead><tr><th>party</th><th>AUC alone</th><th>AUC federated</th><th>gain</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
    return ReportSection("Each party alone vs the consortium", html)


def report_builder(workflow: str) -> Callable[[Store, str], RunReport | list[ReportSection]] | None:
    """The builder registered for ``workflow``, or None (the generic report)."""
    target = REPORT_BUILDERS.get(workflow)
    if target is None:
        return None
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the builder's own dependency is missing: say so
        log.warning("no report builder module %s for workflow %r; writing the generic report", module_name, workflow)
        return None
    builder = getattr(module, attribute, None)
    if builder is None:
        raise AttributeError(f"report builder {target!r} for workflow {workflow!r}: {module_name} has no {attribute!r}")
    return builder


def write_run_report(store: Store, run_id: str, report_dir: Path, **extra: Any) -> Path:
    """Write the HTML report and, beside it, the run's privacy receipt (JSON); both from the store.

    ``extra`` (baselines, notes, sections) goes to the generic report; a workflow's own builder gets
    ``sections`` appended to what it returns."""
    receipt = build_receipt(store, run_id)
    write_receipt(receipt, Path(report_dir) / f"{run_id}.receipt.json")
    builder = report_builder(store.get_run(run_id).workflow)
    built = builder(store, run_id) if builder is not None else None
    if isinstance(built, RunReport):
        built.sections = [receipt_section(receipt), *built.sections, *(extra.get("sections") or [])]
        report = built
    else:
        extra["sections"] = [receipt_section(receipt), *(built or []), *(extra.get("sections") or [])]
        report = build_run_report(store, run_id, **extra)
    return write_report(report, Path(report_dir) / f"{run_id}.html")
