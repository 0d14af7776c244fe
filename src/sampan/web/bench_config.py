"""Benchmark job settings with rules of their own: the aggregator (TaskSpec.aggregator -> Sampan's [strategy],
and what Sampan refuses) and a vertical job's split of the aligned rows (`vertical_fractions`).

Why a module of its own: `bench_jobs.config_data` builds the whole run config; the choice of aggregator has its own
rules (which protocols can run a robust aggregator at all, how many parties each needs, how much a trimmed mean must
trim to trim anything) and they are checked before a job's thread starts, so the verifier gets `unsupported` with
the reason instead of a failed job.

Sampan's robust aggregators (`sampan.horizontal.aggregators`: coordinate median, trimmed mean, Krum) need every
party's update in the clear at the coordinator. Under secure aggregation the coordinator sees only the masked sum,
and Sampan's DP3 replaces the aggregator by a noisy clipped mean, so both refuse a robust aggregator; a vertical job
has no party updates to aggregate.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from sampan.verify.api import TaskSpec
from sampan.verify.backend import BackendError

__all__ = ["ROBUST", "aggregator_of", "check_aggregator", "strategy_section", "vertical_fractions"]

ROBUST = ("median", "trimmed_mean", "krum")
KRUM_BYZANTINE = 1  # Krum's assumed number of Byzantine parties: one (the verifier runs one party)


def aggregator_of(spec: TaskSpec) -> str:
    """The aggregator the spec asks for ("mean" when the field is absent or unset)."""
    return str(getattr(spec, "aggregator", None) or "mean")


def check_aggregator(spec: TaskSpec) -> None:
    """Refuse, with the reason, an aggregator Sampan cannot run for this spec."""
    name = aggregator_of(spec)
    if name == "mean":
        return
    if name not in ROBUST:
        raise BackendError("unsupported", f"aggregator {name!r}: Sampan runs mean, median, trimmed_mean or krum",
                           "aggregator")
    if spec.kind != "horizontal":
        raise BackendError("unsupported", f"aggregator {name!r}: a vertical job has no party updates to aggregate "
                           "(the parties train one model jointly under secret sharing)", "aggregator")
    if spec.secure_aggregation:
        raise BackendError("unsupported", f"aggregator {name!r} with secure_aggregation: under SecAgg+ the "
                           "coordinator sees only the sum of the masked updates, never one party's update, and a "
                           "median, trimmed mean or Krum needs every update; use aggregator 'mean'", "aggregator")
    if spec.dp is not None:
        raise BackendError("unsupported", f"aggregator {name!r} with dp: Sampan's DP3 is a clipped mean with Gaussian "
                           "noise calibrated to that mean's sensitivity, so it replaces the aggregator; use "
                           "aggregator 'mean'", "aggregator")
    n = len(spec.features)
    need = {"median": 3, "trimmed_mean": 3, "krum": KRUM_BYZANTINE + 3}[name]
    if n < need:
        raise BackendError("unsupported", f"aggregator {name!r} needs at least {need} parties to outvote one "
                           f"Byzantine party; this job has {n}", "aggregator")


def strategy_section(spec: TaskSpec) -> dict[str, Any]:
    """The run config's [strategy] entries for the spec's aggregator ({} for the mean: Sampan's default).

    A trimmed mean drops at least one update at each end: Sampan's default trim_fraction (0.1) trims nothing below
    ten parties, so the fraction is raised to 1/n (still under one half, as the aggregator requires)."""
    name = aggregator_of(spec)
    if name == "mean":
        return {}
    section: dict[str, Any] = {"aggregator": name}
    n = len(spec.features)
    if name == "trimmed_mean":
        section["trim_fraction"] = min(max(0.1, 1.0 / n + 1e-9), 0.49)  # + 1e-9: floor(n * f) is 1, not 0.99…
    if name == "krum":
        section["byzantine"] = KRUM_BYZANTINE
    return {"strategy": section}


# --- vertical: how Sampan splits the aligned rows of a benchmark job ---------------------------------------------

SPLIT_MARGIN = 0.75  # the aligned rows are not known before PSI: sizes assume at least 75% of the smallest table


def vertical_fractions(spec: TaskSpec, folder: Path) -> dict[str, float]:
    """[vertical] test_fraction and val_fraction for a benchmark job: as few rows as Sampan's own checks need.

    Why: the verifier scores the model on its own holdout, so Sampan's internal test rows only feed its own report,
    and Sampan's defaults (20% test + 15% validation) took 35% of the aligned rows from training. On German credit
    (600 aligned rows) that alone cost about 0.02 AUC against the pooled baseline (an exact Newton fit on 65% of the
    rows, docs/verification/sampan-adapter.md), and 15% validation was fewer rows than one validation batch when a
    party has 23 or more model columns, the label holder's intercept included (the job failed). Now: test rows at
    least `MIN_EVALUATION_ROWS` (the bank's evaluation rule) and validation rows at least one batch of the widest
    party, each with a margin for an intersection smaller than the smallest table, and 5% each on large tables
    (where rows are plenty)."""
    from sampan.vertical.rows import MIN_EVALUATION_ROWS
    from sampan.vertical.secure_lr import min_batch_rows

    n = min((_rows(folder / f"{party}.csv") for party in spec.features), default=0)
    if n <= 0:
        return {}
    widest = max(len(columns) for columns in spec.features.values()) + 1  # the label holder's ones column
    batch = min_batch_rows(widest)  # a validation batch: the rows one batch needs (security rule, not batch_size)
    test = max(math.ceil((MIN_EVALUATION_ROWS + 4) / SPLIT_MARGIN), 0.05 * n) / n
    val = max(math.ceil(batch / SPLIT_MARGIN), 0.05 * n) / n
    test, val = min(test, 0.2), min(val, 0.45)
    return {"test_fraction": round(test, 6), "val_fraction": round(val, 6)}


def _rows(path: Path) -> int:
    """Data rows of a table `bench_jobs.write_table` wrote (0 when it is not there: the deployed mode's parties)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return max(sum(1 for _ in csv.reader(fh)) - 1, 0)
    except FileNotFoundError:
        return 0
