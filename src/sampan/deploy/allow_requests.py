"""Per-request checks of a party's `[allow]` list: every request of a run against the list and the job the
party accepted, so a coordinator cannot announce one job and run another.

Threat model: a coordinator (or an operator driving it) opens a job the party agreed to (`sampan.deploy.allow.
check_job`) and then sends requests of another job — a fit without the announced DP or SecAgg, noise below the
party's floor, a DP3 party count that thins each party's noise share, a vertical model the job never
announced, or the insecure benchmark baseline. `check_request` refuses each such request, naming the rule.
What it cannot see: the coordinator's own intentions beyond the request's metadata; peer identities are
checked by `sampan.deploy.allow.PeerAllowList`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sampan.deploy.allow_checks import check_checks_request
from sampan.deploy.allow_groups import check_groups_request
from sampan.deploy.allow_impute import check_impute_request, noise_field
from sampan.deploy.allow_section import _HORIZONTAL_JOBS, _VERTICAL_JOBS, AllowSection, JobRefused
from sampan.deploy.allow_training import check_training

__all__ = ["SCORING_KINDS", "VERTICAL_KINDS", "check_request"]

# vertical requests that release a histogram to the bank, and the meta field carrying their noise
_VERTICAL_NOISE = {"woe.sum": "dp_epsilon", "woe.finish": "dp_epsilon", "vgb.setup": "hist_noise"}


def check_request(
    allow: AllowSection | None, party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any] | None = None
) -> None:
    """Each request of a run is checked against the list and against the job this party accepted (`job`,
    as `check_job` saw it), so a coordinator cannot announce one job and run another:

    - a horizontal job answers only its own request kinds (`describe`, `stats`, `fit`, `evaluate`,
      `secagg_*`; `hgb.*` in a gbdt job, never where SecAgg is required or announced, a sketch only at the job's
      n_bins; a gbdt job no `fit`, `stats`, `impute_stats` or `secagg_*`); an evaluation job only
      `evaluate` (and `secagg_*` if it announced SecAgg); anything else is refused;
    - `bank_alone` only in a horizontal job that announced it, never where the list requires secure aggregation,
      with DP-SGD settings (at or above the floor) when the job announced DP or the list requires it;
    - `evaluate_groups` likewise (exactly the groups the job announced, never where SecAgg is required), noised
      (`group_dp`, at or above the floor) when the job announced DP or the list requires it;
    - `fit` carries exactly the DP mechanisms (DP2, DP3) the job announced, SecAgg if announced, the
      protections the list requires, noise at or above its floor, and a DP3 `parties` / `noise_parties`
      no larger than the job's party count (a larger one would thin each party's distributed noise share);
    - `evaluate` carries SecAgg when the list requires it or the job announced it; `stats` DP1 when the job
      announced any DP or the list requires DP1 or DP; `describe` the DP row count when the job announced DP
      or the list requires any DP; `impute_stats` its DP noise when the job announced DP (at or above the
      floor), never where the list requires SecAgg, well-formed (`sampan.deploy.allow_impute`); `secagg_*`
      steps only in a job that announced SecAgg;
    - a vertical job answers only `VERTICAL_KINDS` (never the insecure benchmark baseline `plr.*`), and of
      those the WOE / GBDT training requests only when the job announced that model; a scoring job only
      `SCORING_KINDS` (keys, its parts, joint scoring);
    - a job that announced DP on WOE counts (`woe_dp`) or GBDT histograms (`gbdt_dp`) answers `woe.sum` /
      `woe.finish` only at its epsilon or less and `vgb.setup` only at its `gbdt_hist_noise` or more;
    - each vertical histogram request (`woe.sum`, `woe.finish`, `vgb.setup`) carries the protections the
      list requires, at or above its noise floor. Vertical GBDT's floor needs this party's feature count
      (sigma / sensitivity): it is enforced in the handler by the party's `PartyPrivacyPolicy` built from
      this list (`privacy_policy`)."""
    if job is not None and job.get("workflow") == "checks":
        check_checks_request(party, kind, meta, job)
        return
    if job is not None and job.get("workflow") in _VERTICAL_JOBS:
        _check_vertical_job(party, kind, meta, job)
    if kind in _VERTICAL_NOISE:
        if allow is not None and (allow.require or allow.min_noise_multiplier):
            _check_vertical(allow, party, kind, meta)
        return
    if job is not None and job.get("workflow") not in _HORIZONTAL_JOBS:
        return
    if job is not None and kind == "fit" and isinstance(job.get("training"), Mapping):
        check_training(party, meta, job)
    announced = set(job.get("protections") or []) if job is not None else set()
    require = set(allow.require) if allow is not None else set()
    if job is not None and kind in _HGB_KINDS and job.get("model") == "gbdt" and job.get("workflow") == "horizontal":
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
            kind not in _TREE_JOB_KINDS):  # review R13-HGB-4: no exact fit/stats in a tree job (no tree DP covers it)
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
    if job is not None and kind not in _HORIZONTAL_KINDS:
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


# the request kinds of the vertical workflow (keys, PSI, secure LR, WOE, GBDT, scoring, the bank's own baseline);
# anything else (e.g. the insecure benchmark baseline `plr.*`, which hands out exact residuals) is refused
VERTICAL_KINDS = frozenset(
    {
        "vertical.hello",
        "vertical.peers",
        "vertical.splits",
        "vertical.local_baseline",
        "vertical.use_woe",
        "psi.offer",
        "psi.accept",
        "psi.blind",
        "psi.respond",
        "psi.finish",
        "psi.part",
        "psi.pull",
        "psi.align",
        "psi.aligned",
        # the opt-in RR22 backend (spu in a subprocess, its link tunnelled sealed): only in a job that announced it
        "psi.rr22.offer",
        "psi.rr22.accept",
        "psi.rr22.start",
        "psi.rr22.pump",
        "psi.rr22.finish",
        "psi.rr22.close",
        "vlr.setup",
        "vlr.share",
        "vlr.e_chunk",  # the masked features E = X - U, streamed in sealed chunks (issue 15)
        "vlr.masked_features",
        "vlr.forward",
        "vlr.square",
        "vlr.poly",
        "vlr.trunc",
        "vlr.ztrunc",
        "vlr.wshare",
        "vlr.wupdate",
        "vlr.wopen",
        "vlr.checkpoint",
        "vlr.flush",
        "vlr.finish",
        "woe.setup",
        "woe.mask",
        "woe.sum",
        "woe.finish",
        "woe.apply",
        "vgb.setup",
        "vgb.start",
        "vgb.step",
        "vgb.serve",
        "vgb.score_start",
        "vgb.score_partial",
        "vgb.score_finish",
        "score.start",
        "score.partial",
        "score.finish",
        # the one vertical workflow: stage bookkeeping, released summaries, each party's own model parts
        "vertical.state",
        "vertical.stage_done",
        "vertical.summary",
        "vertical.save_model",
        "vertical.load_model",
        "score.save",
    }
)
# a scoring job (review R12-VER-9): keys, the stored parts and joint scoring only; no alignment, no training
SCORING_KINDS = frozenset(
    {
        "vertical.hello",
        "vertical.peers",
        "vertical.load_model",
        "score.start",
        "score.partial",
        "score.finish",
        "vgb.score_start",
        "vgb.score_partial",
        "vgb.score_finish",
        "score.save",
    }
)
# a serving job (`sampan serve`'s session): a scoring job's requests plus the bank's batch queue
SERVING_KINDS = SCORING_KINDS - {"score.save"} | {"serve.next", "serve.start", "serve.finish", "serve.abort"}
# the training requests of each optional vertical model (review R12-VER-2): refused unless the job announced it
_MODEL_PREFIXES = {"scorecard": ("woe.",), "gbdt": ("vgb.setup", "vgb.start", "vgb.step", "vgb.serve")}

_HORIZONTAL_KINDS = frozenset(
    {"describe", "stats", "impute_stats", "fit", "evaluate", "secagg_keys", "secagg_share", "secagg_consistency",
     "secagg_unmask"}
)
# horizontal GBDT (exact histograms, no DP): answered only in a job that announced model "gbdt"
_HGB_KINDS = frozenset({"hgb.sketch", "hgb.setup", "hgb.hist", "hgb.split", "hgb.leaves"})
# what else a horizontal GBDT job answers: its row count, its one evaluation, and what the job announced
_TREE_JOB_KINDS = frozenset({"describe", "evaluate", "bank_alone", "evaluate_groups"})

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



def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_vertical_job(party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """A vertical request against the job this party accepted: only the workflow's kinds (a scoring job only
    scoring's), only the models it announced, and each histogram release with at least the noise it announced
    (review R12-VER-1/2/9)."""
    workflow = job.get("workflow")
    allowed = {"scoring": SCORING_KINDS, "serving": SERVING_KINDS}.get(str(workflow), VERTICAL_KINDS)
    if kind not in allowed:
        raise JobRefused(party, "request", f"{kind!r} is not a request of the {workflow} workflow this party accepted")
    if (
        workflow in ("scoring", "serving")
        and kind == "vertical.load_model"
        and job.get("model_run") is not None
        and str(meta.get("model_run")) != str(job["model_run"])
    ):
        raise JobRefused(
            party,
            "request",
            f"vertical.load_model names model run {meta.get('model_run')!r}; the "
            f"scoring job this party accepted announced {job['model_run']!r}",
        )
    if kind in ("score.start", "vgb.score_start", "serve.start") and "applicants_file" in meta and (
        workflow != "scoring" or (
        (meta.get("applicants_file"), meta.get("id_column")) != (job.get("applicants_file"), job.get("id_column")))
    ):  # the bank reads only the file (and column) of the scoring job it accepted (R13-SCO-13: no training job's)
        raise JobRefused(
            party,
            "request",
            f"{kind} names applicants file {meta.get('applicants_file')!r} (column {meta.get('id_column')!r}); "
            f"the scoring job this party accepted announced {job.get('applicants_file')!r} "
            f"(column {job.get('id_column')!r})",
        )
    _check_model_kind(party, kind, meta, job)
    if workflow != "vertical":
        return
    backend = str((job.get("vertical") or {}).get("psi_backend") or "ecdh")
    if kind.startswith("psi.rr22.") and backend != "rr22":
        raise JobRefused(party, "request", f"{kind!r} runs RR22 PSI, which the job this party accepted did not "
                         f"announce (psi_backend {backend!r})")
    models = set((job.get("vertical") or {}).get("models") or ["lr"])
    for model, prefixes in _MODEL_PREFIXES.items():
        if model not in models and kind.startswith(prefixes):
            raise JobRefused(
                party,
                "request",
                f"{kind!r} trains the {model} model, which the job this party "
                f"accepted did not announce (models {sorted(models)})",
            )
    announced = set(job.get("protections") or ())
    if kind in ("woe.sum", "woe.finish") and "woe_dp" in announced:
        woe = (job.get("vertical") or {}).get("woe") or {}
        limit = _number(woe.get("dp_epsilon"))
        value = _number(meta.get("dp_epsilon"))
        if value is None or value <= 0 or limit is None or value > limit * (1 + 1e-9):
            raise JobRefused(
                party,
                "job",
                f"this {kind} request carries dp_epsilon={meta.get('dp_epsilon')!r}; the "
                f"job this party accepted announced DP on the WOE counts at epsilon {limit!r} or less",
            )
        delta = _number(meta.get("dp_delta"))
        if meta.get("dp_delta") is not None and (delta is None or delta > float(woe.get("dp_delta") or 1e-5)):
            raise JobRefused(
                party,
                "job",
                f"this {kind} request carries dp_delta={meta.get('dp_delta')!r}, above "
                f"the job's {woe.get('dp_delta', 1e-5)!r}",
            )
    if kind == "vgb.start":  # review R12-VER-7b: the bank grows no more or deeper trees than the job announced
        shape = (job.get("vertical") or {}).get("gbdt") or {}
        params = meta.get("params") or {}
        for key in ("n_trees", "max_depth"):
            value, limit = params.get(key), shape.get(key)
            if limit is None or isinstance(value, bool) or not isinstance(value, int) or value > int(limit):
                raise JobRefused(
                    party,
                    "job",
                    f"this vgb.start request asks for {key}={value!r}; the job this party "
                    f"accepted announced {key}={limit!r} (the run's charge bounds that many node releases)",
                )
    if kind == "vgb.setup" and "gbdt_dp" in announced:
        floor = _number(job.get("gbdt_hist_noise")) or 0.0
        value = _number(meta.get("hist_noise"))
        if value is None or value < floor * (1 - 1e-9) or value <= 0:
            raise JobRefused(
                party,
                "job",
                f"this vgb.setup request carries hist_noise={meta.get('hist_noise')!r}, "
                f"below the {floor} the job this party accepted announced",
            )


_KIND_REQUESTS = {"gbdt": ("vgb.",), "lr": ("score.start", "score.partial", "score.finish"),
                  "scorecard": ("score.start", "score.partial", "score.finish")}


def _check_model_kind(party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """Review R13-SCO-15: a scoring job loads and answers for the model kind it announced only (a GBDT part
    answers routing bits, its feature intervals; a linear part one summed contribution)."""
    announced = job.get("model_kind")
    if job.get("workflow") not in ("scoring", "serving") or announced is None:
        return
    if kind == "vertical.load_model" and str(meta.get("kind")) != str(announced):
        raise JobRefused(party, "job", f"vertical.load_model asks for the {meta.get('kind')!r} part; the scoring job "
                         f"this party accepted announced {announced!r}")
    scoring = kind.startswith("vgb.") or kind in _KIND_REQUESTS["lr"]
    if scoring and not kind.startswith(_KIND_REQUESTS.get(str(announced), ())):
        raise JobRefused(party, "job", f"{kind!r} scores another model kind than the {announced!r} the scoring job "
                         "this party accepted announced")


def _check_vertical(allow: AllowSection, party: str, kind: str, meta: Mapping[str, Any]) -> None:
    protocol = "woe_dp" if kind.startswith("woe.") else "gbdt_dp"
    value = meta.get(_VERTICAL_NOISE[kind])
    noised = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) > 0
    if not noised and (protocol in allow.require or "dp" in allow.require):
        raise JobRefused(
            party,
            "require",
            f"this {kind} request carries no noise ({_VERTICAL_NOISE[kind]}="
            f"{value!r}) but this party requires {protocol if protocol in allow.require else 'dp'}",
        )
    if noised and value is not None and protocol == "woe_dp" and allow.min_noise_multiplier is not None:
        from sampan.vertical.histograms import histogram_sigma

        z = histogram_sigma(1.0, float(value), float(meta.get("dp_delta") or 1e-5))
        if z < allow.min_noise_multiplier:
            raise JobRefused(
                party,
                "min_noise_multiplier",
                f"WOE dp_epsilon {value} is a noise multiplier of "
                f"{z:.3g}, below this party's minimum {allow.min_noise_multiplier}",
            )

