"""`JobSpec`: exactly what a party approves — the job's canonical description and its hash.

Why: a party's consent must cover what the job DOES with its data (workflow, code version, the columns it
reads, the model, the rounds, the privacy budget per level, the protections) and nothing looser, so that a
coordinator cannot obtain an approval for one job and run another. The spec's canonical JSON (sorted keys,
no whitespace, finite floats only, UTF-8) is hashed with SHA-256; an approval signs that hash. The spec also
carries `config_sha256`, the hash of the canonical FULL run config: any change to the config, even one the
other fields do not show, changes the spec hash and so voids every approval. That hash is the coordinator's
claim: a party never sees the full config, so it can verify only what the spec itself shows; for a horizontal
job the job description carries the rounds, local training settings and model shape, which the agent checks
on every `fit` and counts (`sampan.deploy.run_rounds`, review R14-CONSENT-4).

`job_id` is the run id the job will run under (the coordinator creates the run with it): an approval is
for one run, so a coordinator cannot re-run an approved job under a fresh run id to spend the data owner's
budget again (the agent refuses a spec whose job id is not the run it opens).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import sampan
from sampan.config import ConfigError

__all__ = ["JobSpec", "PartyData", "PrivacyPlan", "canonical_json", "config_sha256", "job_spec", "planned_spend"]

SPEC_VERSION = 1


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"job spec: {where} is {value!r}; only finite numbers can be approved")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"job spec: {where} has a non-text key {k!r}")
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, finite floats only (Python's shortest round-trip float repr, so one
    float has one spelling); tuples are lists. A non-finite float is a ConfigError naming where it is."""
    _check_finite(value, "value")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def config_sha256(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(config))).hexdigest()


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartyData(_Frozen):
    """One party's part of a job: the dataset it serves and the feature columns the job reads from it. Besides
    these, every job reads the dataset's id column (to align and split rows) and a training job the label
    column where the party holds labels (its catalogue names both)."""

    dataset: str = Field(min_length=1)
    columns: tuple[str, ...]


class PrivacyPlan(_Frozen):
    """The privacy budget the job may spend at each party (its run config's [privacy]); None: no DP."""

    epsilon: float | None = None
    delta: float | None = None
    accountant: str | None = None
    levels: dict[str, float | None] = Field(default_factory=dict)


class JobSpec(_Frozen):
    """What each party approves, bound by `spec_hash()`. Build it with `job_spec`."""

    version: int = SPEC_VERSION
    job_id: str = Field(min_length=1, description="the run id the job runs under")
    workflow: str
    code_version: str
    operator: str | None = None
    parties: tuple[str, ...] = Field(min_length=1)
    label_holder: str | None = None
    data: dict[str, PartyData] = Field(description="per party: dataset and the columns the job reads")
    model: dict[str, Any] = Field(default_factory=dict, description="kind + settings")
    rounds: int = 0
    privacy: PrivacyPlan = Field(default_factory=PrivacyPlan)
    protections: tuple[str, ...] = ()
    job: dict[str, Any] = Field(description="the job description each party checks every request against")
    config_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def canonical_json(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()

    def planned(self) -> tuple[float, float] | None:
        """(epsilon, delta) each party reserves for this job; (0, 0) for an exact job; None: DP without a
        stated budget (open-ended: charged against the dataset's remaining lifetime budget as it runs)."""
        return planned_spend(self)


def planned_spend(spec: JobSpec) -> tuple[float, float] | None:
    checks = spec.job.get("checks") if spec.workflow == "checks" else None
    if isinstance(checks, Mapping) and isinstance(checks.get("dp"), Mapping):  # R14-CHECKS-2: pure-epsilon Laplace
        return float(checks["dp"]["budget_epsilon"]), 0.0  # releases, at most `checks_budget` at any one party
    if spec.privacy.epsilon is not None:
        return float(spec.privacy.epsilon), float(spec.privacy.delta or 0.0)
    if any(p in spec.protections for p in ("dp", "dp1", "dp2", "dp3", "woe_dp", "gbdt_dp")):
        return None
    return 0.0, 0.0


def _privacy_plan(config: Mapping[str, Any]) -> PrivacyPlan:
    privacy = config.get("privacy") or {}
    vertical = config.get("vertical") or {}
    woe = (vertical.get("scorecard") or {}).get("dp_epsilon")
    levels: dict[str, float | None] = {}
    epsilon = float(privacy["epsilon"]) if privacy.get("epsilon") is not None else None
    for level in ("dp1", "dp2", "dp3"):
        section = privacy.get(level)
        levels[level] = (float(section["epsilon"]) if isinstance(section, Mapping) and section.get("epsilon")
                         is not None else epsilon) if section is not None else None  # an empty table runs it
    if privacy.get("gbdt") is not None:
        levels["gbdt"] = epsilon
    if woe:
        levels["woe"] = float(woe)
    if epsilon is None and woe:  # a vertical job whose only DP budget is its WOE epsilon
        return PrivacyPlan(epsilon=float(woe), delta=1e-5, accountant="rdp", levels=levels)
    if epsilon is None:
        return PrivacyPlan(levels=levels)
    return PrivacyPlan(epsilon=epsilon, delta=float(privacy.get("delta", 1e-5)),
                       accountant=str(privacy.get("accountant", "rdp")), levels=levels)


def _model(config: Mapping[str, Any], workflow: str) -> dict[str, Any]:
    if workflow == "vertical":
        vertical = dict(config.get("vertical") or {})
        return {"kind": "vertical", "settings": {k: v for k, v in vertical.items() if k != "label_holder"}}
    if workflow in ("scoring", "serving"):
        scoring = dict(config.get("scoring") or {})
        return {"kind": str(scoring.get("kind") or "lr"), "settings": scoring}
    if workflow == "synthesis":
        return {"kind": "synthesis", "settings": dict(config.get("synthesis") or {})}
    model = dict(config.get("model") or {})
    return {"kind": str(model.get("kind", "logistic")), "settings": {k: v for k, v in model.items() if k != "kind"}}


def _pinned(model: dict[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    """R14-CONSENT3-1: explicit class weights and FedProx's proximal term shown where decisions read them."""
    terms = description.get("training") if description.get("workflow") == "horizontal" else None
    if isinstance(terms, Mapping):
        extra = {k: terms[k] for k, neutral in (("class_weight", None), ("proximal_mu", 0.0))
                 if terms.get(k, neutral) not in (neutral, "pooled")}
        if extra:
            return {**model, "settings": {**model.get("settings", {}), **extra}}
    return model


def job_spec(config: Mapping[str, Any], *, parties: Sequence[str], datasets: Mapping[str, Any],
             label_holder: str | None, operator: str | None, job_id: str, parsed: Any = None) -> JobSpec:
    """The spec of a job from its stored run config (`RunSpec.stored`).

    `datasets`: per party, {"dataset": name, "columns": [...]} (a `PartyData` or a mapping): the columns the
    party's agent serves for that dataset (its `consent.catalogue` says which). `parsed`: the same config as
    a RunConfig, for the job description's settings only it resolves (synthesis)."""
    from sampan.deploy.allow import job_description

    workflow = str((config.get("run") or {}).get("workflow") or "horizontal")
    missing = [p for p in parties if p not in datasets]
    if missing:
        raise ConfigError(f"job spec: no dataset and columns for parties {missing}")
    description = job_description(config, workflow=workflow, operator=operator, parties=list(parties),
                                  label_holder=label_holder, parsed=parsed)
    data = {p: d if isinstance(d, PartyData) else PartyData.model_validate(
        {"dataset": d["dataset"], "columns": tuple(d["columns"])}) for p, d in datasets.items() if p in parties}
    return JobSpec(
        job_id=job_id, workflow=workflow, code_version=sampan.__version__, operator=operator,
        parties=tuple(parties), label_holder=label_holder, data=data, model=_pinned(_model(config, workflow),
                                                                                      description),
        rounds=int(description.get("rounds") or (config.get("run") or {}).get("rounds") or 0),
        privacy=_privacy_plan(config),
        protections=tuple(description.get("protections") or ()),
        job=json.loads(canonical_json(description)), config_sha256=config_sha256(config))
