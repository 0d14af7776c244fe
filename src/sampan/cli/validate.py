"""`sampan models pack NAME --out DIR` (validation pack) and `sampan monitor drift|backtest|challenger`.

The pack is built from the store alone (`sampan.runtime.validation_pack`). Monitoring runs at the bank, on its
own files (`sampan.runtime.monitoring`, `sampan.runtime.backtest`); results go to the model's signed audit log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from sampan.cli.error_path import ErrorHandlingGroup

console = Console()
monitor_app = typer.Typer(help="Monitor a served model at the bank: drift (PSI), backtests when outcomes arrive, a "
                          "challenger.",
                          no_args_is_help=True, cls=ErrorHandlingGroup)
StoreOption = typer.Option(None, "--store", help="SQLAlchemy URL of the store (default: $SAMPAN_STORE or the "
                           "default SQLite file).")
ModelOption = typer.Option(..., "--model", help="NAME or NAME@VERSION of a registered horizontal model.")


def _store(url: str | None) -> Any:
    from sampan.runtime.store import DEFAULT_STORE_URL, Store

    return Store.open(url or os.environ.get("SAMPAN_STORE") or DEFAULT_STORE_URL)


def register_pack_command(models_app: typer.Typer) -> None:
    """Mount `models pack` on the registry's sub-app."""

    @models_app.command("pack")
    def models_pack(name: str, out: Path = typer.Option(Path("sampan-packs"), "--out", help="Folder to write into."),
                    version: int | None = typer.Option(None, help="Default: the latest."),
                    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also write the PDF (needs reportlab)."),
                    store: str | None = StoreOption) -> None:
        """Write a model-validation pack (HTML and PDF): lineage, code version, performance, stability,
        calibration, fairness, limitations and the privacy receipt."""
        from sampan.runtime.validation_pack import write_validation_pack

        for path in write_validation_pack(_store(store), name, out, version, pdf=pdf):
            console.print(f"Validation pack: [bold]{path.resolve()}[/]")


def _write(out: Path | None, result: dict[str, Any]) -> None:
    if out is not None:
        from sampan.files import atomic_write_json

        atomic_write_json(out, result, indent=2, sort_keys=True, default=str)
        console.print(f"Written: [bold]{out.resolve()}[/]")


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


@monitor_app.command("drift")
def drift(model: str = ModelOption,
          reference: Path = typer.Option(..., "--reference", help="The bank's training rows (CSV, model columns)."),
          data: Path = typer.Option(..., "--data", help="The current population (CSV, model columns)."),
          party: str = typer.Option(..., "--party", help="This bank's party name (its ledger and the release)."),
          noise: float | None = typer.Option(None, "--noise", help="Release the counts under DP: Gaussian noise "
                                             "multiplier (charged to --ledger first)."),
          ledger: Path | None = typer.Option(None, "--ledger", help="The party's own ledger file (DP releases)."),
          epsilon: float = typer.Option(10.0, "--epsilon", help="Budget of a new ledger file (DP releases)."),
          out: Path | None = typer.Option(None, "--out", help="Write the release (what may leave the bank) as JSON."),
          store: str | None = StoreOption) -> None:
    """Score and feature drift (PSI) at this bank, against bins fixed at training."""
    from sampan.privacy.ledger import Budget
    from sampan.runtime.backtest import read_columns
    from sampan.runtime.monitoring import DriftReference, drift_release
    from sampan.runtime.scorers import load_scorer, parse_model_ref

    run_store = _store(store)
    if noise is not None and ledger is not None and not ledger.exists():  # review R13-DR-1: say what it does not hold
        console.print(f"[yellow]New ledger file {ledger} (budget epsilon {epsilon:g}): it does not hold this bank's "
                      "other releases (its agent's <state_dir>/privacy-ledger.json, the training run's charges); "
                      "the release is listed in the model run's receipt and validation pack.[/]")
    scorer = load_scorer(run_store, model)
    entry = run_store.get_model(*parse_model_ref(model))
    names = [str(n) for n in entry.meta.get("feature_names") or []]
    frames = {}
    for label, path in (("reference", reference), ("current", data)):
        columns = read_columns(path)
        X = scorer.predictor.encode(columns, where=str(path))
        frames[label] = ({n: X[:, i] for i, n in enumerate(names)},
                         [r.pd for r in scorer.score_columns(columns, where=str(path))])
    release = drift_release(
        party, DriftReference.from_model(entry.arrays, entry.meta, run_store.get_run(entry.run_id).info or {}),
        reference_scores=frames["reference"][1], current_scores=frames["current"][1],
        reference_X=frames["reference"][0], current_X=frames["current"][0], noise_multiplier=noise,
        ledger_path=ledger, budget=Budget(epsilon, 1e-5))
    result = release.as_dict()
    run_store.log_event(entry.run_id, "monitoring_drift", {k: result[k] for k in (  # the run's receipt lists it
        "party", "score_psi", "status", "feature_psi", "noise_multiplier", "charged", "receipt")})
    table = Table(title=f"Drift at {party}: {entry.name} v{entry.version} ({result['status']})")
    for col in ("what", "PSI"):
        table.add_column(col)
    table.add_row("score", _fmt(result["score_psi"]))
    for feature, value in sorted(result["feature_psi"].items(), key=lambda kv: -(kv[1] or 0)):
        table.add_row(feature, _fmt(value))
    console.print(table)
    _write(out, result)


@monitor_app.command("backtest")
def backtest(model: str = ModelOption,
             outcomes: Path = typer.Option(..., "--outcomes", help="The scored population with its outcome column."),
             label: str | None = typer.Option(None, "--label", help="Outcome column (default: the training label)."),
             out: Path | None = typer.Option(None, "--out", help="Write the result as JSON."),
             store: str | None = StoreOption) -> None:
    """AUC, KS and bad rate by score band on the scored population, beside the model at training."""
    from sampan.runtime.backtest import backtest as run_backtest

    result = run_backtest(_store(store), model, outcomes, label=label)
    table = Table(title=f"Backtest of {result['model']} v{result['version']} on {result['rows']} rows")
    for col in ("metric", "now", "at training"):
        table.add_column(col)
    for key in ("auc", "ks", "brier", "positive_rate"):
        table.add_row(key, _fmt(result["now"].get(key)), _fmt(result["training"].get(key)))
    console.print(table)
    bands = Table(title="Bad rate by score band (bands fixed at training)")
    for col in ("PD from", "PD to", "rows", "bads", "bad rate", "at training"):
        bands.add_column(col)
    for b in result["bands"]:
        bands.add_row(_fmt(b["pd_from"]), _fmt(b["pd_to"]), str(b["count"]), str(b["bads"]), _fmt(b["bad_rate"]),
                      _fmt(b["training_bad_rate"]))
    console.print(bands)
    _write(out, result)


@monitor_app.command("challenger")
def challenger(model: str = ModelOption,
               challenger_model: str = typer.Option(..., "--challenger", help="NAME[@VERSION] of the challenger."),
               data: Path = typer.Option(..., "--data", help="One population both models score (CSV)."),
               label: str | None = typer.Option(None, "--label", help="Outcome column, if the file has one."),
               out: Path | None = typer.Option(None, "--out", help="Write the result as JSON."),
               store: str | None = StoreOption) -> None:
    """The champion and a challenger side by side on the same population."""
    from sampan.runtime.backtest import challenge

    result = challenge(_store(store), model, challenger_model, data, label=label)
    console.print_json(json.dumps(result, default=str))
    _write(out, result)
