"""CLI for vertical runs: ``sampan demo --vertical`` and ``sampan score``.

The demo simulates the three organisations in one process on the built-in consortium; ``score``
rebuilds the same simulated organisations from the run's recorded seed, loads each party's own model
part from the store and scores applications jointly.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sampan.data import make_sme_consortium
from sampan.runtime.store import Store
from sampan.vertical.run import load_parts, run_vertical, score_with_gbdt, score_with_parts
from sampan.vertical.scoring import ScoreResult
from sampan.vertical.training import VerticalLRConfig

__all__ = ["vertical_demo", "score_applicants"]

DEMO_SMES = 20000
LABEL_HOLDER = "bank"


def _consortium(n_smes: int, seed: int) -> Mapping[str, Any]:
    return make_sme_consortium(n_smes, seed=seed).vertical


def _demo_applicants(datasets: Mapping[str, Any], k: int = 5) -> list[str]:
    """A few of the bank's SMEs to score as new applications, some unknown to a partner.

    Simulation only: the demo peeks at every table to pick an instructive mix; a real bank just types
    the registration number.
    """
    bank = [str(i) for i in datasets[LABEL_HOLDER].ids]
    known = {p: {str(i) for i in d.ids} for p, d in datasets.items() if p != LABEL_HOLDER}
    everywhere = [i for i in bank if all(i in s for s in known.values())]
    somewhere_missing = [i for i in bank if not all(i in s for s in known.values())]
    return everywhere[-(k - 2):] + somewhere_missing[-2:]


def results_table(results: list[ScoreResult], title: str) -> Table:
    table = Table(title=title)
    for col in ("applicant", "PD", "score", "bank logit", "partners (sum)", "not known to", "top reasons", "ms"):
        table.add_column(col, justify="left" if col in ("applicant", "not known to", "top reasons") else "right")
    for r in results:
        reasons = "; ".join(f"{x['feature']} {x['logit_contribution']:+.2f}" for x in r.reasons[:3])
        bank = "–" if r.bank_contribution != r.bank_contribution else f"{r.bank_contribution:+.2f}"  # NaN: trees
        table.add_row(r.applicant, f"{r.probability_of_default:.3f}", f"{r.score:.0f}", bank,
                      f"{r.partner_contribution:+.2f}", ", ".join(r.missing_at) or "–", reasons,
                      f"{r.seconds * 1000:.1f}")
    return table


def comparison_table(comparison: Mapping[str, Mapping[str, Any]], title: str) -> Table:
    """Every model of a run on the same held-out rows."""
    table = Table(title=title)
    for col in ("model", "AUC", "Gini", "KS", "Brier"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, m in comparison.items():
        table.add_row(name, f"{m['auc']:.4f}", f"{m['gini']:.4f}", f"{m['ks']:.4f}", f"{m['brier']:.4f}")
    return table


def vertical_demo(console: Console, store: Store, *, seed: int | None, report_dir: Path,
                  n_smes: int = DEMO_SMES) -> None:
    seed = seed if seed is not None else secrets.randbits(31)
    datasets = _consortium(n_smes, seed)
    console.print("[bold]Sampan vertical demo[/]: a bank, a payment provider and a delivery platform score SME "
                  "loans together. Customers are aligned by private set intersection; the label, every feature "
                  "and the combined score stay private (secret shares); only the bank sees a PD.")
    for name, d in datasets.items():
        console.print(f"  {name}: {len(d):,} SMEs, {d.X.shape[1]} features"
                      + (" + the default label" if d.y is not None else ""))
    config = VerticalLRConfig()
    applicants = _demo_applicants(datasets)
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        stage = bar.add_task("starting", total=None, info="")
        epochs = bar.add_task("secure training", total=config.epochs, info="", visible=False)

        def on_progress(kind: str, info: Mapping[str, Any]) -> None:
            if kind == "stage":
                bar.update(stage, description=str(info["stage"]))
            elif kind == "aligned":
                bar.update(stage, info=f"{info['n_aligned']:,} common customers in {info['seconds']:.1f} s")
            elif kind == "epoch":
                bar.update(epochs, visible=True, completed=int(info["epoch"]),
                           info=f"validation Brier {info['val_brier']:.4f}")

        outcome = run_vertical(datasets, label_holder=LABEL_HOLDER, store=store, name="demo-vertical-sme",
                               config=config, seed=seed, applicants=applicants, report_dir=report_dir,
                               models=("lr", "scorecard", "gbdt"),
                               progress=on_progress, run_config={
                                   "vertical": {"label_holder": LABEL_HOLDER,
                                                "partners": [p for p in datasets if p != LABEL_HOLDER],
                                                "training": config.__dict__},
                                   "source": {"kind": "consortium", "view": "vertical", "n_smes": n_smes,
                                              "seed": seed}})
        bar.update(stage, description="done", total=1, completed=1)
    console.print(comparison_table(outcome.comparison, f"Held-out SMEs known to every party ({outcome.joint['n']:,} rows)"))
    console.print(f"Gain from the partners' data (secure vertical LR over the bank's own LR): AUC "
                  f"{outcome.joint['auc'] - outcome.bank_only['auc']:+.4f}.")
    console.print(results_table(outcome.scored, "New applications, as the bank sees them"))
    console.print(f"Model parts registered as [bold]{outcome.model_name}:<party>[/]; run id [bold]{outcome.run_id}[/] "
                  f"({time.perf_counter() - started:.1f} s). Score another: "
                  f"[bold]sampan score {applicants[0]} --run {outcome.run_id}[/]")
    if outcome.report:
        console.print(f"Report: [bold]{outcome.report.resolve()}[/]")


def run_vertical_config(console: Console, path: Path, store_url: str | None) -> None:
    """`sampan run vertical.toml`: load each party's table, then the same pipeline as the demo."""
    import os
    import secrets

    from sampan.vertical.config import load_vertical_config, load_vertical_parties

    config = load_vertical_config(path)
    datasets = load_vertical_parties(config)
    store = Store.open(store_url or os.environ.get("SAMPAN_STORE") or config.run.store)
    section = config.vertical
    console.print(f"[bold]Vertical run[/] {config.run.name}: label holder {section.label_holder}, partners "
                  + ", ".join(p.name for p in config.parties if p.name != section.label_holder)
                  + f"; models {', '.join(section.models)}.")
    ordered = {section.label_holder: datasets[section.label_holder],
               **{k: v for k, v in datasets.items() if k != section.label_holder}}
    outcome = run_vertical(ordered, label_holder=section.label_holder, store=store, name=config.run.name,
                           config=section.to_lr_config(),
                           seed=config.run.seed if config.run.seed is not None else secrets.randbelow(2**31), applicants=list(section.applicants) or None,
                           report_dir=Path(config.run.report_dir), models=tuple(section.models),
                           gbdt_params=section.gbdt_params(), woe_dp_epsilon=section.scorecard.dp_epsilon,
                           gbdt_hist_noise=section.gbdt_privacy.hist_noise,
                           run_config=config.to_dict(),
                           progress=lambda kind, info: console.print(
                               f"  {info['stage']}" if kind == "stage" else
                               f"  epoch {info['epoch']}: validation Brier {info['val_brier']:.4f}" if kind == "epoch"
                               else f"  {info.get('n_aligned', 0):,} common customers" if kind == "aligned" else ""))
    console.print(comparison_table(outcome.comparison, f"Held-out rows known to every party ({outcome.joint['n']:,})"))
    if outcome.scored:
        console.print(results_table(outcome.scored, "Applications, as the bank sees them"))
    console.print(f"Run [bold]{outcome.run_id}[/] completed. Report: [bold]{outcome.report.resolve() if outcome.report else '-'}[/]")


def score_applicants(store: Store, run_id: str, applicants: list[str], model: str = "lr") -> list[ScoreResult]:
    """Rebuild the run's simulated organisations, load each one's part, score jointly."""
    run = store.get_run(run_id)
    if run.workflow != "vertical":
        raise ValueError(f"run {run_id!r} is a {run.workflow!r} run; `sampan score` needs a vertical run")
    config = run.config or {}
    source = config.get("source") or {}
    vertical = config["vertical"]
    if source.get("kind") == "consortium":
        datasets = _consortium(int(source["n_smes"]), int(source["seed"]))
    elif vertical.get("parties") or config.get("parties"):  # a `sampan run` config: each party reloads its table
        from sampan.vertical.config import load_vertical_parties

        datasets = load_vertical_parties(config)
    else:
        raise ValueError(f"run {run_id!r} recorded no data binding; score it through the Python API")
    holder = vertical["label_holder"]
    partners = vertical.get("partners") or [p["name"] for p in vertical.get("parties") or config["parties"]
                                          if p["name"] != holder]
    datasets = {holder: datasets[holder], **{p: datasets[p] for p in partners}}
    if model == "gbdt":
        return [ScoreResult(applicant=r["applicant"], probability_of_default=r["probability_of_default"], score=r["score"],
                            logit=r["logit"], bank_contribution=float("nan"), partner_contribution=sum(
                                x["logit_contribution"] for x in r["reasons"] if x["source"] != "bank"),
                            missing_at=r["missing_at"], reasons=r["reasons"], seconds=r["seconds"])
                for r in score_with_gbdt(store, run_id, datasets, label_holder=holder, applicants=applicants)]
    parts = load_parts(store, run_id, [holder, *partners], scorecard=(model == "scorecard"))
    return score_with_parts(datasets, parts, label_holder=vertical["label_holder"], applicants=applicants)
