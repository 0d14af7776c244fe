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

from collections.abc import Mapping, Sequence
from typing import Any

from sampan.deploy.allow_groups import announced_groups
from sampan.deploy.allow_requests import SCORING_KINDS, VERTICAL_KINDS, check_request
from sampan.deploy.allow_section import _HORIZONTAL_JOBS, _VERTICAL_JOBS, PROTECTIONS, AllowSection, JobRefused
from sampan.deploy.allow_training import training_terms
from sampan.deploy.allow_vertical import check_psi_backend

__all__ = ["AllowSection", "JobRefused", "PROTECTIONS", "PeerAllowList", "SCORING_KINDS", "VERTICAL_KINDS", "check_job",
           "check_request", "job_description", "privacy_policy", "training_terms"]


def job_description(config: Mapping[str, Any], *, workflow: str, operator: str | None, parties: Sequence[str],
                    label_holder: str | None, parsed: Any = None) -> dict[str, Any]:
    """What the coordinator tells a party about a job (from the stored run config; ``parsed``: the same config
    as a RunConfig, for settings only it resolves), to check against its list."""
    privacy = config.get("privacy") or {}
    secagg = config.get("secure_aggregation") or {}
    noise: dict[str, Any] = {}
    for name in ("dp1", "dp2", "dp3"):
        section = privacy.get(name)
        if section is not None:  # an empty [privacy.dpN] table still runs that level
            value = section.get("noise_multiplier", "auto")
            schedule = section.get("schedule") or [1.0]
            noise[name] = value if value == "auto" else float(value) * min(float(f) for f in schedule)
    if privacy.get("gbdt") is not None:  # horizontal GBDT's noised histograms (`sampan.privacy.gbdt_dp`)
        value = privacy["gbdt"].get("noise_multiplier", "auto")
        noise["gbdt_dp"] = value if value == "auto" else float(value)
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
    if workflow == "horizontal" and extra.get("model") == "gbdt":  # the shape bounds the bank's tree releases
        model = config.get("model") or {}
        extra["gbdt"] = {"n_trees": int(model.get("n_trees", 100)), "max_depth": int(model.get("max_depth", 4)),
                         "n_bins": int(model.get("n_bins", 32)), "dp": privacy.get("gbdt") is not None}
    if workflow == "horizontal" and extra.get("model") != "gbdt":  # R14-CONSENT-4: what each `fit` may ask for
        extra["rounds"], extra["training"] = training_terms(config, parsed)
        if extra.get("model") == "mlp":  # the model's shape: each `fit` builds exactly this network
            extra["hidden"] = [int(h) for h in (config.get("model") or {}).get("hidden", [32])]
    if workflow == "horizontal" and config.get("bank_alone") is not None:  # each bank alone vs the consortium
        extra["bank_alone"] = {"epochs": int((config.get("bank_alone") or {}).get("epochs", 5))}
    if workflow == "horizontal" and announced_groups(config):  # fairness by group: the exact specs (R13-GRP-5)
        extra["groups"] = announced_groups(config)
    weighting = {k: v for k, v in (config.get("training") or {}).items()
                 if k in ("class_weight", "target_positive_rate") and v is not None}
    if workflow in _HORIZONTAL_JOBS and weighting:  # the loss weighting the bank trains under (its audit record)
        extra["class_weight"] = weighting
    if workflow == "checks":  # checks before training (`sampan.checks`): vertical or not, and DP on its releases
        from sampan.checks.terms import job_terms
        from sampan.config.checks import ChecksSection

        checks = config.get("checks") or {}
        extra["vertical"] = bool(vertical)
        if checks.get("dp") is not None:
            protections = sorted({*protections, "dp"})
        # R14-CHECKS-2/4: each release's epsilon and the histogram bins/columns/bounds, held to exactly per request
        extra["checks"] = job_terms(ChecksSection.model_validate(checks), vertical=bool(vertical),
                                    n_parties=len(parties))
    if workflow == "vertical":  # review R12-VER-2/7b: the models and their shape each partner checks requests against
        extra["vertical"] = _vertical_job(vertical, woe_epsilon)
    if workflow in ("scoring", "serving") and (config.get("scoring") or {}).get("model"):  # R12-VER-5: the one model
        extra["model_run"] = str(config["scoring"]["model"])
        extra["model_kind"] = str(config["scoring"].get("kind") or "lr")  # R13-SCO-15: which part partners answer for
    if workflow == "scoring" and (config.get("scoring") or {}).get("applicants_file"):  # the one file the bank reads
        extra["applicants_file"] = str(config["scoring"]["applicants_file"])
        extra["id_column"] = config["scoring"].get("id_column")
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
        "psi_backend": str(vertical.get("psi_backend") or "ecdh"),  # rr22 only if the job announces it
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
    if workflow == "serving":  # a standing session: consent is explicit, per trained model
        _check_serving(allow, party, job)
    # a vertical checks job runs PSI (cardinality mode) between the bank and its partners: the vertical rules apply
    vertical_rules = workflow in _VERTICAL_JOBS or (workflow == "checks" and bool(job.get("vertical")))
    listed = allow.partners if allow.partners is not None else ([] if vertical_rules else None)
    if listed is not None:
        unlisted = sorted(p for p in partners if p not in listed)
        if unlisted:
            default = " (a vertical run needs its partners listed in allow.partners)" if allow.partners is None else ""
            raise JobRefused(party, "partners", f"partners {unlisted} are not in allow.partners {listed}{default}")
    if workflow == "vertical":  # review R15-RR22-8: RR22 only where this party opted in
        check_psi_backend(allow, party, job)
    if vertical_rules:  # review R12-2: the job must name its bank, and this party must accept it as such
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
    if workflow == "scoring" and job.get("applicants_file") and job.get("label_holder") == party:  # R13-SCO-1:
        # the bank (which alone reads the file) admits only files inside the folder it designated
        _check_applicants(allow, party, job, columns)
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
    if job.get("groups") and "secure_aggregation" in allow.require:  # per-bank group counts: refused at open
        raise JobRefused(party, "require", "the job reports fairness by group, whose counts travel per bank in clear, "
                         "and this party requires secure aggregation")
    if job.get("bank_alone") and "secure_aggregation" in allow.require:  # refused at open, not after training
        raise JobRefused(party, "require", "the job compares each bank alone with the consortium, whose figures "
                         "travel per bank in clear, and this party requires secure aggregation")
    trained_under = {"gbdt_dp"} if job.get("model") == "gbdt" else {"dp2", "dp3"}  # trees: noised histograms
    if "dp" in allow.require and workflow == "horizontal" and not have & trained_under:  # review R8-4
        raise JobRefused(
            party,
            "require",
            f"this party requires DP, and the horizontal job trains without "
            f"{' or '.join(sorted(t.upper() for t in trained_under))} "
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


def _check_applicants(allow: AllowSection, party: str, job: Mapping[str, Any], columns: Sequence[str]) -> None:
    """A scoring job's applicants file must lie in this party's `applicants_dir` (symlinks resolved), read by an id
    column that is not one of its schema columns (and is one it declared, if it declared any)."""
    import os

    path, column = str(job["applicants_file"]), job.get("id_column")
    if allow.applicants_dir is None:
        raise JobRefused(party, "applicants_dir", f"the job names applicants file {path!r}; this party declared no "
                         "applicants folder ([allow] applicants_dir), so no job makes it read a file")
    folder = os.path.realpath(allow.applicants_dir).rstrip(os.sep) + os.sep
    if not os.path.realpath(path).startswith(folder):
        raise JobRefused(party, "applicants_dir", f"applicants file {path!r} is not inside this party's applicants "
                         f"folder {allow.applicants_dir!r}")
    if column is not None and column in columns:
        raise JobRefused(party, "applicant_id_columns", f"id column {column!r} is one of this party's feature columns")
    if column is not None and allow.applicant_id_columns is not None and column not in allow.applicant_id_columns:
        raise JobRefused(party, "applicant_id_columns", f"id column {column!r} is not one of "
                         f"{allow.applicant_id_columns}")


def _check_serving(allow: AllowSection, party: str, job: Mapping[str, Any]) -> None:
    """A serving job answers for as long as the bank's service runs: only a list naming 'serving' and this model
    run accepts it."""
    if allow.workflows is None or "serving" not in allow.workflows:
        raise JobRefused(party, "workflows", "a serving job (the bank's scoring service) needs 'serving' listed in "
                         "allow.workflows")
    if str(job.get("model_run")) not in (allow.serving_models or []):
        raise JobRefused(party, "serving_models", f"model run {job.get('model_run')!r} is not in "
                         f"allow.serving_models {allow.serving_models or []}")


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
