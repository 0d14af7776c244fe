"""The deployed gate for `evaluate_groups` (fairness by group, issue 13 item 8): what a job announces, what a bank
then answers.

A job announces the exact groups the consortium declared (`announced_groups`: per `[evaluation] groups` column
its name and, for a numeric one, its `group_bands` cut points), so the bank's consent covers WHICH groupings of
its holdout leave. `check_groups_request` admits only a request whose specs are exactly those, in order (review
R13-GRP-5: a job announcing ``groups: True`` let a coordinator band any column around one customer's value);
a category's levels are then checked by the bank's own mod against its one-hot columns
(`sampan.horizontal.group_evaluation.check_specs`). Also: never where the bank requires secure aggregation
(per-bank counts), noised (``group_dp``, at or above the floor) when the job announced DP or the list requires
it. The bank's mod enforces the rest (once per run, after its evaluation, on an evaluated model).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sampan.deploy.allow_impute import noise_field
from sampan.deploy.allow_section import AllowSection, JobRefused

__all__ = ["announced_groups", "check_groups_request"]


def announced_groups(config: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The group specs a horizontal job announces, from the stored run config (None: no fairness by group)."""
    evaluation = config.get("evaluation") or {}
    groups, bands = evaluation.get("groups"), evaluation.get("group_bands") or {}
    if not groups:
        return None
    return [{"column": str(c), **({"cuts": [float(x) for x in bands[c]]} if c in bands else {})} for c in groups]


def _asked(specs: Any) -> list[dict[str, Any]] | None:
    """A request's specs in the announced form (None if they cannot be: the comparison then refuses)."""
    if not isinstance(specs, list) or not all(isinstance(s, Mapping) for s in specs):
        return None
    try:
        return [{"column": s.get("column"), **({"cuts": [float(x) for x in s["cuts"]]} if "cuts" in s else {})}
                for s in specs]
    except (TypeError, ValueError):
        return None


def check_groups_request(allow: AllowSection | None, party: str, meta: Mapping[str, Any],
                         job: Mapping[str, Any] | None, announced: set[str], require: Collection[str]) -> None:
    """`evaluate_groups` only in a job that announced these groups (see the module docstring)."""
    if job is not None and not job.get("groups"):
        raise JobRefused(party, "request", "'evaluate_groups' is not a request of the horizontal job this party "
                         "accepted (the job did not announce fairness by group)")
    if job is not None:
        declared = job["groups"]
        if not isinstance(declared, list):
            raise JobRefused(party, "job", "'evaluate_groups': the job this party accepted did not announce which "
                             "groups (columns and bands) it reports, so none is answered")
        if _asked(meta.get("groups")) != declared:
            raise JobRefused(party, "job", f"'evaluate_groups' asks for groups {meta.get('groups')!r}; the job "
                             f"announced {declared!r}")
    if "secure_aggregation" in require:
        raise JobRefused(party, "require", "'evaluate_groups' sends this party's group counts in clear, and it "
                         "requires secure aggregation")
    if ("dp" in announced or {"dp", "dp1"} & set(require)) and "group_dp" not in meta:
        raise JobRefused(party, "require", "'evaluate_groups' under DP must noise the group counts (group_dp)")
    floor = allow.min_noise_multiplier if allow is not None else None
    z = noise_field(party, meta, "group_dp")
    if floor is not None and "group_dp" in meta and (isinstance(z, bool) or not isinstance(z, (int, float))
                                                    or float(z) < floor):
        raise JobRefused(party, "min_noise_multiplier", f"group counts noise multiplier {z!r} < {floor}")
