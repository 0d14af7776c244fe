"""The checks job's terms: what a party approves about each release, and the check that holds a request to them.

Why (reviews R14-CHECKS-2/4): a party must answer the releases the job it approved announced, not whatever the
coordinator asks. The job description each party is told (`sampan.checks.capability.checks_job` in a simulation,
`sampan.deploy.allow.job_description` deployed: both call `job_terms`) carries, under ``job["checks"]``:
- ``dp``: each release's epsilon (label, and the histograms in a horizontal job or the overlap count in a vertical
  one) and ``budget_epsilon``, the most the job spends at any one party (what a consent approval reserves);
  None in a job without DP;
- ``histogram`` (horizontal jobs only: a vertical job compares no histograms): the bins, the columns (None:
  every column with public bounds) and the [checks] bounds.
A request is then held to them exactly (`check_release_epsilon`, `check_histogram`): a different epsilon, other
bins, a column the job does not name, bounds other than the job's or the party's declared ones, or a column asked
twice (which would tile it into narrow windows) are refused, at the agent (`sampan.deploy.allow_checks`) and again
by the party itself (`sampan.checks.privacy`, `sampan.checks.party`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sampan.config.checks import ChecksSection
from sampan.privacy.party_policy import PolicyRefused

__all__ = ["EPSILON_OF", "check_histogram", "check_release_epsilon", "checks_budget", "job_terms"]

EPSILON_OF = {"checks.label": "label_epsilon", "checks.histogram": "histogram_epsilon",
              "checks.overlap": "overlap_epsilon"}


def checks_budget(settings: ChecksSection, n_parties: int, *, vertical: bool = False) -> float:
    """The most epsilon a checks job spends at any one party (its [checks.dp] budget_epsilon, else: horizontal, the
    label and the histograms; vertical, the label holder's label and one overlap count per partner): what a party
    reserves when it approves the job. 0 without DP."""
    dp = settings.dp
    if dp is None:
        return 0.0
    if dp.budget_epsilon is not None:
        return float(dp.budget_epsilon)
    if vertical:
        return float(dp.label_epsilon + dp.overlap_epsilon * max(n_parties - 1, 1))
    return float(dp.label_epsilon + dp.histogram_epsilon)


def job_terms(settings: ChecksSection, *, vertical: bool, n_parties: int) -> dict[str, Any]:
    """``job["checks"]``: the per-release epsilons and (horizontal) histogram settings the party approves."""
    dp: dict[str, Any] | None = None
    if settings.dp is not None:
        dp = {"label_epsilon": float(settings.dp.label_epsilon),
              "budget_epsilon": checks_budget(settings, n_parties, vertical=vertical)}
        if vertical:
            dp["overlap_epsilon"] = float(settings.dp.overlap_epsilon)
        else:
            dp["histogram_epsilon"] = float(settings.dp.histogram_epsilon)
    terms: dict[str, Any] = {"dp": dp}
    if not vertical:
        terms["histogram"] = {"bins": int(settings.bins),
                              "columns": list(settings.columns) if settings.columns is not None else None,
                              "bounds": {k: [float(v[0]), float(v[1])] for k, v in sorted(settings.bounds.items())}}
    return terms


def check_release_epsilon(party: str, kind: str, epsilon: float | None, job: Mapping[str, Any]) -> None:
    """A release under a job with stated epsilons carries exactly the job's epsilon for its kind."""
    dp = (job.get("checks") or {}).get("dp") if isinstance(job.get("checks"), Mapping) else None
    if not isinstance(dp, Mapping):
        return
    announced = dp.get(EPSILON_OF[kind])
    if announced is None:
        raise PolicyRefused(f"party {party!r} refuses {kind}: the checks job it approved announced no such release")
    if epsilon is None or not math.isclose(float(epsilon), float(announced), rel_tol=1e-12, abs_tol=0.0):
        raise PolicyRefused(f"party {party!r} refuses {kind} at epsilon {epsilon!r}: the checks job it approved "
                            f"announced epsilon {announced}")


def check_histogram(party: str, job: Mapping[str, Any], columns: Any, bins: Any,
                    declared: Mapping[str, Any] | None = None) -> None:
    """Refuse a ``checks.histogram`` request that is not the job's: other bins, a column the job does not name or
    named twice, bounds other than the job's [checks] bounds or (when the job gives none for the column) the
    party's own declared schema bounds. ``declared``: the party's declared schema (None at the agent, which then
    holds only what the job states)."""
    terms = (job.get("checks") or {}).get("histogram") if isinstance(job.get("checks"), Mapping) else None
    if job.get("vertical") or not isinstance(terms, Mapping):
        raise PolicyRefused(f"party {party!r} refuses checks.histogram: the checks job it approved compares no "
                            "histograms" + (" (a vertical job)" if job.get("vertical") else " (no histogram terms)"))
    if isinstance(bins, bool) or not isinstance(bins, int) or bins != int(terms["bins"]):
        raise PolicyRefused(f"party {party!r} refuses checks.histogram with {bins!r} bins: the job announced "
                            f"{terms['bins']}")
    if not isinstance(columns, list) or not columns:
        raise PolicyRefused(f"party {party!r}: checks.histogram needs meta.columns = [[name, low, high], ...]")
    wanted: Sequence[str] | None = terms.get("columns")
    bounds: Mapping[str, Sequence[float]] = terms.get("bounds") or {}
    own = _declared_bounds(declared)
    seen: set[str] = set()
    for entry in columns:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise PolicyRefused(f"party {party!r}: checks.histogram column entries are [name, low, high]")
        name = str(entry[0])
        if name in seen:
            raise PolicyRefused(f"party {party!r} refuses checks.histogram: column {name!r} is asked for twice")
        seen.add(name)
        if wanted is not None and name not in wanted:
            raise PolicyRefused(f"party {party!r} refuses checks.histogram of column {name!r}: the job compares "
                                f"{list(wanted)}")
        pair = bounds.get(name) if name in bounds else own.get(name) if declared is not None else None
        if name not in bounds and declared is None:
            continue  # the agent cannot see the declared schema: the party's own check holds these bounds
        try:
            low, high = float(entry[1]), float(entry[2])
        except (TypeError, ValueError):
            raise PolicyRefused(f"party {party!r}: column {name!r} bounds are not numbers") from None
        if pair is None or (low, high) != (float(pair[0]), float(pair[1])):
            raise PolicyRefused(f"party {party!r} refuses checks.histogram of column {name!r} over [{low}, {high}]: "
                                f"not the public bounds the job or its schema states ({pair})")


def _declared_bounds(schema: Mapping[str, Any] | None) -> dict[str, Sequence[float]]:
    out: dict[str, Sequence[float]] = {}
    for spec in (schema or {}).get("features") or ():
        if isinstance(spec, Mapping) and spec.get("bounds") is not None:
            out[str(spec["name"])] = spec["bounds"]
    return out
