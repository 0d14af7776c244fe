"""SYNTHESIS: federated DP synthesis as a capability (workflow + party app + simulation setups).

Note for the run config (helper F, issue 12): ``run.workflow = "synthesis"`` and a ``[synthesis]``
section, read by `sampan.synth.settings.SynthesisSettings.from_config`. Fields it reads (the run
config's `SynthesisSection` names first, this module's aliases in brackets):

    [synthesis]
    epsilon = 1.0               # required: each party's budget for this fit (record level, > 0)
    delta = 1e-5                # (0, 1)
    secure_sum = true           # [secure_aggregation] SecAgg+ with distributed noise (>= 3 parties)
    tree = true                 # optional bool; absent = decided from the noisy row count
    max_bins = 32
    n_rows = 5000               # [rows] synthetic rows to sample (default: the noisy row count)
    out = "models/synth"        # [model_dir] model folder (default <run.report_dir>/<run>/synth-model)
    # also read when present: schema (built-in name, file or dict; default: [schema] via
    # SynthSchema.from_table, or "sme" for [source] kind = "consortium"), output (synthetic CSV; default
    # synthetic.csv beside the model folder), model_name, parties, reproducible (tests/demos: NOT private)

Parties come from the run config's usual bindings: ``[[parties]]`` (name, path: a CSV read under the
schema at that party) or ``[source] kind = "consortium"`` (the built-in SME banks, ``n_smes``). A
deployed agent's job must carry ``job["synthesis"] = SynthesisSettings.job()`` (budget, mode, schema)
and ``job["parties"]``: the party checks every request against them (`sampan.synth.party`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.synth.party import synthesis_party_app
from sampan.synth.settings import SynthesisSettings
from sampan.synth.table import Table, read_csv_table
from sampan.synth.workflow import SynthesisWorkflow, simulated_setups

__all__ = ["SYNTHESIS", "SynthesisCapability"]


def _get(config: Any, name: str) -> Any:
    return config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)


def simulated_tables(config: Any, settings: SynthesisSettings, seed: int) -> dict[str, Table]:
    """Each party's table, loaded and validated at that party (an error names the party and file)."""
    parties = _get(config, "parties")
    if parties:
        tables = {}
        for entry in parties:
            name, path = str(_get(entry, "name")), str(_get(entry, "path"))
            if (_get(entry, "format") or "csv") != "csv" and not path.endswith(".csv"):
                raise ValueError(f"party {name!r}: synthesis reads CSV tables, got {path!r}")
            tables[name] = read_csv_table(path, settings.schema)
        return tables
    source = _get(config, "source")
    if source is not None and _get(source, "kind") == "consortium":
        from sampan.synth.demo import consortium_tables
        return dict(consortium_tables(int(_get(source, "n_smes") or 12_000), seed))
    raise ValueError("synthesis needs data parties: [[parties]] with CSV paths, or [source] kind = 'consortium'")


class SynthesisCapability:
    name = "synthesis"

    def workflow(self, config: Any) -> SynthesisWorkflow:
        return SynthesisWorkflow(SynthesisSettings.from_config(config))

    def party_app(self, setup: PartySetup) -> PartyApp:
        return synthesis_party_app(setup)

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        settings = SynthesisSettings.from_config(config)
        tables = simulated_tables(config, settings, seed)
        if settings.parties:
            missing = sorted(set(settings.parties) - set(tables))
            if missing:
                raise ValueError(f"synthesis.parties names {missing}, which have no data binding")
            tables = {p: tables[p] for p in settings.parties}
        seeds = None
        if settings.reproducible:  # tests/demos only: every party's noise from the run seed
            children = np.random.SeedSequence(seed).spawn(len(tables))
            seeds = {p: int(c.generate_state(1, np.uint64)[0] >> np.uint64(2))
                     for p, c in zip(tables, children, strict=False)}
        return simulated_setups(tables, epsilon=settings.epsilon, delta=settings.delta,
                                secure=settings.secure_aggregation, noise_seeds=seeds, schema=settings.schema)


SYNTHESIS = SynthesisCapability()
