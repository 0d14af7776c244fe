"""CLI for DP synthetic data: ``sampan synth fit | sample | report | federated``.

``fit`` reads a CSV under a declared schema (without one: every cell as text, and the schema released
under DP, `sampan.synth.domain`) and writes a model folder (JSON + npz, atomically);
``sample`` draws rows from a model, honouring targets and constraints; ``report`` compares a synthetic
CSV with the real data (HTML + JSON); ``federated`` is the consortium demo: three simulated banks fit
one synthesiser without pooling records, compared with central synthesis and each bank alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from sampan.cli.error_path import ErrorHandlingGroup, fail
from sampan.files import atomic_write_text
from sampan.privacy.ledger import BudgetExceeded
from sampan.privacy.randomness import seeded_generator
from sampan.synth.constraints import ConstraintError, parse_constraint
from sampan.synth.fit import SynthConfig, fit_synthesizer, fit_undeclared
from sampan.synth.model import ModelError, SynthModel
from sampan.synth.programmable import TargetError, generate
from sampan.synth.schema import SchemaError, SynthSchema, load_schema
from sampan.synth.spec import combine, load_spec, parse_target
from sampan.synth.table import TableError, read_csv_table, read_csv_text, write_csv_table
from sampan.synth.workflow import fit_federated
from sampan.transport.inprocess import InProcessTransport

__all__ = ["synth_app"]

synth_app = typer.Typer(help="Differentially private synthetic tables: fit, sample, report, federated demo.",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        cls=ErrorHandlingGroup)
console = Console()
USER_ERRORS = (SchemaError, TableError, ModelError, ConstraintError, TargetError, BudgetExceeded, OSError)
SEED_HELP = "Seed all randomness (tests/demos only: the receipt marks the model reproducible, NOT private)."


def _fail(exc: BaseException) -> None:
    fail(exc)  # the CLI's one error path: exit 2 for input to fix, 4 for an exhausted budget


def _rng(seed: int | None, offset: int = 0) -> np.random.Generator | None:
    """A seeded generator (warned about once per command) or None for CSPRNG noise."""
    if seed is None:
        return None
    if offset in (0, 2):  # the first generator each command asks for
        console.print("[yellow]warning:[/] --seed given: reproducible run, not private (never for real releases)")
    return seeded_generator(seed + offset)


def _declared_schema(data: Path, schema: Path | None) -> SynthSchema | None:
    """The declared schema: --schema, or <data>.schema.toml/.json beside the CSV; None if there is none."""
    if schema is None:
        schema = next((c for c in (data.with_suffix(".schema.toml"), data.with_suffix(".schema.json")) if c.is_file()),
                      None)
    return load_schema(schema) if schema is not None else None


def _declared_categories(items: list[str]) -> dict[str, tuple[str, ...]]:
    """--categories 'COL=A,B,C' (repeatable): categories the owner declares public for one column."""
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        cats = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not name.strip() or not cats:
            raise SchemaError(f"--categories {item!r}: expected 'COLUMN=A,B,C'")
        out[name.strip()] = cats
    return out


def _fit_model(data: Path, schema: Path | None, label: str | None, categorical: list[str],
               categories: list[str], drop_incomplete_rows: bool, config: SynthConfig,
               rng: np.random.Generator | None) -> SynthModel:
    """Fit under the declared schema, or release the schema under DP first (never read it off the records)."""
    declared = _declared_schema(data, schema)
    if declared is not None:
        return fit_synthesizer(read_csv_table(data, declared), declared, config, rng=rng)
    declared_cats = _declared_categories(categories)
    raw = read_csv_text(data)  # every cell parsed on its own: no type inferred from the whole file
    model = fit_undeclared(raw, config, label=label, categorical=tuple(categorical), categories=declared_cats,
                           drop_incomplete_rows=drop_incomplete_rows, rng=rng, source=f"file '{data}'")
    console.print(f"[yellow]note:[/] no schema given: column kinds, categories and bounds were released under DP "
                  f"({config.domain_share:.0%} of the budget; categories rarer than the noise became '(other)'). "
                  "Declare a schema with --schema for public categories and bounds and more budget for the data.")
    return model


@synth_app.command("fit")
def fit_cmd(
    data: Path = typer.Option(..., "--data", help="CSV table of the data owner."),
    epsilon: float = typer.Option(..., "--epsilon", min=0.001, help="Privacy budget ε of the whole synthesiser."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (replaced atomically)."),
    delta: float = typer.Option(1e-5, "--delta", help="δ of the (ε, δ) guarantee."),
    schema: Path | None = typer.Option(None, "--schema", help="Schema TOML/JSON: columns, categories, public "
                                          "bounds (default: <data>.schema.toml beside the CSV; without one, kinds, "
                                          "categories and bounds are released under DP from part of the budget)."),
    label: str | None = typer.Option(None, "--label", help="Label column (when no schema is declared)."),
    categorical: list[str] = typer.Option([], "--categorical", help="Force a column to categorical (repeatable)."),
    categories: list[str] = typer.Option([], "--categories", help="Without a schema: declare a column's public "
                                         "categories, e.g. 'default_12m=0,1' (repeatable); others are released "
                                         "under DP."),
    drop_incomplete_rows: bool = typer.Option(False, "--drop-incomplete-rows", help="Without a schema: leave out "
                                              "rows with a missing value ('?', NA, empty) in a numeric column."),
    seed: int | None = typer.Option(None, "--seed", help=SEED_HELP),
) -> None:
    """Fit a DP synthesiser on one table; every measurement (and an undeclared schema) is charged to the ledger."""
    try:
        config = SynthConfig(epsilon=epsilon, delta=delta)
        model = _fit_model(data, schema, label, categorical, categories, drop_incomplete_rows, config, _rng(seed))
        model.save(out)
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    party = next(iter(model.receipt["parties"].values()))
    console.print(f"[bold]Fitted[/] on {int(round(model.n_hat)):,} rows (noisy count) in "
                  f"{model.info['seconds_fit']:.2f} s: ε spent {party['epsilon_spent']:.4f} of {epsilon:g} "
                  f"at δ={delta:g}, {len(party['releases'])} releases, {len(model.edges)} tree edges.")
    console.print(f"Model written to {escape(str(out))} (model.json + tables.npz): the schema "
                  f"({'declared' if model.schema.domain_source == 'declared' else 'released under DP'}) and DP "
                  "releases only, no row of the data.")


@synth_app.command("sample")
def sample_cmd(
    model_dir: Path = typer.Option(..., "--model", help="Model folder written by 'sampan synth fit'."),
    out: Path = typer.Option(..., "--out", help="CSV to write (atomically); the sampling report goes beside it."),
    rows: int | None = typer.Option(None, "--rows", min=1, help="Rows to draw (default: the noisy row count)."),
    target: list[str] = typer.Option([], "--target", help="'COL=uniform' or 'COL: A=0.3, B=0.7' (repeatable)."),
    constraint: list[str] = typer.Option([], "--constraint", help="Row constraint, e.g. 'loan <= 10 * revenue'."),
    spec: Path | None = typer.Option(None, "--spec", help="TOML with rows, [[targets]] and constraints."),
    seed: int | None = typer.Option(None, "--seed", help=SEED_HELP),
) -> None:
    """Draw synthetic rows (no privacy cost: the model holds only noisy marginals)."""
    try:
        model = SynthModel.load(model_dir)
        plan = combine(load_spec(spec, model) if spec else None, [parse_target(t, model) for t in target],
                       [parse_constraint(c, model.schema) for c in constraint])
        n = rows or plan.rows or max(int(round(model.n_hat)), 1)
        started = time.perf_counter()
        table, report = generate(model, n, targets=plan.targets, constraints=plan.constraints, rng=_rng(seed, 1))
        write_csv_table(table, model.schema, out)
        side = out.with_name(out.stem + ".sampling.json")
        atomic_write_text(side, json.dumps(report.to_dict(), indent=2))
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    console.print(f"Wrote {n:,} rows to {escape(str(out))} in {time.perf_counter() - started:.2f} s "
                  f"({report.rows_drawn:,} drawn); report: {escape(str(side))}")
    for t in report.targets:
        console.print(f"  target {', '.join(t['columns'])}: max |achieved − requested| = "
                      f"{t['max_abs_difference']:.4f} ({t['method']})")
    for c in report.constraints:
        console.print(f"  constraint {escape(c['constraint'])}: {c['violations']} violation(s)")
    for note in report.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}")


@synth_app.command("report")
def report_cmd(
    synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic CSV."),
    real: Path = typer.Option(..., "--real", help="The real CSV the model was fitted on."),
    out: Path = typer.Option(..., "--out", help="Folder for report.releasable.{html,json} and the confidential "
                             "report.confidential.{html,json} (exact statistics of the real table)."),
    model_dir: Path | None = typer.Option(None, "--model", help="Model folder (schema, receipt, bias 'before')."),
    schema: Path | None = typer.Option(None, "--schema", help="Schema file (if no --model)."),
    holdout: Path | None = typer.Option(None, "--holdout", help="Real rows NOT used for fitting (utility, privacy)."),
    constraint: list[str] = typer.Option([], "--constraint", help="Constraint to count violations of (repeatable)."),
    group: list[str] = typer.Option([], "--group", help="Categorical column for the bias report (repeatable)."),
    sampling: Path | None = typer.Option(None, "--sampling", help="The .sampling.json written by 'sample'."),
) -> None:
    """Evaluate a synthetic table: fidelity, utility (TSTR), privacy (DCR, MIA), constraints, bias."""
    from sampan.synth.evaluate import evaluate, headline
    from sampan.synth.report import write_evaluation

    try:
        model = SynthModel.load(model_dir) if model_dir else None
        declared = model.schema if model else (load_schema(schema) if schema else None)
        if declared is None:
            raise SchemaError("pass --model or --schema")
        doc = evaluate(
            declared, read_csv_table(synthetic, declared), real_train=read_csv_table(real, declared),
            holdout=read_csv_table(holdout, declared) if holdout else None, model=model,
            constraints=[parse_constraint(c, declared) for c in constraint], groups=group,
            sample_report=json.loads(sampling.read_text(encoding="utf-8")) if sampling else None,
        )
        paths = write_evaluation(doc, out)
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    for key, value in headline(doc).items():
        console.print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    console.print(f"Releasable report (synthetic table + DP receipt only): {escape(str(paths['releasable_html']))}")
    console.print(f"[bold red]Confidential[/] report (exact statistics of the real table, data owner only): "
                  f"{escape(str(paths['confidential_html']))} (and .json beside each)")


def _split(table: dict[str, np.ndarray], fraction: float, rng: np.random.Generator) -> tuple[dict, dict]:
    n = len(next(iter(table.values())))
    perm = rng.permutation(n)
    cut = int(round(n * (1 - fraction)))
    return ({k: v[perm[:cut]] for k, v in table.items()}, {k: v[perm[cut:]] for k, v in table.items()})


@synth_app.command("federated")
def federated_cmd(
    epsilon: float = typer.Option(1.0, "--epsilon", min=0.001, help="Each bank's budget ε."),
    out: Path = typer.Option(Path("synth-federated-model"), "--out", help="Model folder for the consortium model."),
    report_dir: Path = typer.Option(Path("sampan-reports/synth-federated"), "--report-dir", help="Evaluation report."),
    n_smes: int = typer.Option(12000, "--n-smes", min=300, help="SMEs in the simulated consortium."),
    delta: float = typer.Option(1e-5, "--delta"),
    seed: int | None = typer.Option(None, "--seed", help="Seed the simulated data and all noise (demo only)."),
    secure: bool = typer.Option(True, "--secure-aggregation/--plain-aggregation",
                                help="Sum the banks' marginals by SecAgg+ with distributed noise (central accuracy), "
                                     "or in the clear with each bank's release DP on its own (noisier)."),
) -> None:
    """Consortium demo: three banks fit one DP synthesiser together; no bank shares a record."""
    from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
    from sampan.synth.evaluate import evaluate
    from sampan.synth.report import write_evaluation
    from sampan.synth.tstr import train_and_score

    schema = SME_SYNTH_SCHEMA
    # cast: entropy is an int when SeedSequence draws it itself (the stub also allows a given sequence or None)
    data_seed = seed if seed is not None else int(cast(int, np.random.SeedSequence().entropy) % 2**31)
    banks = consortium_tables(n_smes, data_seed)
    split_rng = np.random.default_rng(data_seed + 1)  # simulation only: which rows each bank holds out
    trains, holdouts = {}, {}
    for name, table in banks.items():
        trains[name], holdouts[name] = _split(table, 0.2, split_rng)
    pooled_holdout = {k: np.concatenate([h[k] for h in holdouts.values()]) for k in schema.names}
    pooled_train = {k: np.concatenate([t[k] for t in trains.values()]) for k in schema.names}
    config = SynthConfig(epsilon=epsilon, delta=delta)
    how = ("summed by SecAgg+, so the coordinator sees only the total" if secure
           else "each DP on its own, summed in the clear")
    console.print(f"[bold]Sampan federated synthesis[/]: {len(banks)} banks fit one synthesiser at ε={epsilon:g} "
                  f"each; only noisy marginals leave a bank ({how}).")
    try:
        started = time.perf_counter()
        model = fit_federated(trains, schema, config, transport=InProcessTransport,
                              secure_aggregation=secure, rng=_rng(seed, 2))
        n_rows = sum(len(t[schema.label]) for t in trains.values())
        synthetic, report = generate(model, n_rows, rng=_rng(seed, 3))
        seconds = time.perf_counter() - started
        model.save(out)
        central = fit_synthesizer(pooled_train, schema, config, party="pooled (simulation)", rng=_rng(seed, 4))
        central_rows, _ = generate(central, n_rows, rng=_rng(seed, 5))
        rows = [("federated synthesis (Sampan)", train_and_score(synthetic, pooled_holdout, schema)),
                ("central synthesis, pooled data (simulation only)",
                 train_and_score(central_rows, pooled_holdout, schema)),
                ("real pooled data, no synthesis (simulation only)",
                 train_and_score(pooled_train, pooled_holdout, schema))]
        for name in banks:
            alone = fit_synthesizer(trains[name], schema, config, party=name, rng=_rng(seed, 6))
            alone_rows, _ = generate(alone, n_rows, rng=_rng(seed, 7))
            rows.append((f"{name} alone (synthesis on its own rows)",
                         train_and_score(alone_rows, pooled_holdout, schema)))
        doc = evaluate(schema, synthetic, real_train=pooled_train, holdout=pooled_holdout, model=model,
                       groups=["sector"], sample_report=report.to_dict())
        paths = write_evaluation(doc, report_dir, title="Federated synthesis: SME consortium")
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    tstr_table = RichTable(title="TSTR AUC on all banks' holdout rows (logistic regression)")
    tstr_table.add_column("training data")
    tstr_table.add_column("AUC", justify="right")
    for name, auc in rows:
        tstr_table.add_row(name, f"{auc:.4f}")
    console.print(tstr_table)
    for name, party in model.receipt["parties"].items():
        releases = len(party["releases"])
        console.print(f"  {name}: ε spent {party['epsilon_spent']:.4f} of {epsilon:g} ({releases} releases)")
    console.print(f"Fit + sample: {seconds:.2f} s. Model: {escape(str(out))}. Reports: "
                  f"{escape(str(paths['releasable_html']))} (releasable) and {escape(str(paths['confidential_html']))} "
                  "(confidential: exact statistics of the simulated real tables)")
