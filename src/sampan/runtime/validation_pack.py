"""Fill a model-validation pack (`sampan.report.pack`) from what the store already holds (issue 13, item 9).

Nothing here asks a party for anything: lineage is what the parties released during the run (row counts as
released, the schema the run declared, hashes the registry computed), performance and calibration are the
run's pooled evaluation, stability is what monitoring recorded at the parties (`sampan.runtime.monitoring`),
and the privacy section is the run's receipt. Where the store has nothing, the pack says so and why, instead
of printing an empty chart or a 'nan'. `write_validation_pack` writes `<name>-v<version>.html` and `.pdf`.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sampan
from sampan.report.bank_alone import HEADERS as BANK_ALONE_HEADERS
from sampan.report.bank_alone import bank_alone_rows
from sampan.report.credit_tables import credit_sections
from sampan.report.pack import PackChart, PackSection, PackTable, ValidationPack, fmt, html_tables, write_pack_html
from sampan.runtime.backtest import MONITORING_EVENTS
from sampan.runtime.receipt import build_receipt
from sampan.runtime.store import Store
from sampan.runtime.store_schema import RegisteredModel, RunRow

__all__ = ["build_validation_pack", "code_version", "write_validation_pack"]

METRICS = (("auc", "AUC", "ranking: probability a random bad scores riskier than a random good"),
           ("ks", "KS", "largest gap between the bads' and goods' cumulative score distributions"),
           ("pr_auc", "PR-AUC", "precision-recall area (informative when bads are rare)"),
           ("brier", "Brier score", "mean squared error of the PD (lower is better)"),
           ("log_loss", "log loss", "mean negative log-likelihood of the PD (lower is better)"),
           ("ece", "ECE", "expected calibration error over 10 bins (lower is better)"))
SMALL_HOLDOUT, RARE_BADS = 500, 0.05


def code_version() -> dict[str, str]:
    """This package's version and, from a git checkout, its commit (at pack time)."""
    commit = "not a git checkout"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(sampan.__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
        if out.returncode == 0 and out.stdout.strip():
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": f"sampan {sampan.__version__}", "commit": commit}


def _sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _model_section(model: RegisteredModel, run: RunRow) -> PackSection:
    meta = model.meta or {}
    kind = (meta.get("model") or {}).get("kind") or ("vertical part of " + str(meta.get("party"))
                                                     if meta.get("party") else "not recorded")
    rows = [["model", f"{model.name} v{model.version}"], ["kind", str(kind)], ["workflow", run.workflow],
            ["training run", f"{run.run_id} ({run.name}), status {run.status}"],
            ["registered", model.created_at.strftime("%Y-%m-%d %H:%M UTC") if model.created_at else "not recorded"],
            ["features", fmt(len(meta.get("feature_names") or []))],
            ["decision threshold", fmt(meta.get("threshold")) if meta.get("threshold") is not None else "none"]]
    return PackSection("Model", "What is being validated: one registered model version and the run that trained it.",
                       tables=[PackTable(["item", "value"], rows)])


def _lineage_section(model: RegisteredModel, run: RunRow) -> PackSection:
    info, config = run.info or {}, run.config or {}
    parties = info.get("parties") or {}
    rows = [[p, fmt(v.get("n_train")), fmt(v.get("n_test")),
             fmt(v.get("positive_rate")) if v.get("positive_rate") is not None else "not released"]
            for p, v in sorted(parties.items()) if isinstance(v, dict)]
    source = config.get("source") or config.get("vertical_job", {}).get("source")
    datasets = (f"simulated from {source.get('kind')}" if isinstance(source, dict)
                else ", ".join(str(p.get("name")) for p in config.get("parties") or []) or "bound by each party")
    schema = config.get("schema") or config.get("vertical_job") or {}
    lineage = model.lineage or {}
    hashes = [["schema (declared)", _sha256(schema)], ["run configuration", str(lineage.get("config_sha256"))],
              ["model arrays", str(lineage.get("arrays_sha256"))]]
    fingerprints = info.get("fingerprints") or {}
    hashes += [[f"file at {party}", str(digest)] for party, digest in sorted(fingerprints.items())]
    paragraphs = [f"Datasets: {datasets}. Row counts are as each party released them (under DP, noised)."]
    if not fingerprints:
        paragraphs.append("No party released a file fingerprint in this run: the records never leave their owner, "
                          "and a file hash is released only when a party reports one.")
    return PackSection("Data lineage and fingerprints", "Which data built the model, as far as the parties "
                       "released it, so a validator can tie the model to its inputs.", paragraphs=paragraphs,
                       tables=[PackTable(["party", "training rows", "holdout rows", "positive rate"], rows),
                               PackTable(["what", "SHA-256"], hashes)])


def _code_section() -> PackSection:
    version = code_version()
    return PackSection("Code version", "Which code produced this pack (re-run the training with the same version "
                       "and seed to reproduce it).",
                       tables=[PackTable(["item", "value"], [["package", version["package"]],
                                                            ["git commit", version["commit"]]])])


def _performance_section(info: dict[str, Any]) -> PackSection:
    metrics = info.get("final_metrics") or {}
    rows = [[label, fmt(metrics.get(key)), why] for key, label, why in METRICS if metrics.get(key) is not None]
    tables = [PackTable(["metric", "value", "meaning"], rows)]
    baselines = (info.get("comparisons") or {}).get("baselines") or {}
    if baselines:
        tables.append(PackTable(["comparison", "AUC", "KS", "Brier"], [
            [name, fmt(b.get("auc")), fmt(b.get("ks")), fmt(b.get("brier"))] for name, b in baselines.items()]))
    paragraphs = [f"Evaluated on {fmt(int(metrics['n']))} holdout rows." if metrics.get("n") is not None else
                  "Evaluated on the parties' holdout rows."]
    for section in credit_sections(info):  # threshold, score bands, groups when the run computed them
        if section.title.startswith("Fairness"):
            continue
        texts, parsed = html_tables(section.html)
        paragraphs += [f"{section.title}: {t}" for t in texts[:1]]
        tables += [PackTable(t.headers, t.rows, caption=section.title) for t in parsed]
    roc = info.get("roc")
    charts = [PackChart("roc", "ROC curve (holdout)", list(roc[0]), list(roc[1]), label="model")] if roc else []
    return PackSection("Performance", "How well the model ranks and classifies applicants it never trained on.",
                       paragraphs=paragraphs, tables=tables, charts=charts)


def _out_of_time_section(config: dict[str, Any]) -> PackSection:
    column = (config.get("data") or {}).get("date_column")
    text = (f"The holdout at each party is its newest rows by {column!r} (computed at the party)." if column else
            "The run declared no date column ([data] date_column), so its holdout is a seeded random split, not an "
            "out-of-time sample: declare the column to hold out each party's newest rows.")
    return PackSection("Out-of-time validation", "Whether the model still works on later applicants than it was "
                       "trained on.", paragraphs=[text])


def _monitoring_tables(events: list[dict[str, Any]]) -> list[PackTable]:
    """Backtests and challengers recorded at the bank since training (`sampan monitor backtest|challenger`)."""
    def auc(block: Any) -> str:
        return fmt((block or {}).get("auc"))
    backtests = [[e["at"], fmt(e["detail"].get("rows")), auc(e["detail"].get("now")), auc(e["detail"].get("training"))]
                 for e in events if e["kind"] == "monitoring_backtest"][-10:]
    duels = [[e["at"], str(e["detail"].get("challenger")), fmt((e["detail"].get("agreement") or {}).get(
        "rank_correlation")), fmt((e["detail"].get("agreement") or {}).get("same_decision")),
              auc((e["detail"].get("metrics") or {}).get("champion")),
              auc((e["detail"].get("metrics") or {}).get("challenger"))]
             for e in events if e["kind"] == "monitoring_challenger"][-10:]
    tables = [PackTable(["measured", "rows", "AUC now", "AUC at training"], backtests, caption="Backtests")]
    tables += [PackTable(["measured", "challenger", "rank correlation", "same decision", "AUC champion",
                          "AUC challenger"], duels, caption="Challenger")]
    return [t for t in tables if t.rows]


def _stability_section(events: list[dict[str, Any]]) -> PackSection:
    why = ("Whether the scored population still looks like the training population (PSI < 0.1 stable, 0.1-0.25 "
           "watch, > 0.25 investigate), and how the model did once outcomes arrived.")
    drift = [e for e in events if e["kind"] == "monitoring_drift"]
    rows = [[e["at"], str(e["detail"].get("party")), fmt(e["detail"].get("score_psi")),
             str(e["detail"].get("status")), ", ".join(f"{k} {fmt(v, 3)}" for k, v in
                                                        sorted((e["detail"].get("feature_psi") or {}).items()))]
            for e in drift[-20:]]
    tables = [PackTable(["measured", "party", "score PSI", "status", "feature PSI"], rows)] if rows else []
    paragraphs = [] if rows else ["No drift has been measured yet. Training-row scores are not released (they are "
                                  "the DP unit), so stability is measured at each party against the training "
                                  "reference kept in the artifact: run `sampan monitor drift`."]
    return PackSection("Stability", why, paragraphs=paragraphs, tables=tables + _monitoring_tables(events))


def _calibration_section(info: dict[str, Any]) -> PackSection:
    curve = info.get("calibration")
    if not curve:
        return PackSection("Calibration", "Whether a PD of 5% means about 5 bads in 100.",
                           paragraphs=["The run recorded no calibration curve."])
    predicted, observed, counts = (list(map(float, c)) for c in curve)
    rows = [[fmt(p), fmt(o), fmt(int(n))] for p, o, n in zip(predicted, observed, counts, strict=False)]
    return PackSection("Calibration", "Whether a PD of 5% means about 5 bads in 100.",
                       paragraphs=[f"Expected calibration error: {fmt((info.get('final_metrics') or {}).get('ece'))}."],
                       tables=[PackTable(["mean predicted PD", "observed bad rate", "rows"], rows)],
                       charts=[PackChart("calibration", "Calibration (holdout)", predicted, observed, counts)])


def _fairness_section(info: dict[str, Any]) -> PackSection:
    why = "Whether approval and bad rates differ across declared groups at the chosen threshold."
    fairness = [s for s in credit_sections(info) if s.title.startswith("Fairness")]
    if not fairness:
        return PackSection("Fairness by group", why, paragraphs=[
            "The run declared no group columns ([evaluation] groups), so no per-group figures were computed."])
    texts, tables = html_tables(fairness[0].html)
    return PackSection("Fairness by group", why, paragraphs=texts, tables=tables)


def _bank_alone_section(info: dict[str, Any]) -> PackSection | None:
    summary = info.get("bank_alone")
    if not summary or not summary.get("banks"):
        return None
    return PackSection("Each bank alone vs the consortium", "What each bank gains from the consortium, measured on "
                       "its own holdout at the bank.", tables=[PackTable(list(BANK_ALONE_HEADERS),
                                                                         [list(r) for r in bank_alone_rows(summary)])])


def limitations(run: RunRow, receipt: dict[str, Any]) -> list[str]:
    """What the model cannot claim, read off the run: noise, small or rare samples, imputation, stops."""
    info, config = run.info or {}, run.config or {}
    out = []
    metrics = info.get("final_metrics") or {}
    n = metrics.get("n")
    if isinstance(n, (int, float)) and n < SMALL_HOLDOUT:
        out.append(f"Small holdout ({int(n)} rows): AUC and KS carry wide sampling error.")
    auc = metrics.get("auc")
    if isinstance(auc, (int, float)) and auc <= 0.55:
        out.append(f"The model ranks the holdout barely better than chance (AUC {auc:.3f}): do not use it to decide.")
    rate = metrics.get("positive_rate")
    if isinstance(rate, (int, float)) and 0 < rate < RARE_BADS:
        out.append(f"Rare bads ({100 * rate:.1f}% of holdout rows): precision, recall and bad rates by band rest on "
                   "few cases.")
    privacy = config.get("privacy")
    if privacy:
        spent = {p: v.get("epsilon_spent") for p, v in (receipt.get("parties") or {}).items() if isinstance(v, dict)}
        out.append("Differential privacy: noise was added to training (noise multipliers "
                   f"{json.dumps(receipt.get('noise_multipliers') or {}, sort_keys=True)}); epsilon spent per party "
                   f"{json.dumps({k: round(v, 3) for k, v in spent.items() if isinstance(v, (int, float))})}. Accuracy "
                   "is lower than an exact model's and varies with the noise drawn.")
    suppressed = [r for r in (info.get("groups") or {}).get("rows") or [] if r.get("suppressed")]
    if suppressed:
        out.append(f"{len(suppressed)} group(s) were too small to report and are suppressed.")
    missing = [f.get("name") for f in (config.get("schema") or {}).get("features") or []
               if isinstance(f, dict) and (f.get("missing") or f.get("impute"))]
    if missing:
        out.append(f"Missing values were imputed or flagged for {', '.join(map(str, missing))}: validate the "
                   "imputation policy against the bank's own.")
    if info.get("budget_stop"):
        out.append(f"Training stopped early on the privacy budget: {info['budget_stop']}")
    if not (config.get("data") or {}).get("date_column"):
        out.append("No out-of-time test: the holdout is a random split.")
    return out or ["None found in the run's record."]


def _privacy_section(receipt: dict[str, Any]) -> PackSection:
    parties = receipt.get("parties") or {}
    ledger = [[p, fmt(v.get("epsilon_spent")), ", ".join(f"{level} {fmt(float(eps), 3)}" for level, eps in
                                                         sorted((v.get("epsilon_by_level") or {}).items()))]
              for p, v in sorted(parties.items()) if isinstance(v, dict) and v.get("epsilon_spent") is not None]
    fields = [[m["sender"], m["kind"], m["field"], m["protection"]] for m in receipt.get("messages") or []
              if isinstance(m, dict) and "field" in m]
    tables = ([PackTable(["party", "epsilon spent", "by level"], ledger)] if ledger else [])
    tables += [PackTable(["sender", "message", "field", "protection"], fields)] if fields else []
    later = [[r["party"], r["at"], r["release"], r["protection"]] for r in receipt.get("after_training") or []]
    tables += [PackTable(["party", "at", "released after training", "protection"], later)] if later else []
    dp = "on" if receipt.get("differential_privacy") else "off (every field below is revealed as listed)"
    return PackSection("Privacy receipt", "What each party revealed to build the model, and under which protection.",
                       paragraphs=[f"Differential privacy: {dp}.", str(receipt.get("threat_model") or "")],
                       tables=tables)


def build_validation_pack(store: Store, name: str, version: int | None = None) -> ValidationPack:
    """The pack of one registered model (the latest version by default); raises StoreError if absent."""
    model = store.get_model(name, version)
    run = store.get_run(model.run_id)
    info = run.info or {}
    receipt = build_receipt(store, run.run_id)
    events = [{"kind": e.kind, "at": e.at.strftime("%Y-%m-%d %H:%M"), "detail": e.detail}
              for e in store.events(run.run_id) if e.kind in MONITORING_EVENTS]
    sections = [_model_section(model, run), _lineage_section(model, run), _code_section(),
                _performance_section(info), _out_of_time_section(run.config or {}), _stability_section(events),
                _calibration_section(info), _fairness_section(info)]
    alone = _bank_alone_section(info)
    sections += [alone] if alone is not None else []
    sections += [PackSection("Limitations", "What this model cannot claim, listed from the run's own record.",
                             paragraphs=limitations(run, receipt)), _privacy_section(receipt)]
    return ValidationPack(model.name, model.version, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), sections)


def safe_file_stem(name: str) -> str:
    """A model name as one file name: a run name is free text (it may hold '/', '..'), a pack stays in --out."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "model"
    return stem[:120]


def write_validation_pack(store: Store, name: str, out_dir: str | Path, version: int | None = None,
                          pdf: bool = True) -> list[Path]:
    """Write `<name>-v<version>.html` (and `.pdf`) into ``out_dir``; returns the paths written."""
    pack = build_validation_pack(store, name, version)
    stem = Path(out_dir) / f"{safe_file_stem(pack.model)}-v{pack.version}"
    paths = [write_pack_html(pack, stem.with_suffix(".html"))]
    if pdf:
        from sampan.report.pack_pdf import write_pack_pdf  # reportlab only when a PDF is asked for
        paths.append(write_pack_pdf(pack, stem.with_suffix(".pdf")))
    return paths
