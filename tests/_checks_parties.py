"""Helpers for the checks tests: three banks with a declared schema, their apps, a run through the runner."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sampan.checks.capability import CHECKS
from sampan.config import parse_config
from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.runtime.runner import FinishedRun, start_run
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport

FEATURES = ["age", "utilisation", "delinquencies"]
BOUNDS = {"age": [18.0, 80.0], "utilisation": [0.0, 1.0], "delinquencies": [0.0, 10.0]}
SCHEMA: dict[str, Any] = {"id": "id", "label": "y",
                          "features": [{"name": n, "bounds": BOUNDS[n]} for n in FEATURES]}
BANKS = ("bank_0", "bank_1", "bank_2")


def bank_table(name: str, n: int, rng: np.random.Generator, *, shift: float = 0.0, rate: float = 0.1) -> PartyData:
    """Rows of one bank; ``shift`` moves its utilisation (drift), ``rate`` sets its default rate."""
    X = np.column_stack([rng.uniform(20, 70, n), np.clip(rng.beta(2, 5, n) + shift, 0, 1),
                         rng.poisson(1.0, n).astype(float)])
    y = (rng.random(n) < rate).astype(np.int8)
    return PartyData(name, np.array([f"{name}-{i}" for i in range(n)], dtype=object), X, y, FEATURES)


def banks(seed: int = 11, shifted: str | None = None) -> dict[str, PartyData]:
    rng = np.random.default_rng(seed)
    return {name: bank_table(name, 300 + 50 * i, rng, shift=0.35 if name == shifted else 0.0)
            for i, name in enumerate(BANKS)}


def config(checks: Mapping[str, Any] | None = None, tmp_path: Path | None = None) -> Any:
    # no report unless the test gives a folder for it (the default, ./sampan-reports, is next to the repository)
    run: dict[str, Any] = {"name": "checks-test", "workflow": "checks", "seed": 5,
                           "report_dir": str(tmp_path / "reports") if tmp_path is not None else ""}
    return parse_config({"run": run, "schema": SCHEMA, "checks": dict(checks or {}),
                         "parties": [{"name": b, "path": "unused.csv"} for b in BANKS]})


def transport(tables: Mapping[str, PartyData], cfg: Any, schemas: Mapping[str, Any] | None = None
              ) -> InProcessTransport:
    """The banks' checks apps, each told the job `cfg` announces and its own declared schema."""
    from sampan.checks.capability import checks_job

    job = checks_job(cfg)
    return InProcessTransport({name: CHECKS.party_app(PartySetup(name, data, job, options={
        "schema": dict((schemas or {}).get(name, SCHEMA))})) for name, data in tables.items()})


def run(cfg: Any, tables: Mapping[str, PartyData], store: Store | None = None,
        schemas: Mapping[str, Any] | None = None, via: InProcessTransport | None = None) -> FinishedRun:
    return start_run(cfg, store or Store.open("sqlite://"), transport=via or transport(tables, cfg, schemas))
