"""Per-request checks of a horizontal (or evaluation) job at a party agent: the branch of
`sampan.deploy.allow_requests.check_request` for the workflows that share each party's updates, so a
coordinator cannot run a fit, statistic or evaluation other than the job the party accepted (the rules are
listed in `check_request`'s docstring).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sampan.deploy.allow_groups import check_groups_request
from sampan.deploy.allow_impute import check_impute_request, noise_field
from sampan.deploy.allow_kinds import HGB_KINDS, HORIZONTAL_KINDS, TREE_JOB_KINDS
from sampan.deploy.allow_section import AllowSection, JobRefused
from sampan.deploy.allow_training import check_training

__all__ = ["check_horizontal_request"]


def check_horizontal_request(
    allow: AllowSection | None, party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any] | None
) -> None:
    """A request of a horizontal or evaluation job (or of a run with no job) against `[allow]` and the job:
    its kinds, the DP and SecAgg it announced or the list requires, noise at or above the floor."""
    if job is not None and kind == "fit" and isinstance(job.get("training"), Mapping):
        check_training(party, meta, job)
    announced = set(job.get("protections") or []) if job is not None else set()
    require = set(allow.require) if allow is not None else set()
    if job is not None and kind in HGB_KINDS and job.get("model") == "gbdt" and job.get("workflow") == "horizontal":
        if "secure_aggregation" in require | announced:  # review R12-HOR-2: tree histograms are exact, per bank
            raise JobRefused(
                party,
                "require",
                f"{kind!r}: horizontal GBDT has no secure aggregation, which this party requires or the job announced",
            )
        needs_dp = "gbdt_dp" in announced or require & {"dp", "gbdt_dp"}
        if kind in ("hgb.sketch", "hgb.hist") and needs_dp and "dp" not in meta:
            raise JobRefused(party, "require", f"{kind!r} carries no dp in a horizontal GBDT job under DP (exact "
                             "tree statistics would leave)")
        announced_bins = (job.get("gbdt") or {}).get("n_bins")
        if kind == "hgb.sketch" and announced_bins is not None and meta.get("n_bins") != announced_bins:
            raise JobRefused(party, "job", f"'hgb.sketch' asks for n_bins={meta.get('n_bins')!r}; the job announced "
                             f"{announced_bins} (more cut points would reveal more order statistics)")
        floor = allow.min_noise_multiplier if allow is not None else None
        _floor(party, "GBDT histogram", noise_field(party, meta, "dp"), floor, "dp" in meta)
        return  # the tree handlers exist only in a gbdt job; the bank's DP mod enforces the rest (gbdt_dp)
    if job is not None and job.get("model") == "gbdt" and job.get("workflow") == "horizontal" and (
            kind not in TREE_JOB_KINDS):  # review R13-HGB-4: no exact fit/stats in a tree job (no tree DP covers it)
        raise JobRefused(party, "request", f"{kind!r} is not a request of the horizontal GBDT job this party accepted "
                         "(it answers describe, the tree requests and evaluate)")
    if job is not None and job.get("workflow") == "evaluation":  # review R12-HOR-4: evaluate (and its SecAgg) only
        if kind != "evaluate" and not (kind.startswith("secagg_") and "secure_aggregation" in announced):
            raise JobRefused(
                party,
                "request",
                f"{kind!r} is not a request of the evaluation job this party accepted "
                "(it evaluates one model on its holdout)",
            )
    if kind == "bank_alone":  # each bank alone vs the consortium: per bank in clear (never under SecAgg)
        _check_bank_alone(allow, party, meta, job, announced, require)
        return
    if kind == "evaluate_groups":  # fairness by group (issue 13): per bank, never under SecAgg
        check_groups_request(allow, party, meta, job, announced, require)  # `sampan.deploy.allow_groups`
        return
    if job is not None and kind not in HORIZONTAL_KINDS:
        raise JobRefused(party, "request", f"{kind!r} is not a request of the horizontal job this party accepted")
    floor = allow.min_noise_multiplier if allow is not None else None
    if kind == "fit":
        _check_fit(party, meta, job, announced, require)
    elif kind == "evaluate":
        if "secure_aggregation" in require and "secagg" not in meta:
            raise JobRefused(
                party,
                "require",
                "this evaluate request carries no secure_aggregation (per-party score "
                "histograms would travel in clear)",
            )
        if "secure_aggregation" in announced and "secagg" not in meta:  # review R12-HOR-3, as `_check_fit`
            raise JobRefused(
                party,
                "job",
                "this evaluate request carries no secure aggregation, which the job "
                "announced (per-party score histograms and metrics would travel in clear)",
            )
    elif kind == "stats":
        if "dp1" not in meta and (announced & {"dp", "dp1"} or require & {"dp1", "dp"}):  # review R8-3
            raise JobRefused(
                party, "require", "this stats request carries no dp1 (exact feature sums) in a job announced with DP"
            )
        _floor(party, "DP1", noise_field(party, meta, "dp1"), floor, "dp1" in meta)
    elif kind == "impute_stats":  # missing values (issue 13): `sampan.deploy.allow_impute`, then the bank's mod
        check_impute_request(party, meta, floor, announced, require)
    elif kind == "describe":
        if "dp_count" not in meta and ("dp" in announced or require & {"dp", "dp1", "dp2", "dp3"}):
            raise JobRefused(party, "require", "this describe request carries no dp_count (the exact row count)")
        _floor(party, "DP row count", noise_field(party, meta, "dp_count"), floor, "dp_count" in meta)
    elif kind.startswith("secagg_"):
        if job is not None and "secure_aggregation" not in announced:
            raise JobRefused(party, "request", f"{kind!r}: the job this party accepted announced no secure aggregation")
    if kind != "fit" or floor is None:
        return
    if floor is not None:
        dp2, dp3 = meta.get("dp2") or {}, meta.get("dp3") or {}
        if "noise_multiplier" in dp2 and float(dp2["noise_multiplier"]) < floor:
            raise JobRefused(
                party, "min_noise_multiplier", f"DP-SGD noise multiplier {dp2['noise_multiplier']} < {floor}"
            )
        if dp3.get("clip") and "sum_sigma" in dp3:  # record-level multiplier, as the ledger charges it
            from sampan.privacy.dp3 import settings_noise_multiplier

            z3 = settings_noise_multiplier(dp3)
            if z3 < floor:
                raise JobRefused(party, "min_noise_multiplier", f"DP3 noise multiplier {z3:.3g} < {floor}")


def _check_bank_alone(allow: AllowSection | None, party: str, meta: Mapping[str, Any], job: Mapping[str, Any] | None,
                      announced: set[str], require: Collection[str]) -> None:
    """`bank_alone` only in a horizontal job that announced it; never where this party requires secure aggregation
    (the figures travel per bank); DP-SGD for the local-only model when the job announced DP or the list requires
    it, at the job's DP2 settings and this party's floor."""
    if job is not None and not job.get("bank_alone"):
        raise JobRefused(party, "request", "'bank_alone' is not a request of the horizontal job this party accepted "
                         "(the job did not announce each bank alone vs the consortium)")
    if "secure_aggregation" in require:
        raise JobRefused(party, "require", "'bank_alone' sends this party's figures in clear, and it requires secure "
                         "aggregation")
    if ("dp" in announced or "dp2" in announced or {"dp", "dp2"} & set(require)) and "dp2" not in meta:
        raise JobRefused(party, "require", "'bank_alone' under DP must train the local-only model by DP-SGD (dp2)")
    floor = allow.min_noise_multiplier if allow is not None else None
    _floor(party, "DP2 (local-only model)", (meta.get("dp2") or {}).get("noise_multiplier"), floor, "dp2" in meta)
    train, announced_alone = meta.get("train"), (job or {}).get("bank_alone")
    if isinstance(announced_alone, Mapping) and "train" in meta and (  # review R13-DEP-1
            not isinstance(train, Mapping) or train.get("epochs") != announced_alone.get("epochs")
            or train.get("max_steps") is not None):
        raise JobRefused(party, "job", f"'bank_alone' asks for training {train!r}; the job announced "
                         f"{announced_alone.get('epochs')} epochs")
    model = meta.get("model")
    kind = model.get("kind") if isinstance(model, Mapping) else model
    if job is not None and job.get("model") is not None and "model" in meta and kind != job["model"]:
        raise JobRefused(party, "job", f"'bank_alone' names model {kind!r}; the job announced {job['model']!r}")


def _floor(party: str, what: str, value: Any, floor: float | None, present: bool) -> None:
    if floor is None or not present:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) < floor:
        raise JobRefused(party, "min_noise_multiplier", f"{what} noise multiplier {value!r} < {floor}")


def _check_fit(
    party: str, meta: Mapping[str, Any], job: Mapping[str, Any] | None, announced: set[str], require: Collection[str]
) -> None:
    carried = {p for p in ("dp2", "dp3") if p in meta}
    if job is not None and carried != announced & {"dp2", "dp3"}:
        raise JobRefused(
            party,
            "job",
            f"this fit request carries DP {sorted(carried)}, but the job this party "
            f"accepted announced {sorted(announced & {'dp2', 'dp3'})}",
        )
    if job is not None and "secure_aggregation" in announced and "secagg" not in meta:
        raise JobRefused(party, "job", "this fit request carries no secure aggregation, which the job announced")
    if "dp" in require and not carried:  # 'dp' means DP2 or DP3 for training (DP1-only jobs refused at open)
        raise JobRefused(party, "require", "this fit request carries no DP mechanism (dp2 or dp3)")
    present = {"secure_aggregation": "secagg" in meta, "dp2": "dp2" in meta, "dp3": "dp3" in meta}
    for need in sorted(require):
        if need in present and not present[need]:
            raise JobRefused(party, "require", f"this fit request carries no {need}")
    dp3 = meta.get("dp3") or {}
    if dp3 and job is not None:  # the distributed noise share is sum_sigma / sqrt(noise_parties or parties)
        limit = len(job.get("parties") or [])
        for key in ("parties", "noise_parties"):
            value = dp3.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit):
                raise JobRefused(
                    party,
                    "job",
                    f"dp3.{key}={value!r} exceeds the {limit} parties of the job this "
                    "party accepted (each party's noise share would shrink accordingly)",
                )
