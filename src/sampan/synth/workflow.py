"""Federated synthesis as a `Workflow`: the coordinator fits one DP synthesiser over ``ctx.transport``.

The plan is the fitter's (`sampan.synth.fit`); the banks are `RemoteMeasurer`s (`sampan.synth.coordinator`)
and the sums are `PlainSum` or `SecureSum` strategies over exchanges (`sampan.synth.aggregate`), every
party of a stage in one exchange. Each release is charged to the run's ledger and persisted through
``ctx.recorder.charge`` before it is requested; each bank charges its own ledger again before it
releases (`sampan.synth.party`). The coordinator fits the model from the released sums, samples the
synthetic table, writes it, and returns the model as arrays + JSON.

Evaluation against real data (fidelity against the real table, train-on-synthetic-test-on-real,
privacy evaluation) needs records, so it stays party-local or simulation-only (`sampan synth report`,
`sampan synth federated`); the workflow's metrics are what the coordinator can compute from the
releases and the synthetic table alone.

What each role learns: as in `sampan.synth.fit` (federated): the coordinator, every bank's noisy
release (plain) or only the sums (SecAgg+), and each bank's EM-chosen tree; a bank, only public
post-processing of the sums. Whoever reads the written table or the model: post-processing of the
releases listed in the receipt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.core.transport import Transport
from sampan.core.workflow import ModelArtifact, RunContext, Workflow, WorkflowResult
from sampan.privacy.ledger import Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.synth import fit as fit_mod
from sampan.synth import protocol
from sampan.synth.aggregate import PlainSum, SecureSum, secure_sum_floor
from sampan.synth.coordinator import RemoteMeasurer, SynthesisChannel
from sampan.synth.fit import SynthConfig
from sampan.synth.model import SynthModel
from sampan.synth.programmable import generate
from sampan.synth.schema import SynthSchema
from sampan.synth.settings import SynthesisSettings
from sampan.synth.table import Table, write_csv_table

__all__ = ["SynthesisOutcome", "SynthesisWorkflow", "fit_federated", "fit_over_transport"]


def fit_over_transport(transport: Transport, run_id: str, schema: SynthSchema, config: SynthConfig, *,
                       parties: Sequence[str], secure: bool, ledger: Ledger,
                       persist: Any = None, rng: np.random.Generator | None = None,
                       coordinator: str = "coordinator") -> SynthModel:
    """Fit one synthesiser with ``parties`` reached only through ``transport``.

    ``ledger``: the run's ledger (RDP, a budget per party); ``persist(detail)`` is called after each
    charge and before the request it covers leaves (the runner's write-ahead). ``rng``: replaces the
    coordinator's CSPRNG for the tree vote (reproducible runs; the receipt says so).
    """
    parties = list(parties)
    if not parties:
        raise ValueError("federated synthesis needs at least one party")
    if secure:
        secure_sum_floor(parties)  # before any request: says why fewer than three cannot sum securely
    book = fit_mod._ledger(parties, config, ledger)
    channel = SynthesisChannel(transport, run_id, parties, coordinator)
    aggregator: PlainSum | SecureSum = SecureSum(parties, channel) if secure else PlainSum(channel)
    channel.exchange(protocol.OPEN, {p: ({}, {"schema": schema.to_dict(), "secure": secure, "parties": parties})
                                     for p in parties})
    siblings: list[RemoteMeasurer] = []
    measurers = {p: RemoteMeasurer(p, channel, schema, book, persist or (lambda detail: None), siblings)
                 for p in parties}
    siblings.extend(measurers.values())
    return fit_mod._fit(measurers, schema, config, book, rng, aggregator)


@dataclass
class SynthesisOutcome:
    """For Python callers: the fitted model and the synthetic table."""

    model: SynthModel
    synthetic: Table
    output: Path | None


class SynthesisWorkflow(Workflow):
    """Fit, sample, write: one stage, not resumable mid-fit (a resumed run starts from the persisted ledger,
    so releases made before a crash stay spent)."""

    name = "synthesis"

    def __init__(self, settings: SynthesisSettings | None = None) -> None:
        self.settings = settings

    def run(self, ctx: RunContext) -> WorkflowResult:
        settings = self.settings or SynthesisSettings.from_config(ctx.config)
        parties = list(settings.parties or ctx.transport.parties)
        config = settings.synth_config()
        prior = ctx.recorder.ledger()
        ledger = Ledger.from_json(prior) if prior else fit_mod._ledger(parties, config, None)
        rng = seeded_generator(ctx.seed) if settings.reproducible else None
        ctx.check_cancelled()
        ctx.progress("stage", {"stage": "fit"})
        started = time.perf_counter()

        def persist(detail: Mapping[str, Any]) -> None:
            ctx.recorder.charge(ledger.to_json(), detail)

        model = fit_over_transport(ctx.transport, ctx.run_id, settings.schema, config, parties=parties,
                                   secure=settings.secure_aggregation, ledger=ledger, persist=persist, rng=rng,
                                   coordinator=ctx.coordinator)
        ctx.check_cancelled()
        ctx.progress("stage", {"stage": "sample"})
        rows = settings.rows or max(int(round(model.n_hat)), 1)
        sample_rng = seeded_generator(ctx.seed + 1) if settings.reproducible else None
        synthetic, report = generate(model, rows, rng=sample_rng)
        model_dir, output = _paths(settings, ctx)
        if model_dir is not None:
            model.save(model_dir)
        output = write_csv_table(synthetic, model.schema, output) if output is not None else None
        seconds = time.perf_counter() - started
        return WorkflowResult(
            final_metrics=_metrics(model, rows, seconds),
            models=[ModelArtifact(settings.model_name, model.arrays(), model.to_dict())],
            info={"synthesis": _info(model, report.to_dict(), output), "privacy": ledger.summary(),
                  "receipt": _receipt_terms(model, settings)},
            outcome=SynthesisOutcome(model, synthetic, output),
        )


def _paths(settings: SynthesisSettings, ctx: RunContext) -> tuple[Path | None, Path | None]:
    """The model folder (``model_dir``, default ``<run.report_dir>/<run>/synth-model`` for a run config) and
    the synthetic CSV (``output``, default ``synthetic.csv`` beside the model folder)."""
    model_dir = Path(settings.model_dir) if settings.model_dir else None
    report_dir = getattr(getattr(ctx.config, "run", None), "report_dir", None)
    if model_dir is None and report_dir:
        model_dir = Path(report_dir) / ctx.run_id / "synth-model"
    output = Path(settings.output) if settings.output else None
    if output is None and model_dir is not None:
        output = model_dir.parent / "synthetic.csv"
    return model_dir, output


def _metrics(model: SynthModel, rows: int, seconds: float) -> dict[str, Any]:
    """What the coordinator knows without records: the noisy size, the structure, the spend."""
    spent = [p["epsilon_spent"] for p in model.receipt["parties"].values()]
    return {"n_hat": float(model.n_hat), "synthetic_rows": rows, "edges": len(model.edges),
            "epsilon_spent_max": float(max(spent)) if spent else 0.0, "seconds": round(seconds, 3)}


def _receipt_terms(model: SynthModel, settings: SynthesisSettings) -> dict[str, Any]:
    """The run receipt's terms for synthesis (`sampan.runtime.receipt`): what each message carries, under what."""
    secure = settings.secure_aggregation
    release = ("a noisy histogram (Gaussian, charged to the party's and the run's ledger before it is computed)"
               + (", masked by SecAgg+ with a 1/sqrt(K) noise share: the coordinator sees only the sum" if secure
                  else ", in the clear: each release carries its party's full noise"))
    protections = {"synth.open": "an empty acknowledgement", "synth.release": release,
                   "synth.select_tree": "tree edges chosen by the exponential mechanism (charged), and the party's "
                                        "record of its releases (noise, charge)"}
    if secure:
        protections.update({"secagg_keys": "signed public keys", "secagg_share": "Shamir shares sealed to peers",
                            "secagg_consistency": "a signature over the survivor set",
                            "secagg_unmask": "shares of mask seeds for the survivors' sum only"})
    return {
        "threat_model": model.receipt["aggregation"],
        "reveals": {"fit (coordinator)": ("the sums of the banks' noisy releases only" if secure else
                                          "every bank's noisy release") + ", and each bank's EM-chosen tree",
                    "fit (bank)": "the public schema, grids, bins, baselines and coarsening maps",
                    "model and synthetic table": "post-processing of the charged releases"},
        "protections": protections,
        "messages": protocol.receipt_rows(secure),
        "noise_multipliers": {k: v for k, v in model.info["sigma"].items() if v is not None},
        "randomness": ("DP noise, keys and masks from the operating system's CSPRNG" if not settings.reproducible
                       else "noise seeded from the run seed: reproducible, NOT private (tests/demos only)"),
        "unit_of_privacy": model.receipt["unit_of_privacy"],
    }


def _info(model: SynthModel, sample_report: Mapping[str, Any], output: Path | None) -> dict[str, Any]:
    receipt = model.receipt
    return {
        "aggregation": receipt["aggregation"],
        "parties": {name: {"epsilon_spent": p["epsilon_spent"], "releases": len(p["releases"])}
                    for name, p in receipt["parties"].items()},
        "sample_report": dict(sample_report),
        "output": str(output) if output is not None else None,  # the synthetic CSV, if written
        "evaluation": ("fidelity, utility (TSTR) and privacy evaluation need the real records: they run at a "
                       "data owner (`sampan synth report`) or in simulation (`sampan synth federated`), not here"),
    }


# -- simulation: the same workflow path, parties behind a transport the caller picks ---------------------------------

def simulated_setups(tables: Mapping[str, Mapping[str, np.ndarray]], *, epsilon: float, delta: float,
                     secure: bool, schema: SynthSchema,
                     noise_seeds: Mapping[str, int] | None = None) -> dict[str, PartySetup]:
    """Each simulated bank's setup: its table, the job it accepted (budget, mode and the agreed schema, as a
    deployed job carries them: a bank refuses a synthesis job without a schema), and (SecAgg) a simulated CA
    identity."""
    from sampan.crypto.simulated_ca import simulated_consortium

    parties = list(tables)
    job: dict[str, Any] = {"workflow": "synthesis", "parties": parties,
                           "synthesis": {"epsilon": epsilon, "delta": delta, "secure_aggregation": secure,
                                         "schema": schema.to_dict()}}
    verifier, identities = simulated_consortium(parties) if secure and len(parties) >= 3 else (None, {})
    return {p: PartySetup(p, data=tables[p], job=job, identity=identities.get(p), verifier=verifier,
                          options={"noise_seed": noise_seeds[p]} if noise_seeds else {})
            for p in parties}


def fit_federated(tables: Mapping[str, Mapping[str, np.ndarray]], schema: SynthSchema, config: SynthConfig, *,
                  transport: Callable[[dict[str, PartyApp]], Transport], secure_aggregation: bool = False,
                  ledger: Ledger | None = None, rng: np.random.Generator | None = None) -> SynthModel:
    """One synthesiser for a simulated consortium: each bank's handlers behind ``transport(apps)`` (the caller
    picks it, e.g. `sampan.transport.inprocess.InProcessTransport`, which encodes every message as gRPC would);
    the same handlers and coordinator code run in a deployment. ``rng``: seeds each bank's noise and the
    coordinator's tree vote (reproducible, NOT private). ``secure_aggregation``: SecAgg+ with distributed noise
    (`sampan.synth.aggregate`). A run with a store, receipt and report goes through the runner instead.
    """
    from sampan.synth.party import synthesis_party_app

    parties = list(tables)
    if not parties:
        raise ValueError("federated synthesis needs at least one party")
    if secure_aggregation:
        secure_sum_floor(parties)
    seeds = {p: int(rng.integers(2**62)) for p in parties} if rng is not None else None
    setups = simulated_setups(tables, epsilon=config.epsilon, delta=config.delta, secure=secure_aggregation,
                              schema=schema, noise_seeds=seeds)
    channel = transport({p: synthesis_party_app(s) for p, s in setups.items()})
    try:
        return fit_over_transport(channel, f"synth-{os.urandom(8).hex()}", schema, config, parties=parties,
                                  secure=secure_aggregation, ledger=fit_mod._ledger(parties, config, ledger), rng=rng)
    finally:
        channel.close()
