"""The `sampan` command line: one module per command group, one shared error path.

    run.py       demo, run, audit, runs list|show|report|status|cancel|attach
                 (training in this process, the run store; a coordinator's runs)
    score.py     score (new applicants from a file: horizontal models at the bank, vertical jointly)
    validate.py  models pack (validation pack), monitor drift|backtest|challenger
    registry.py  models, audit-log                                (the model registry, the signed audit log)
    store_admin.py  store backup|restore, audit-log export          (operators' copies: backups, SIEM export)
    deploy.py    certs, coordinator, party, submit                (deployments: certificates, agents, runs)
    synth.py     synth                                            (DP synthetic tables)
    console.py   console, control-plane                           (the control plane and web console)
    portal.py    portal                                           (the verification portal, issue 17)
    verify.py    verify run|local|report|compare|table            (evaluate an FL platform, its reports)
    fraud.py     fraud train|scan|report                          (forged-document detector, issue 18)
    watermark.py watermark keygen|embed|detect|attack-report      (invisible keyed watermarks, issue 19)
    qr.py        qr keygen|issue|verify|check-url|report          (anti-counterfeit QR codes, quishing, issue 20)
    vertical.py  the vertical demo, run and joint scoring behind `demo --vertical`, `run`, `score`
    error_path.py  every command's errors -> one line + exit code (`sampan.errors.ExitCode`)
    lazy.py      subcommands imported on first use, so `sampan --help` imports no numpy/pydantic/sqlalchemy

May import anything in Sampan, but only inside commands: this module imports typer and sampan.errors only.
"""

from __future__ import annotations

import sys

import typer

from sampan.cli.lazy import LazyCommand, LazyGroup

__all__ = ["app", "main"]

_RUN = "sampan.cli.run"
_DEPLOY = "sampan.cli.deploy"
_REGISTRY = "sampan.cli.registry"


class SampanGroup(LazyGroup):
    """`sampan`: each command's module is imported when the command runs; `help` is the --help listing line."""

    lazy_commands = {
        "demo": LazyCommand(_RUN, "app", "Train an SME default model across three simulated Hong Kong banks "
                            "(built-in consortium, FedAvg).", command="demo"),
        "run": LazyCommand(_RUN, "app", "Run a federated training described by a TOML file, or resume one by id.",
                           command="run"),
        "audit": LazyCommand(_RUN, "app", "Attack a finished run's model with membership inference (loss "
                             "threshold and LiRA).", command="audit"),
        "score": LazyCommand("sampan.cli.score", "score_app", "Score loan applications: new applicants from a "
                             "file, or vertical demo ids; only the bank sees the result.", command="score"),
        "runs": LazyCommand(_RUN, "runs_app", "Inspect runs: list, show, report (run store); status, cancel, "
                            "attach (coordinator)."),
        "models": LazyCommand(_REGISTRY, "models_app", "The model registry: list, show and export registered "
                              "models."),
        "audit-log": LazyCommand(_REGISTRY, "audit_log_app", "The signed, hash-chained audit log: verify it, show "
                                 "a run's entries."),
        "synth": LazyCommand("sampan.cli.synth", "synth_app", "Differentially private synthetic tables: fit, "
                             "sample, report, federated demo."),
        "certs": LazyCommand(_DEPLOY, "certs_app", "Consortium certificates: CA, keys and CSRs made locally, "
                             "signing, revocation."),
        "coordinator": LazyCommand(_DEPLOY, "coordinator_app", "The coordinator agent (serves parties' streams "
                                   "and operators' runs)."),
        "party": LazyCommand(_DEPLOY, "party_app", "A party agent (dials out to the coordinator; its data stays "
                             "here)."),
        "submit": LazyCommand(_DEPLOY, "deploy_app", "Submit a run to a coordinator (as an operator, over mutual "
                              "TLS) and follow it.", command="submit"),
        "monitor": LazyCommand("sampan.cli.validate", "monitor_app", "Monitor a served model at the bank: drift "
                               "(PSI), backtests when outcomes arrive, a challenger."),
        "store": LazyCommand("sampan.cli.store_admin", "store_app", "Back up a store (every table) to one archive, "
                             "and restore it into an empty database."),
        "serve": LazyCommand("sampan.cli.serve", "serve_app", "Serve a model over HTTPS at the bank (OpenAPI; "
                             "API tokens and/or mTLS clients)."),
        "consent": LazyCommand("sampan.cli.consent", "consent_app", "A party's own consent: approve a job spec "
                               "locally, add standing rules, show its lifetime budgets."),
        "console": LazyCommand("sampan.cli.console", "console_app", "Start a coordinator, the web console and "
                               "simulated bank agents on this machine (Ctrl-C stops all).", command="console"),
        "control-plane": LazyCommand("sampan.cli.console", "console_app", "Serve a coordinator with its control "
                                     "plane API and web console (HTTPS; see docs/deploy.md).",
                                     command="control-plane"),
        "portal": LazyCommand("sampan.cli.portal", "portal_app", "Start the verification portal on this machine: "
                              "vendors register, qualify and evaluate their FL platform.", command="portal"),
        "verify": LazyCommand("sampan.cli.verify", "verify_app", "Verify an FL platform through the Benchmark API: "
                              "test catalogue, HTML/PDF/JSON/JUnit reports, comparisons."),
        "fraud": LazyCommand("sampan.cli.fraud", "fraud_app", "Detect AI-forged loan documents: train the detector "
                             "across banks (a simulation: every bank runs in this one process), scan images, render "
                             "detection reports."),
        "watermark": LazyCommand("sampan.cli.watermark", "watermark_app", "Invisible keyed watermarks for "
                                 "AI-generated images: make a key, embed, detect (a p-value), run the attack suite."),
        "qr": LazyCommand("sampan.cli.qr", "qr_app", "Anti-counterfeit QR codes: issuer keys, signed item codes "
                          "with a copy-detection pattern, verification, quishing checks, reports."),
    }


app = typer.Typer(cls=SampanGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Sampan: federated credit models across institutions; records never leave their owner.\n\n"
                       "Errors end in one line and an exit code (2 fix the input, 3 a party, 4 privacy budget, "
                       "5 protocol check, 130 cancelled); SAMPAN_DEBUG=1 shows the traceback.")


def _print_version(value: bool) -> None:
    if value:
        from sampan import __version__

        typer.echo(f"sampan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool | None = typer.Option(None, "--version", callback=_print_version, is_eager=True,
                                                 help="Print Sampan's version and exit.")) -> None:
    pass  # options of `sampan` itself; the help text is the app's


def main() -> None:  # pragma: no cover - the console script
    """The `sampan` console script (and `python -m sampan.cli`)."""
    from sampan.cli.error_path import quiet_broken_pipe

    try:
        app()
    except BrokenPipeError:  # while printing the root --help, before any command ran
        try:
            quiet_broken_pipe()
        except typer.Exit as stop:
            sys.exit(stop.exit_code)
