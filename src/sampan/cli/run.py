"""`sampan demo | run | audit | runs ...`: training runs in this process, and the run store (`score`: cli/score.py).

Every command reads the run store from --store, else $SAMPAN_STORE, else the run config, else
sqlite:///sampan-runs/sampan.db in the current folder. Heavy modules (numpy, pydantic, the store,
the workflows) are imported inside the commands, so `sampan --help` stays fast; errors go through
the CLI's one error path (`sampan.cli.error_path`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from sampan.cli.error_path import fail, treat_as_usage

if TYPE_CHECKING:
    from rich.table import Table

    from sampan.config import RunConfig
    from sampan.runtime.runner import FinishedRun
    from sampan.runtime.store import Store

app = typer.Typer(help="Training runs in this process: demo, run, audit.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
runs_app = typer.Typer(help="Inspect runs: list, show, report (run store); status, cancel, attach (coordinator).",
                        no_args_is_help=True)

DEFAULT_STORE_URL = "sqlite:///sampan-runs/sampan.db"  # = sampan.runtime.store.DEFAULT_STORE_URL (a test checks)
StoreOption = typer.Option(None, "--store", help="SQLAlchemy URL of the run store (default: $SAMPAN_STORE or "
                           f"{DEFAULT_STORE_URL}).")


console = Console()


def _store(url: str | None, config: RunConfig | None = None) -> Store:
    from sampan.runtime.store import Store

    return Store.open(url or os.environ.get("SAMPAN_STORE") or (config.run.store if config else None))


def _result_table(finished: FinishedRun, baselines: dict[str, dict[str, float]]) -> Table:
    from rich.table import Table

    table = Table(title="Test-set results (all parties' holdout rows)")
    table.add_column("model")
    for metric in ("auc", "pr_auc", "ks", "brier", "log_loss"):
        table.add_column(metric.upper().replace("_", "-"), justify="right")
    rows = {"federated (Sampan)": finished.final_metrics, **baselines}
    for name, metrics in rows.items():
        table.add_row(name, *(f"{metrics[m]:.4f}" if metrics.get(m) is not None else "–"
                              for m in ("auc", "pr_auc", "ks", "brier", "log_loss")))
    return table


def _bank_alone_table(summary: dict[str, Any]) -> Table:
    from rich.table import Table

    from sampan.report.bank_alone import HEADERS, bank_alone_rows

    table = Table(title="Each bank alone vs the consortium (each bank's own holdout, computed at the bank)")
    for col in HEADERS:
        table.add_column(col, justify="right" if col != "bank" else "left")
    for row in bank_alone_rows(summary):
        table.add_row(*row)
    return table


def _per_party_table(federated: dict[str, dict[str, float]], alone: dict[str, dict[str, float]],
                     private: bool = False) -> Table:
    from rich.table import Table

    title = "Each bank on its own holdout rows: consortium model vs the bank's own model"
    table = Table(title=title + (" (the bank's own model is non-private)" if private else ""))
    for col in ("bank", "AUC alone", "AUC federated", "gain", "KS alone", "KS federated"):
        table.add_column(col, justify="right" if col != "bank" else "left")
    for party in sorted(alone):
        a, f = alone[party], federated.get(party, {})
        gain = (f["auc"] - a["auc"]) if f.get("auc") is not None else None
        table.add_row(party, f"{a['auc']:.4f}", f"{f['auc']:.4f}" if f.get("auc") is not None else "–",
                      f"{gain:+.4f}" if gain is not None else "–", f"{a['ks']:.4f}",
                      f"{f['ks']:.4f}" if f.get("ks") is not None else "–")
    return table


@app.command()
def demo(
    rounds: int = typer.Option(15, min=1, help="Federated rounds."),
    model: str = typer.Option("logistic", help="logistic, mlp or gbdt (histogram gradient-boosted trees)."),
    seed: int | None = typer.Option(None, help="Fix all randomness of the run (reproducible)."),
    store: str | None = StoreOption,
    report_dir: Path = typer.Option(Path("sampan-reports"), help="Where the HTML report is written."),
    epsilon: float | None = typer.Option(
        None, min=0.01, help="Turn on DP-SGD in every bank with this per-bank budget (record-level, δ = 1e-5); "
        "noise is calibrated to spend it by the last round."),
    vertical: bool = typer.Option(
        False, "--vertical", help="The vertical scenario instead: a bank, a payment provider and a delivery platform "
        "(same SMEs, different features): PSI alignment, secure vertical LR, joint scoring."),
) -> None:
    """Train an SME default model across three simulated Hong Kong banks (built-in consortium, FedAvg).

    Each bank keeps its SME borrowers; only model updates and aggregate counts travel. The result
    is compared with the same model trained on the pooled data (possible only in a simulation).
    """
    from sampan.errors import ConfigError

    if vertical:
        from sampan.cli.vertical import vertical_demo

        vertical_demo(console, _store(store), seed=seed, report_dir=report_dir)
        return
    if model == "gbdt":
        if epsilon is not None:  # the tree demo compares with the pooled learner: never accept a budget silently
            fail(ConfigError("--epsilon: the GBDT demo has no differential privacy option (it compares with the "
                              "pooled learner); drop --epsilon, or `sampan run` a config with [privacy.gbdt]"))
        _gbdt_demo(seed, store, report_dir)
        return
    if model not in ("logistic", "mlp"):
        fail(ConfigError(f"--model must be 'logistic', 'mlp' or 'gbdt', got {model!r}"))
    from sampan.cli.progress import RichProgress
    from sampan.config import parse_config
    from sampan.data.consortium import PUBLIC_FEATURE_BOUNDS
    from sampan.runtime.baselines import local_only_baselines, pooled_baseline
    from sampan.runtime.reporting import write_run_report
    from sampan.runtime.runner import start_run

    config = parse_config({
        "run": {"name": "demo-sme-consortium", "rounds": rounds, "seed": seed, "report_dir": str(report_dir)},
        "model": {"kind": model, "hidden": [32]},
        "training": {"local_epochs": 1, "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.1,
                     "l2": 1e-4},
        "strategy": {"name": "fedavg"},
        "source": {"kind": "consortium", "n_smes": 12000},
        **({"privacy": {"epsilon": epsilon, "delta": 1e-5,  # DP1: the standardisation statistics, noised
                        "dp1": {"noise_multiplier": 10.0, "bounds": PUBLIC_FEATURE_BOUNDS},
                        "dp2": {"noise_multiplier": "auto", "max_grad_norm": 1.0}}} if epsilon else {}),
    }, source="demo")
    console.print("[bold]Sampan demo[/]: three banks train one SME default model with FedAvg; "
                  "no bank shares a record.")
    started = time.perf_counter()
    run_store = _store(store, config)
    with RichProgress(console) as progress:
        finished = start_run(config, run_store, progress)
    run = run_store.get_run(finished.outcome.run_id)
    baseline = pooled_baseline(parse_config(run.config), int(run.seed))
    alone = local_only_baselines(parse_config(run.config), int(run.seed))
    final_party = run_store.rounds(run.run_id)[-1].metrics.get("party", {})
    run_store.record_info(finished.outcome.run_id, "comparisons", {  # kept, so regenerated reports show them
        "baselines": {"pooled data (simulation only)": baseline},
        "alone": alone, "federated_by_party": final_party,
        "notes": ["The pooled baseline trains the same model on all banks' rows in one place; it is what "
                  "federation is measured against and is impossible in production."
                  + (" Baselines are non-private." if epsilon else "")]})
    report = write_run_report(run_store, finished.outcome.run_id, report_dir)
    console.print(_result_table(finished, {"pooled data (simulation only)": baseline}))
    console.print(_per_party_table(final_party, alone, private=bool(epsilon)))
    if finished.outcome.privacy:
        spent = {p: v["epsilon_spent"] for p, v in finished.outcome.privacy["parties"].items()}
        console.print("Privacy spent per bank (record-level, δ = 1e-5, RDP): "
                      + ", ".join(f"{p} ε = {e:.3f}" for p, e in sorted(spent.items()))
                      + f" of {epsilon}. Baselines above are non-private.")
    if finished.outcome.budget_stop:
        console.print(f"[yellow]Stopped early:[/] {finished.outcome.budget_stop}", soft_wrap=True)
    console.print(f"Model registered as [bold]{finished.model_name}[/] v{finished.model_version}; "
                  f"run id [bold]{finished.outcome.run_id}[/] ({time.perf_counter() - started:.1f} s).")
    console.print(f"Report: [bold]{report.resolve()}[/]")


def _gbdt_demo(seed: int | None, store: str | None, report_dir: Path) -> None:
    """Horizontal GBDT across the three banks: summed histograms, compared with each bank alone and pooled."""
    import secrets
    import time

    from sampan.horizontal.gbdt_demo import gbdt_demo_config, gbdt_demo_outcome
    from sampan.runtime.runner import start_run

    console.print("[bold]Sampan demo[/]: three banks grow one gradient-boosted tree model from summed histograms; "
                  "no bank shares a record.")
    seed = seed if seed is not None else secrets.randbits(31)
    config, started = gbdt_demo_config(seed, report_dir), time.perf_counter()
    with console.status("growing trees") as status:
        finished = start_run(config, _store(store), progress=lambda stage, r: status.update(
            f"tree {r['round']}: validation log loss {(r['global'].get('val_logloss') or float('nan')):.4f}")
            if stage == "round" else None)
        outcome = gbdt_demo_outcome(config, seed, finished.run_id, finished.result, finished.report_path,
                                    time.perf_counter() - started)
    from rich.table import Table

    table = Table(title="Test-set results (all banks' holdout rows)")
    for col in ("model", "AUC", "KS", "Brier"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, m in (("federated GBDT (Sampan)", outcome.federated), ("pooled data, same learner (simulation only)",
                                                                    outcome.pooled)):
        table.add_row(name, f"{m['auc']:.4f}", f"{m['ks']:.4f}", f"{m['brier']:.4f}")
    console.print(table)
    console.print(_per_party_table(outcome.federated_by_bank, outcome.alone))
    console.print(f"{outcome.trees} trees; run id [bold]{outcome.run_id}[/] ({outcome.seconds:.1f} s). "
                  f"Report: [bold]{outcome.report.resolve() if outcome.report else '-'}[/]")


@app.command()
def run(
    config_path: Path | None = typer.Argument(None, metavar="CONFIG", help="Run description (TOML)."),
    resume: str | None = typer.Option(None, "--resume", metavar="RUN_ID",
                                         help="Continue an interrupted or failed run from its last checkpoint."),
    store: str | None = StoreOption,
) -> None:
    """Run a federated training described by a TOML file, or resume one by id.

    A run checkpoints every round; after a crash, `sampan run --resume RUN_ID` finishes it with the
    same final model an uninterrupted run would have produced (same seed).
    """
    from sampan.errors import ConfigError

    if (config_path is None) == (resume is None):
        fail(ConfigError("give either a CONFIG file or --resume RUN_ID"))
    from sampan.vertical.config import is_vertical_config

    if config_path is not None and is_vertical_config(config_path):
        from sampan.cli.vertical import run_vertical_config

        with treat_as_usage(ValueError):  # a model's parameter check (e.g. n_trees >= 1) is the user's to fix
            run_vertical_config(console, config_path, store)
        return
    from sampan.cli.progress import RichProgress
    from sampan.config import load_config
    from sampan.runtime.runner import resume_run, start_run

    run_store: Store | None = None
    try:
        config = load_config(config_path) if config_path else None
        run_store = _store(store, config)
        with RichProgress(console) as progress:
            if config is not None:
                finished = start_run(config, run_store, progress)
            else:
                assert resume is not None  # checked above: exactly one of CONFIG and --resume
                finished = resume_run(run_store, resume, progress)
    except KeyboardInterrupt:
        runs = run_store.list_runs(1) if run_store is not None else []
        latest = resume or (runs[0].run_id if runs else "RUN_ID")
        console.print(f"[yellow]interrupted.[/] Every finished round is saved; continue with "
                      f"`sampan run --resume {latest}`", soft_wrap=True)
        raise typer.Exit(130) from None
    if not (finished.result.info or {}).get("checks"):  # a checks job trains and evaluates nothing
        console.print(_result_table(finished, {}))
    if (finished.result.info or {}).get("bank_alone"):  # each bank alone vs the consortium (issue 13)
        console.print(_bank_alone_table(finished.result.info["bank_alone"]))
    if (finished.result.info or {}).get("checks"):  # checks before training (issue 14 item 4): their findings
        from sampan.checks.report import checks_text

        console.print(checks_text(finished.result.info["checks"]), markup=False, highlight=False, soft_wrap=True)
    model = f"model {finished.model_name} v{finished.model_version}" if finished.model_version else "no central model"
    report = f" Report: [bold]{finished.report_path.resolve()}[/]" if finished.report_path else ""
    console.print(f"Run [bold]{finished.run_id}[/] completed; {model}.{report}")


@app.command()
def audit(
    run_id: str,
    shadows: int = typer.Option(8, min=2, help="Shadow models for the likelihood-ratio attack (LiRA)."),
    store: str | None = StoreOption,
    report_dir: Path = typer.Option(Path("sampan-reports"), help="Where the updated report and receipt go."),
) -> None:
    """Attack a finished run's model with membership inference (loss threshold and LiRA).

    Reports AUC, TPR at 1% and 0.1% FPR and an empirical ε lower bound with a 95% interval, and
    checks it against the ε the run claims. Results go into the run's receipt and report.
    """
    from rich.table import Table

    from sampan.runtime.audit_run import AuditError, audit_run
    from sampan.runtime.reporting import write_run_report

    with treat_as_usage(AuditError):  # e.g. a run without a model, or not horizontal
        run_store = _store(store)
        with console.status(f"training {shadows} shadow models and attacking run {run_id}..."):
            report = audit_run(run_store, run_id, n_shadow=shadows)
        path = write_run_report(run_store, run_id, report_dir)
    table = Table(title=f"Membership inference against run {run_id}")
    for col in ("attack", "AUC", "TPR @ 1% FPR", "TPR @ 0.1% FPR", "ε lower bound", "95% interval"):
        table.add_column(col, justify="right" if col != "attack" else "left")
    for a in report["attacks"]:
        lo, hi = a["epsilon_lower_bound_ci95"]
        table.add_row(a["name"], f"{a['auc']:.3f}", f"{float(a['tpr_at_fpr']['0.01']):.4f}",
                      f"{float(a['tpr_at_fpr']['0.001']):.4f}", f"{float(a['epsilon_lower_bound']):.3f}",
                      f"[{float(lo):.3f}, {float(hi):.3f}]")
    console.print(table)
    claimed = report["target"]["claimed_epsilon"]
    if claimed is None:
        console.print("The run used no differential privacy: there is no claim to check.")
    elif report["claimed"]["exceeded_by"]:
        console.print(f"[bold red]The audit refutes the claimed ε = {claimed:.3f}:[/] "
                      f"{', '.join(report['claimed']['exceeded_by'])}")
    else:
        console.print(f"No attack's conservative ε lower bound exceeds the claimed ε = {claimed:.3f}.")
    console.print(f"Report and receipt updated: [bold]{path.resolve()}[/]")


@runs_app.command("list")
def runs_list(store: str | None = StoreOption, limit: int = typer.Option(50, help="Newest runs shown.")) -> None:
    """List runs, newest first, with status and progress."""
    from rich.table import Table

    rows = _store(store).list_runs(limit)
    table = Table(title="Runs")
    for col in ("run id", "name", "workflow", "status", "round", "AUC", "created"):
        table.add_column(col)
    for r in rows:
        auc = (r.info or {}).get("final_metrics", {}).get("auc")
        table.add_row(r.run_id, r.name, r.workflow, r.status, f"{r.current_round}/{r.total_rounds}",
                      f"{auc:.4f}" if auc is not None else "–", r.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: str, store: str | None = StoreOption) -> None:
    """Show one run: status, config, per-round metrics and its audit-log integrity."""
    from rich.table import Table

    s = _store(store)
    r = s.get_run(run_id)
    rounds = s.rounds(run_id)
    chain_ok = s.verify_events(run_id)
    console.print(f"[bold]{r.run_id}[/] {r.name} — {r.workflow}, status [bold]{r.status}[/], "
                  f"round {r.current_round}/{r.total_rounds}, seed {r.seed}")
    if r.error:
        console.print(f"[red]error:[/] {r.error}")
    console.print(f"audit log hash chain: {'[green]intact' if chain_ok else '[red]BROKEN'}[/]")
    table = Table(title="Rounds")
    for col in ("round", "seconds", "train loss", "test AUC", "KS", "parties"):
        table.add_column(col, justify="right")
    for row in rounds:
        g = row.metrics.get("global", {})
        table.add_row(str(row.round), f"{row.seconds:.2f}", f"{row.metrics.get('train_loss', 0):.4f}",
                      f"{g['auc']:.4f}" if g.get("auc") is not None else "–",
                      f"{g['ks']:.4f}" if g.get("ks") is not None else "–", str(len(row.metrics.get("parties", []))))
    console.print(table)


@runs_app.command("report")
def runs_report(run_id: str, out: Path = typer.Option(Path("sampan-reports"), help="Folder for the HTML file."),
                store: str | None = StoreOption) -> None:
    """(Re)write a run's self-contained HTML report from the store."""
    from sampan.runtime.reporting import write_run_report

    path = write_run_report(_store(store), run_id, out)
    console.print(f"Report: [bold]{path.resolve()}[/]")


@runs_app.command("holdout")
def runs_holdout(run_id: str, out: Path = typer.Option(..., "--out", help="CSV file for the held-out ids."),
                 store: str | None = StoreOption) -> None:
    """Export a run's held-out (test) customer ids, from the bank's own registry (run it at the bank)."""
    from sampan.files import atomic_write_bytes

    run_store = _store(store)
    records = [m for m in run_store.models_for_run(run_id) if m.name.rsplit(":", 1)[0].endswith("-holdout")]
    if not records and run_store.get_run(run_id).workflow == "horizontal":  # a simulation: re-split at each party
        _horizontal_holdout(run_store, run_id, out)
        return
    if not records:
        fail(f"run {run_id!r} has no held-out ids in this store (run this at the bank, whose registry keeps them)")
    ids = [str(i) for i in (records[-1].meta or {}).get("ids") or []]
    if out.is_dir():
        fail(f"--out {str(out)!r} is a folder; give the CSV file to write the held-out ids to")
    # the bank's own customer ids: readable by this user only
    atomic_write_bytes(out, ("id\n" + "".join(f"{i}\n" for i in ids)).encode(), mode=0o600)
    console.print(f"{len(ids)} held-out ids of run {run_id} ({records[-1].name}): [bold]{out.resolve()}[/]")



def _horizontal_holdout(run_store: Store, run_id: str, out: Path) -> None:
    """A simulated horizontal run's held-out ids per party (`party,id`), re-split from its stored config and seed
    exactly as each party split its own table (test files, out-of-time or seeded)."""
    from sampan.config import parse_config
    from sampan.files import atomic_write_bytes
    from sampan.horizontal.holdout_split import holdout_ids
    from sampan.horizontal.simulation import load_splits

    run = run_store.get_run(run_id)
    per_party = holdout_ids(load_splits(parse_config(run.config), run.seed))
    lines = "".join(f"{party},{i}\n" for party, ids in per_party.items() for i in ids)
    atomic_write_bytes(out, ("party,id\n" + lines).encode())
    console.print(f"{sum(map(len, per_party.values()))} held-out ids of run {run_id} ({len(per_party)} parties): "
                  f"[bold]{out.resolve()}[/]")


# `sampan runs status|cancel|attach --coordinator ...`: the same run ids, asked of a running coordinator
from sampan.cli.operator import register_operator_commands  # noqa: E402 - after runs_app exists

register_operator_commands(runs_app)
