"""CLI for vertical runs: ``sampan demo --vertical``, ``sampan run <vertical config>`` and ``sampan score``.

Every run goes through the one runner (`sampan.runtime.runner.start_run`) with the "vertical" or
"scoring" workflow (`sampan.vertical.capability`). The demo simulates the three organisations in one
process on the built-in consortium; ``score`` rebuilds the same simulated organisations from the
trained run's stored config, each loads its own model part from its registry (here: the shared store)
and they score jointly. The scores stay with the bank: this module reads them as the bank would, from
the bank's own record in its registry (``<name>-scores:<bank>``), never from the coordinator's run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.runtime.runner import FinishedRun, start_run
from sampan.runtime.store import Store
from sampan.vertical.capability import ScoringJob
from sampan.vertical.job import job_of
from sampan.vertical.party_parts import scores_name
from sampan.vertical.scoring import ScoreResult

__all__ = ["vertical_demo", "run_vertical_config", "score_applicants", "bank_scores", "demo_job"]

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


def demo_job(n_smes: int, seed: int, report_dir: Path | None, *, models: tuple[str, ...] = ("lr", "scorecard", "gbdt"),
             lr: Mapping[str, Any] | None = None, applicants: tuple[str, ...] = ()) -> Any:
    """The demo's run config: the built-in consortium's bank and its two partners (a `sampan.config.RunConfig`,
    so the stored run resumes like any other)."""
    from sampan.config import parse_config

    return parse_config({
        "run": {"name": "demo-vertical-sme", "workflow": "vertical", "seed": seed,
                **({"report_dir": str(report_dir)} if report_dir is not None else {})},
        "source": {"kind": "consortium", "n_smes": n_smes},
        "vertical": {"label_holder": LABEL_HOLDER, "models": list(models), "applicants": list(applicants),
                     "gbdt": {"n_trees": 60, "max_depth": 3},  # the demo's trees, as before the runner
                     **({"lr": dict(lr)} if lr else {})}}, source="the vertical demo")


def bank_scores(store: Store, name: str, bank: str, requests: list[str] | None = None) -> list[ScoreResult]:
    """The bank's own record of its scoring results (its registry), as the bank reads it."""
    record = store.get_model(scores_name(name, bank))
    wanted = set(requests) if requests else None
    if wanted is not None and not wanted & set(record.meta.get("requests") or []):
        raise ValueError(f"the bank's latest record {record.name!r} does not hold requests {sorted(wanted)}")
    return [_score_result(r) for r in record.meta.get("results") or []]


def _score_result(r: Mapping[str, Any]) -> ScoreResult:
    if "bank_contribution" in r:
        return ScoreResult(**{k: r[k] for k in ScoreResult.__dataclass_fields__ if k in r})
    return ScoreResult(applicant=r["applicant"], probability_of_default=r["probability_of_default"], score=r["score"],
                       logit=r["logit"], bank_contribution=float("nan"), partner_contribution=sum(
                           x["logit_contribution"] for x in r["reasons"] if x["source"] != "bank"),
                       missing_at=r["missing_at"], reasons=r["reasons"], seconds=r["seconds"],
                       unknown_at_bank=bool(r.get("unknown_at_bank", False)))


def results_table(results: list[ScoreResult], title: str) -> Table:
    """One row per applicant; the id is never wrapped or cropped (a narrow terminal squeezes the other columns)."""
    table = Table(title=title)
    longest = max((len(r.applicant) for r in results), default=0)
    table.add_column("applicant", no_wrap=True, min_width=max(longest, len("applicant")))
    for col in ("PD", "score", "bank logit", "partners (sum)", "not known to", "top reasons", "ms"):
        table.add_column(col, justify="left" if col in ("not known to", "top reasons") else "right")
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


def _progress_bar(bar: Progress, epochs_total: int) -> Any:
    stage = bar.add_task("starting", total=None, info="")
    epochs = bar.add_task("secure training", total=epochs_total, info="", visible=False)

    def on_progress(kind: str, info: Mapping[str, Any]) -> None:
        if kind == "stage":
            bar.update(stage, description=str(info["stage"]))
        elif kind == "aligned":
            bar.update(stage, info=f"{info['n_aligned']:,} common customers in {info['seconds']:.1f} s")
        elif kind == "epoch":
            bar.update(epochs, visible=True, completed=int(info["epoch"]),
                       info=f"validation Brier {info['val_brier']:.4f}")
    return stage, on_progress


def vertical_demo(console: Console, store: Store, *, seed: int | None, report_dir: Path,
                  n_smes: int = DEMO_SMES) -> FinishedRun:
    seed = seed if seed is not None else secrets.randbits(31)
    datasets = _consortium(n_smes, seed)
    console.print("[bold]Sampan vertical demo[/]: a bank, a payment provider and a delivery platform score SME "
                  "loans together. Customers are aligned by private set intersection; the label, every feature "
                  "and the combined score stay private (secret shares); only the bank sees a PD.")
    for name, d in datasets.items():
        console.print(f"  {name}: {len(d):,} SMEs, {d.X.shape[1]} features"
                      + (" + the default label" if d.y is not None else ""))
    applicants = _demo_applicants(datasets)
    config = demo_job(n_smes, seed, report_dir, applicants=tuple(applicants))
    job = job_of(config)
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        stage, on_progress = _progress_bar(bar, job.lr.epochs)
        finished = start_run(config, store, on_progress)
        bar.update(stage, description="done", total=1, completed=1)
    outcome = finished.result.outcome
    joint, bank_only = outcome["joint"], outcome["bank_only"]
    console.print(comparison_table(outcome["comparison"], f"Held-out SMEs known to every party ({joint['n']:,} rows)"))
    console.print(f"Gain from the partners' data (secure vertical LR over the bank's own LR): AUC "
                  f"{joint['auc'] - bank_only['auc']:+.4f}.", soft_wrap=True)  # the terminal wraps, not rich
    scored = outcome.get("scored") or {}
    if scored.get("n"):
        console.print(results_table(bank_scores(store, job.name, LABEL_HOLDER, scored["requests"]),
                                    "New applications, as the bank sees them (read from the bank's own registry)"))
    console.print(f"Model parts registered by each party as [bold]{job.name}:<party>[/]; run id "
                  f"[bold]{finished.run_id}[/] ({time.perf_counter() - started:.1f} s). Score another: "
                  f"[bold]sampan score {applicants[0]} --run {finished.run_id}[/]", soft_wrap=True)  # copyable
    if finished.report_path:
        console.print(f"Report: [bold]{finished.report_path.resolve()}[/]")
    return finished


def _load_run_config(path: Path) -> Any:
    """The unified run config (the earlier `[[vertical.parties]]` dialect converted: `sampan.vertical.config`)."""
    from sampan.vertical.config import load_vertical_config

    return load_vertical_config(path)


def run_vertical_config(console: Console, path: Path, store_url: str | None) -> FinishedRun:
    """`sampan run vertical.toml`: each party loads its own table, then the same workflow as the demo."""
    import os

    config = _load_run_config(path)
    job = job_of(config)
    store = Store.open(store_url or os.environ.get("SAMPAN_STORE") or config.run.store)
    console.print(f"[bold]Vertical run[/] {job.name}: label holder {job.label_holder}, partners "
                  f"{', '.join(job.partners)}; models {', '.join(job.models)}.")

    def on_progress(kind: str, info: Mapping[str, Any]) -> None:
        line = (f"  {info['stage']}" if kind == "stage" else
                f"  epoch {info['epoch']}: validation Brier {info['val_brier']:.4f}" if kind == "epoch"
                else f"  {info.get('n_aligned', 0):,} common customers" if kind == "aligned" else "")
        if line:
            console.print(line)

    finished = start_run(config, store, on_progress)
    outcome = finished.result.outcome
    console.print(comparison_table(outcome["comparison"], f"Held-out rows known to every party "
                                                          f"({outcome['joint']['n']:,})"))
    scored = outcome.get("scored") or {}
    if scored.get("n"):
        console.print(results_table(bank_scores(store, job.name, job.label_holder, scored["requests"]),
                                    "Applications, as the bank sees them"))
    console.print(f"Run [bold]{finished.run_id}[/] completed. Report: "
                  f"[bold]{finished.report_path.resolve() if finished.report_path else '-'}[/]")
    return finished


def score_applicants(store: Store, run_id: str, applicants: list[str], model: str = "lr", *,
                     unknown_at_bank_ok: bool = False, applicants_file: str | None = None) -> list[ScoreResult]:
    """A scoring run over the trained run's parties: each loads its own part; the bank keeps the scores,
    which this function then reads as the bank (simulation: the bank's registry is the shared store).
    ``unknown_at_bank_ok``: return applicants the bank does not hold (flagged) instead of refusing them;
    ``applicants_file``: the bank's file, whose rows join the bank's table when it has the bank's columns."""
    run = store.get_run(run_id)
    if run.workflow != "vertical":
        raise ValueError(f"run {run_id!r} is a {run.workflow!r} run; `sampan score` needs a vertical run")
    trained = job_of(run.config or {})
    if model not in trained.models:
        raise ValueError(f"run {run_id!r} trained {list(trained.models)}, not {model!r}")
    job = ScoringJob(model_run=run_id, label_holder=trained.label_holder, partners=trained.partners,
                     applicants=tuple(str(a) for a in applicants), kind=model, name=f"{run.name}-score",
                     training=dict(run.config or {}), applicants_file=applicants_file)
    try:
        finished = start_run(job, store)  # type: ignore[arg-type]
    except PartyError as exc:
        if exc.error_type == "ValueError":  # a party refused the request itself (e.g. an unknown applicant)
            raise ValueError(exc.error) from None
        raise
    results = bank_scores(store, job.name, job.label_holder, [finished.result.outcome["request_id"]])
    # the bank's own flag (R12-VER-8): the coordinator saw no difference
    if not unknown_at_bank_ok and any(r.unknown_at_bank for r in results):
        raise ValueError("an applicant of this request is not in the bank's table; the bank scores applicants it has "
                         "data on")
    return results
