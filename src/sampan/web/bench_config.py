"""A benchmark job's aggregator: TaskSpec.aggregator -> Sampan's [strategy] section, and what Sampan refuses.

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

from typing import Any

from sampan.verify.api import TaskSpec
from sampan.verify.backend import BackendError

__all__ = ["ROBUST", "aggregator_of", "check_aggregator", "strategy_section"]

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
