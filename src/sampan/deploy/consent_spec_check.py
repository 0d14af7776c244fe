"""The party's own reading of a job spec: is it one this party can serve as written, and does the standing
rule that approved it still stand?

Why: the agent holds two descriptions of a job — the spec's fields (rounds, model, privacy: what standing
rules, budgets and the CLI summary read) and the coordinator's job description `spec.job` (what the agent
enforces on every request). Both are the coordinator's text; the approval is only as good as their
agreement, so every field one side reads and the other enforces is compared here (reviews R14-CONSENT-4,
R14-CONSENT2-1/6). Pure functions over the spec and the party's own settings: no transport, no state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import sampan
from sampan.deploy.allow_section import _HORIZONTAL_JOBS
from sampan.deploy.consent import ConsentRefused, JobSpec, StandingRule, matches

__all__ = ["check_spec", "granting_rule_reason"]

_MODEL_KINDS = frozenset({"logistic", "mlp", "gbdt"})  # the models a horizontal job trains


def _hidden(model: dict[str, Any]) -> Any:
    """The MLP's hidden layers as the spec's model settings spell them (the job description's default [32])."""
    try:
        return [int(h) for h in (model.get("settings") or {}).get("hidden", [32])]
    except (TypeError, ValueError):
        return None


def _gbdt_shape(model: dict[str, Any]) -> Any:
    """Horizontal GBDT's shape as the spec's model settings spell it (the job description's defaults)."""
    settings = model.get("settings") or {}
    try:
        return {k: int(settings.get(k, d)) for k, d in (("n_trees", 100), ("max_depth", 4), ("n_bins", 32))}
    except (TypeError, ValueError):
        return None


def _check_weighting(me: str, spec: JobSpec, terms: dict[str, Any], weighting: Any) -> None:
    """R14-CONSENT3-1: the loss weighting each `fit` may use is the job's audit record (`job["class_weight"]`),
    and explicit class weights or a proximal term only when the spec's model settings (what the summary and
    rules read) carry the same values."""
    from sampan.deploy.allow_training import _weighting_terms

    try:
        recorded = _weighting_terms({"training": dict(weighting or {})}, None)["class_weight"]
    except Exception:  # a malformed record is refused below
        recorded = False
    if terms.get("class_weight") != recorded:
        raise ConsentRefused(me, f"job.training.class_weight: {terms.get('class_weight')!r} disagrees with the job's "
                             f"recorded loss weighting {weighting!r}")
    settings = spec.model.get("settings") or {}
    for key, neutral in (("class_weight", None), ("proximal_mu", 0.0)):
        value = terms.get(key, neutral)
        if value not in (neutral, "pooled") and settings.get(key) != value:
            raise ConsentRefused(me, f"job.training.{key}: {value!r} is not in the spec's model settings "
                                 f"({settings.get(key)!r}), which the approval summary and rules read")


def check_spec(me: str, spec: JobSpec, datasets: Collection[str], served: Any) -> None:
    """Raise ConsentRefused (naming the field) unless `me` can serve `spec` as written. `datasets`: the
    party's bound datasets; `served(dataset)`: the feature columns it serves from one."""
    if me not in spec.parties or me not in spec.data:
        raise ConsentRefused(me, f"the job does not name {me!r} among its parties {list(spec.parties)}")
    if spec.code_version != sampan.__version__:
        raise ConsentRefused(me, f"code_version: the job was built for Sampan {spec.code_version}; this agent "
                             f"runs {sampan.__version__}")
    part = spec.data[me]
    if part.dataset not in datasets:
        raise ConsentRefused(me, f"data.dataset: {me!r} has no dataset {part.dataset!r} (has {sorted(datasets)})")
    columns = served(part.dataset)
    if list(part.columns) != columns:
        raise ConsentRefused(me, f"data.columns: the job reads {list(part.columns)} of dataset {part.dataset!r}; "
                             f"this party serves {columns}")
    job = spec.job
    if (job.get("workflow") != spec.workflow or list(job.get("parties") or []) != list(spec.parties)
            or job.get("label_holder") != spec.label_holder or job.get("operator") != spec.operator
            or list(job.get("protections") or []) != list(spec.protections)
            or ("rounds" in job and job["rounds"] != spec.rounds)):
        raise ConsentRefused(me, "job: the job description disagrees with the spec's workflow, parties, label "
                             "holder, operator, protections or rounds")
    # R14-CONSENT2-6: what rules and the summary read (spec.model) is what each `fit` builds (job["model"])
    # R14-CONSENT3-6: a horizontal job names a known model kind (a missing kind is not "any model")
    if spec.workflow in _HORIZONTAL_JOBS and job.get("model") not in _MODEL_KINDS:
        raise ConsentRefused(me, f"job.model: a horizontal job must name its model kind (one of "
                             f"{sorted(_MODEL_KINDS)}); the job description names {job.get('model')!r}")
    if spec.workflow in _HORIZONTAL_JOBS and job.get("model") != spec.model.get("kind"):
        raise ConsentRefused(me, f"job.model: the job description trains {job.get('model')!r}; the spec's model "
                             f"is {spec.model.get('kind')!r}")
    if job.get("model") == "mlp" and (spec.workflow == "horizontal" or "hidden" in job) and (
            job.get("hidden") != _hidden(spec.model)):
        raise ConsentRefused(me, f"job.hidden: the job description's network {job.get('hidden')!r} is not the "
                             f"spec's model settings {_hidden(spec.model)!r}")
    # R14-CONSENT3-2: a horizontal GBDT job's tree shape (what bounds the bank's tree releases) is the spec's
    if spec.workflow == "horizontal" and job.get("model") == "gbdt":
        gbdt, shape = job.get("gbdt"), _gbdt_shape(spec.model)
        if not isinstance(gbdt, dict) or {k: gbdt.get(k) for k in shape} != shape or type(gbdt.get("dp")) is not bool:
            raise ConsentRefused(me, f"job.gbdt: the job description's tree shape {gbdt!r} is not the spec's model "
                                 f"settings {shape!r}")
    if spec.workflow == "horizontal" and isinstance(job.get("training"), dict):
        _check_weighting(me, spec, job["training"], job.get("class_weight"))
    # R14-CONSENT2-1: a horizontal (non-GBDT) job MUST spell its rounds and training (each `fit` is checked
    # against them; the round gate is spec.rounds): a description without them is refused
    if spec.workflow == "horizontal" and job.get("model") != "gbdt" and (
            type(job.get("rounds")) is not int or job["rounds"] != spec.rounds
            or not isinstance(job.get("training"), dict)):
        raise ConsentRefused(me, f"job.rounds/job.training: a horizontal job's description must carry its rounds "
                             f"(the integer {spec.rounds}, the spec's) and its training settings")


def granting_rule_reason(granted: str | None, rules: Iterable[StandingRule], allow_rule: StandingRule,
                         spec: JobSpec, me: str) -> str | None:
    """Why the approval's granting rule no longer holds (withdrawn or expired), or None (review
    R14-CONSENT2-3). `granted`: the rule id recorded with the approval (None: a person decided)."""
    if granted is None:
        return None
    held = {r.id: r for r in rules}
    held.setdefault("allow", allow_rule)
    rule = held.get(str(granted))
    if rule is None:
        return f"the standing rule {granted!r} that approved this job was withdrawn; the job needs a new approval"
    if rule.expires_at is not None and any(r.startswith("expires_at") for r in matches(rule, spec, me)):
        return f"the standing rule {granted!r} that approved this job expired; the job needs a new approval"
    return None
