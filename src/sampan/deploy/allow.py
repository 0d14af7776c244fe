"""A party's local allow-list (`[allow]` in party.toml): which jobs this organisation agreed to take part in.

Threat model: an operator (or a coordinator following an operator) submits a job the party never
agreed to — pairing its loan book with an unknown partner in a vertical run (where PSI alone reveals
the shared customers), or a horizontal run without the protections its policy requires. Until signed
per-job approvals exist, the party agent checks every job against this list when the job is opened
(`deploy.open_run`, before any protocol message) and refuses what falls outside it, with the reason;
the refusal is logged and recorded in the party's own signed audit log. During a horizontal run,
every request is checked again against the list and the job the party accepted (`check_request`: only
the horizontal kinds; each `fit` with exactly the DP mechanisms and SecAgg the job announced, noise at
or above the minimum, a DP3 party count no larger than the job's; `evaluate`, `stats`, `describe` and
`secagg_*` with their protections), so a coordinator cannot announce one job and run another; so is
every vertical histogram request
(`woe.sum`, `woe.finish`: WOE epsilon; `vgb.setup`: GBDT `hist_noise`), and the vertical handlers
enforce the same floor and required DP through the party's `PartyPrivacyPolicy` (`privacy_policy`),
which also keeps the party's own ledger of those releases.

What the list can and cannot see: the job description comes from the coordinator. An honest
coordinator relays the operator's job faithfully, so the list stops operators' mistakes and misuse.
A coordinator that announces one set of partners and then pairs the party with another is caught by
the per-run key signatures: `PeerAllowList` wraps the party's verifier so that a peer's signed keys
(vertical channels, SecAgg) are accepted only from a partner the job announced and the list allowed,
before any channel or mask exists. What the coordinator says about protections is re-checked on every
request (`check_request`).

Defaults when `[allow]` or a key is absent ("claim less"): any operator, workflow, dataset and column
of this party's own binding, no required protection and no noise floor — but **no vertical partner**:
a vertical run names its partners to each other through PSI, so a party joins one only with partners
it lists in `allow.partners`, and **no other bank**: a vertical job must name its label holder, which
must be in `allow.label_holders` (default: the party itself), so a partner the list accepts as a
partner cannot act as the bank and read the others' contributions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sampan.errors import PartyError

__all__ = ["AllowSection", "JobRefused", "PROTECTIONS", "PeerAllowList", "SCORING_KINDS", "VERTICAL_KINDS", "check_job",
           "check_request", "job_description", "privacy_policy"]

PROTECTIONS = ("secure_aggregation", "dp", "dp1", "dp2", "dp3", "woe_dp", "gbdt_dp")
# vertical requests that release a histogram to the bank, and the meta field carrying their noise
_VERTICAL_NOISE = {"woe.sum": "dp_epsilon", "woe.finish": "dp_epsilon", "vgb.setup": "hist_noise"}


class JobRefused(PartyError, PermissionError):
    """This party's allow-list refuses the job; the message names the rule and the value."""

    def __init__(self, party: str, rule: str, reason: str) -> None:
        super().__init__(f"party {party!r} refuses this job ({rule}): {reason}")
        self.party, self.rule, self.reason = party, rule, reason


class AllowSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operators: list[str] | None = Field(None, description="operators whose jobs are accepted; default any")
    workflows: list[Literal["horizontal", "vertical", "scoring", "evaluation", "synthesis"]] | None = Field(
        None, description="default any")
    partners: list[str] | None = Field(None, description="parties this one may train with; default: any in "
                                       "horizontal runs, none in vertical runs")
    label_holders: list[str] | None = Field(None, description="parties this one accepts as the label holder (the "
                                            "bank) of a vertical run; default: itself only")
    datasets: list[str] | None = Field(None, description="which [data.<name>] jobs may use; default any")
    columns: list[str] | None = Field(None, description="feature columns a job may use; default any of the binding")
    require: list[Literal["secure_aggregation", "dp", "dp1", "dp2", "dp3", "woe_dp", "gbdt_dp"]] = Field(
        default_factory=list, description="protections every job must use (woe_dp: DP on federated WOE counts; "
        "gbdt_dp: noise on vertical GBDT histograms; 'dp' means DP2 or DP3 for horizontal training and also "
        "demands noise on every vertical histogram release)")
    min_noise_multiplier: float | None = Field(None, gt=0, description="least noise multiplier of every DP "
                                               "mechanism of a job (after its schedule); 'auto' is refused")
    min_contributors: int | None = Field(None, ge=3, description="least number of contributors a secure "
                                         "aggregation job may sum (its secure_aggregation.min_contributors); the "
                                         "party also enforces it itself in every unmasking; default 3")


def job_description(config: Mapping[str, Any], *, workflow: str, operator: str | None, parties: Sequence[str],
                    label_holder: str | None, parsed: Any = None) -> dict[str, Any]:
    """What the coordinator tells a party about a job (from the stored run config; ``parsed``: the same config
    as a RunConfig, for settings only it resolves), to check against its list."""
    privacy = config.get("privacy") or {}
    secagg = config.get("secure_aggregation") or {}
    noise: dict[str, Any] = {}
    for name in ("dp1", "dp2", "dp3"):
        section = privacy.get(name)
        if section:
            value = section.get("noise_multiplier", "auto")
            schedule = section.get("schedule") or [1.0]
            noise[name] = value if value == "auto" else float(value) * min(float(f) for f in schedule)
    vertical = config.get("vertical") or {}
    woe_epsilon = (vertical.get("scorecard") or {}).get("dp_epsilon")
    if woe_epsilon:  # the WOE noise multiplier depends on epsilon and delta only (sigma scales with sensitivity)
        from sampan.vertical.histograms import histogram_sigma

        noise["woe_dp"] = histogram_sigma(1.0, float(woe_epsilon), 1e-5)
    hist_noise = float((vertical.get("gbdt_privacy") or {}).get("hist_noise") or 0.0)
    protections = sorted(
        {
            *noise,
            *(["gbdt_dp"] if hist_noise > 0 else []),
            *(["dp"] if noise or hist_noise > 0 else []),
            *(["secure_aggregation"] if secagg and secagg.get("enabled", True) else []),
        }
    )
    extra: dict[str, Any] = {}
    if workflow == "synthesis" and config.get("synthesis"):  # what each bank checks every synthesis request against
        from sampan.synth.settings import SynthesisSettings

        extra["synthesis"] = SynthesisSettings.from_config(parsed if parsed is not None else config).job()
        protections = sorted(
            {
                *[p for p in protections if p != "secure_aggregation"],
                "dp",
                *(["secure_aggregation"] if extra["synthesis"]["secure_aggregation"] else []),
            }
        )
    minimum = (
        {"secagg_min_contributors": int(secagg.get("min_contributors", 3))}
        if "secure_aggregation" in protections
        else {}
    )
    if workflow in _HORIZONTAL_JOBS:  # the party mounts the tree handlers only for a gbdt job
        extra["model"] = (config.get("model") or {}).get("kind", "logistic")
    if workflow == "vertical":  # review R12-VER-2/7b: the models and their shape each partner checks requests against
        extra["vertical"] = _vertical_job(vertical, woe_epsilon)
    if workflow == "scoring" and (config.get("scoring") or {}).get("model"):  # review R12-VER-5: the one model run
        extra["model_run"] = str(config["scoring"]["model"])
    return {
        "workflow": workflow,
        "operator": operator,
        "parties": list(parties),
        "label_holder": label_holder,
        "protections": protections,
        "noise_multipliers": noise,
        **minimum,
        **extra,
        **({"gbdt_hist_noise": hist_noise} if hist_noise > 0 else {}),
    }


def _vertical_job(vertical: Mapping[str, Any], woe_epsilon: Any) -> dict[str, Any]:
    """The vertical training job as each party checks it: models, the GBDT shape (bounds its node releases) and
    the WOE noise (the epsilon every WOE count release must meet or undercut)."""
    gbdt = vertical.get("gbdt") or {}
    return {
        "models": [str(m) for m in (vertical.get("models") or ["lr"])],
        "gbdt": {"n_trees": int(gbdt.get("n_trees", 100)), "max_depth": int(gbdt.get("max_depth", 4))},
        "woe": {"dp_epsilon": float(woe_epsilon) if woe_epsilon else None, "dp_delta": 1e-5},
    }


def check_job(
    allow: AllowSection | None, party: str, job: Mapping[str, Any], dataset: str, columns: Sequence[str]
) -> None:
    """Raise JobRefused unless the job fits this party's allow-list (None: the defaults)."""
    allow = allow or AllowSection.model_validate({})
    if not isinstance(job.get("parties"), list) or "protections" not in job:
        raise JobRefused(
            party,
            "job",
            "the coordinator sent no job description (parties, protections); a job "
            "this party cannot check is refused (upgrade the coordinator)",
        )
    workflow = str(job.get("workflow"))
    operator = job.get("operator")
    partners = [p for p in job.get("parties") or [] if p != party]
    if allow.operators is not None and operator not in allow.operators:
        raise JobRefused(party, "operators", f"submitted by {operator!r}, not one of {allow.operators}")
    if allow.workflows is not None and workflow not in allow.workflows:
        raise JobRefused(party, "workflows", f"workflow {workflow!r} is not one of {allow.workflows}")
    listed = allow.partners if allow.partners is not None else ([] if workflow in _VERTICAL_JOBS else None)
    if listed is not None:
        unlisted = sorted(p for p in partners if p not in listed)
        if unlisted:
            default = " (a vertical run needs its partners listed in allow.partners)" if allow.partners is None else ""
            raise JobRefused(party, "partners", f"partners {unlisted} are not in allow.partners {listed}{default}")
    if workflow in _VERTICAL_JOBS:  # review R12-2: the job must name its bank, and this party must accept it as such
        holder = job.get("label_holder")
        holders = allow.label_holders if allow.label_holders is not None else [party]
        if not isinstance(holder, str) or not holder or holder not in (job.get("parties") or []):
            raise JobRefused(
                party,
                "label_holders",
                f"the vertical job names no label holder among its parties "
                f"(got {holder!r}); a partner would otherwise be free to act as the bank",
            )
        if holder not in holders:
            default = " (default: this party only)" if allow.label_holders is None else ""
            raise JobRefused(
                party, "label_holders", f"label holder {holder!r} is not in allow.label_holders {holders}{default}"
            )
    if allow.datasets is not None and dataset not in allow.datasets:
        raise JobRefused(party, "datasets", f"dataset {dataset!r} is not one of {allow.datasets}")
    if allow.columns is not None:
        extra = sorted(c for c in columns if c not in allow.columns)
        if extra:
            raise JobRefused(party, "columns", f"dataset {dataset!r} would use columns {extra}, not in allow.columns")
    have = set(job.get("protections") or [])
    missing = [p for p in allow.require if p not in have]
    if missing:
        raise JobRefused(party, "require", f"the job lacks required protection(s) {missing} (it has {sorted(have)})")
    if workflow == "horizontal" and job.get("model") == "gbdt" and "secure_aggregation" in {*allow.require, *have}:
        raise JobRefused(
            party,
            "require",
            "horizontal GBDT sends each bank's exact tree histograms (no secure "
            "aggregation exists for trees): a gbdt job cannot announce or meet secure_aggregation",
        )
    if "dp" in allow.require and workflow == "horizontal" and not have & {"dp2", "dp3"}:  # review R8-4
        raise JobRefused(
            party,
            "require",
            f"this party requires DP, and the horizontal job trains without DP2 or DP3 "
            f"(it has {sorted(have)}): its model updates would leave exactly",
        )
    if allow.min_contributors is not None and "secure_aggregation" in have:
        announced = job.get("secagg_min_contributors")
        if not isinstance(announced, int) or isinstance(announced, bool) or announced < allow.min_contributors:
            raise JobRefused(
                party,
                "min_contributors",
                f"secure aggregation would sum as few as {announced!r} "
                f"contributors, below this party's minimum {allow.min_contributors}",
            )
    if allow.min_noise_multiplier is not None:
        for name, value in (job.get("noise_multipliers") or {}).items():
            if value == "auto" or float(value) < allow.min_noise_multiplier:
                raise JobRefused(
                    party,
                    "min_noise_multiplier",
                    f"{name} noise multiplier {value!r} is below this "
                    f"party's minimum {allow.min_noise_multiplier} ('auto' cannot be checked in advance)",
                )
        if job.get("gbdt_hist_noise") and columns and party != job.get("label_holder"):  # a partner's own columns
            from sampan.vertical.gbdt import histogram_sensitivity2

            z = float(job["gbdt_hist_noise"]) / histogram_sensitivity2(len(columns)) ** 0.5
            if z < allow.min_noise_multiplier:
                raise JobRefused(
                    party,
                    "min_noise_multiplier",
                    f"vertical GBDT hist_noise {job['gbdt_hist_noise']} "
                    f"is a noise multiplier of {z:.3g} over this party's {len(columns)} columns, below "
                    f"its minimum {allow.min_noise_multiplier}",
                )


def check_request(
    allow: AllowSection | None, party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any] | None = None
) -> None:
    """Each request of a run is checked against the list and against the job this party accepted (`job`,
    as `check_job` saw it), so a coordinator cannot announce one job and run another:

    - a horizontal job answers only its own request kinds (`describe`, `stats`, `fit`, `evaluate`,
      `secagg_*`; `hgb.*` in a gbdt job, never where SecAgg is required or announced); an evaluation job only
      `evaluate` (and `secagg_*` if it announced SecAgg); anything else is refused;
    - `fit` carries exactly the DP mechanisms (DP2, DP3) the job announced, SecAgg if announced, the
      protections the list requires, noise at or above its floor, and a DP3 `parties` / `noise_parties`
      no larger than the job's party count (a larger one would thin each party's distributed noise share);
    - `evaluate` carries SecAgg when the list requires it or the job announced it; `stats` DP1 when the job
      announced any DP or the list requires DP1 or DP; `describe` the DP row count when the job announced DP
      or the list requires any DP; `secagg_*` steps only in a job that announced SecAgg;
    - a vertical job answers only `VERTICAL_KINDS` (never the insecure benchmark baseline `plr.*`), and of
      those the WOE / GBDT training requests only when the job announced that model; a scoring job only
      `SCORING_KINDS` (keys, its parts, joint scoring);
    - a job that announced DP on WOE counts (`woe_dp`) or GBDT histograms (`gbdt_dp`) answers `woe.sum` /
      `woe.finish` only at its epsilon or less and `vgb.setup` only at its `gbdt_hist_noise` or more;
    - each vertical histogram request (`woe.sum`, `woe.finish`, `vgb.setup`) carries the protections the
      list requires, at or above its noise floor. Vertical GBDT's floor needs this party's feature count
      (sigma / sensitivity): it is enforced in the handler by the party's `PartyPrivacyPolicy` built from
      this list (`privacy_policy`)."""
    if job is not None and job.get("workflow") in _VERTICAL_JOBS:
        _check_vertical_job(party, kind, meta, job)
    if kind in _VERTICAL_NOISE:
        if allow is not None and (allow.require or allow.min_noise_multiplier):
            _check_vertical(allow, party, kind, meta)
        return
    if job is not None and job.get("workflow") not in _HORIZONTAL_JOBS:
        return
    announced = set(job.get("protections") or []) if job is not None else set()
    require = set(allow.require) if allow is not None else set()
    if job is not None and kind in _HGB_KINDS and job.get("model") == "gbdt" and job.get("workflow") == "horizontal":
        if "secure_aggregation" in require | announced:  # review R12-HOR-2: tree histograms are exact, per bank
            raise JobRefused(
                party,
                "require",
                f"{kind!r}: horizontal GBDT has no secure aggregation, which this party requires or the job announced",
            )
        return  # the tree handlers exist only in a gbdt job; the party's policy refused it if it requires DP
    if job is not None and job.get("workflow") == "evaluation":  # review R12-HOR-4: evaluate (and its SecAgg) only
        if kind != "evaluate" and not (kind.startswith("secagg_") and "secure_aggregation" in announced):
            raise JobRefused(
                party,
                "request",
                f"{kind!r} is not a request of the evaluation job this party accepted "
                "(it evaluates one model on its holdout)",
            )
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
        _floor(party, "DP1", (meta.get("dp1") or {}).get("noise_multiplier"), floor, "dp1" in meta)
    elif kind == "describe":
        if "dp_count" not in meta and ("dp" in announced or require & {"dp", "dp1", "dp2", "dp3"}):
            raise JobRefused(party, "require", "this describe request carries no dp_count (the exact row count)")
        _floor(party, "DP row count", (meta.get("dp_count") or {}).get("noise_multiplier"), floor, "dp_count" in meta)
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
        "psi.align",
        "psi.aligned",
        "vlr.setup",
        "vlr.share",
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
# the training requests of each optional vertical model (review R12-VER-2): refused unless the job announced it
_MODEL_PREFIXES = {"scorecard": ("woe.",), "gbdt": ("vgb.setup", "vgb.start", "vgb.step", "vgb.serve")}
# workflows whose requests are checked as vertical (resp. horizontal) ones
_VERTICAL_JOBS = frozenset({"vertical", "scoring"})
_HORIZONTAL_JOBS = frozenset({"horizontal", "evaluation"})

_HORIZONTAL_KINDS = frozenset(
    {"describe", "stats", "fit", "evaluate", "secagg_keys", "secagg_share", "secagg_consistency", "secagg_unmask"}
)
# horizontal GBDT (exact histograms, no DP): answered only in a job that announced model "gbdt"
_HGB_KINDS = frozenset({"hgb.sketch", "hgb.setup", "hgb.hist", "hgb.split", "hgb.leaves"})


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


class PeerAllowList:
    """A peer-identity verifier that also admits only the partners this party accepted for the job.

    Wraps `sampan.crypto.identity.IdentityVerifier` (same `check`/`verify`; everything else delegated):
    a party peer outside `allowed` is refused with `IdentityError(peer, "not_allowed", ...)` before its
    certificate or signature is even looked at. With the job's `label_holder`, `admit_role` (called by a
    vertical party for itself and every peer before it checks the signed run keys) admits that party
    alone in the label-holder role (a job naming none admits no label holder at all): a partner signing as label holder
    where the job named another is
    refused, so a coordinator cannot run a partner as "the bank" (certificates carry no protocol role).
    """

    def __init__(self, inner: Any, party: str, allowed: Sequence[str], label_holder: str | None = None) -> None:
        self._inner, self._party = inner, party
        self._allowed = frozenset(allowed) | {party}
        self._label_holder = label_holder

    def admit_role(self, peer: str, role: str) -> None:
        """Only the job's label holder may act as label holder (and it only as such)."""
        from sampan.crypto.identity import IdentityError

        if self._label_holder is None:  # a job that names no bank admits no party as one (review R12-2)
            if role == "label_holder":
                raise IdentityError(
                    peer,
                    "not_allowed",
                    f"party {self._party!r} accepted a job that names no label "
                    f"holder; {peer!r} signed its run keys as label holder",
                )
            return
        if (role == "label_holder") != (peer == self._label_holder):
            raise IdentityError(
                peer,
                "not_allowed",
                f"party {self._party!r} accepted this job with "
                f"{self._label_holder!r} as label holder; {peer!r} signed its run keys as {role!r}",
            )

    def _admit(self, peer: str, role: str | None) -> None:
        from sampan.crypto.identity import IdentityError

        if role == "party" and peer not in self._allowed:
            raise IdentityError(
                peer,
                "not_allowed",
                f"party {self._party!r} accepted this job with "
                f"{sorted(self._allowed - {self._party})} only; the coordinator paired it with "
                f"{peer!r}",
            )

    def check(self, peer: str, certificate: Any, *, role: str | None = "party") -> Any:
        self._admit(peer, role)
        return self._inner.check(peer, certificate, role=role)

    def verify(
        self, peer: str, certificate_pem: bytes, payload: bytes, signature: bytes, *, role: str | None = "party"
    ) -> Any:
        self._admit(peer, role)
        return self._inner.verify(peer, certificate_pem, payload, signature, role=role)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_vertical_job(party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """A vertical request against the job this party accepted: only the workflow's kinds (a scoring job only
    scoring's), only the models it announced, and each histogram release with at least the noise it announced
    (review R12-VER-1/2/9)."""
    workflow = job.get("workflow")
    if kind not in (SCORING_KINDS if workflow == "scoring" else VERTICAL_KINDS):
        raise JobRefused(party, "request", f"{kind!r} is not a request of the {workflow} workflow this party accepted")
    if (
        workflow == "scoring"
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
    if workflow != "vertical":
        return
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


def privacy_policy(allow: AllowSection | None, job: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """The `PartyPrivacyPolicy` a party's vertical handlers enforce, from its `[allow]` list and the job it
    accepted: its noise floor and refusal of exact histograms when the list requires DP on them ("dp",
    "woe_dp", "gbdt_dp") or the job announced it (review R12-VER-1: a job announced with DP cannot be run
    exactly). A policy bound to no job refuses exact WOE and GBDT releases: nothing says they were agreed."""
    from sampan.privacy.party_policy import DEFAULT_MIN_NOISE_MULTIPLIER, PartyPrivacyPolicy

    allow = allow or AllowSection.model_validate({})
    announced = set(job.get("protections") or ()) & {"woe_dp", "gbdt_dp"} if job is not None else {"woe_dp", "gbdt_dp"}
    need = set(allow.require) | announced
    levels = {"WOE"} if need & {"dp", "woe_dp"} else set()
    levels |= {"GBDT"} if need & {"dp", "gbdt_dp"} else set()
    return PartyPrivacyPolicy(
        min_noise_multiplier=allow.min_noise_multiplier or DEFAULT_MIN_NOISE_MULTIPLIER,
        required_levels=frozenset(levels),
        **kwargs,
    )
