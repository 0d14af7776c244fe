"""A party's local allow-list (`[allow]` in party.toml): which jobs this organisation agreed to take part in.

Threat model: an operator (or a coordinator following an operator) submits a job the party never
agreed to — pairing its loan book with an unknown partner in a vertical run (where PSI alone reveals
the shared customers), or a horizontal run without the protections its policy requires. Until signed
per-job approvals exist, the party agent checks every job against this list when the job is opened
(`deploy.open_run`, before any protocol message) and refuses what falls outside it, with the reason;
the refusal is logged and recorded in the party's own signed audit log. During a horizontal run,
every `fit` request is checked again (required protections present, noise at or above the minimum),
so a coordinator cannot announce one job and run another.

What the list can and cannot see: the job description comes from the coordinator. An honest
coordinator relays the operator's job faithfully, so the list stops operators' mistakes and misuse.
A coordinator that announces one set of partners and then pairs the party with another is caught by
the per-run key signatures: `PeerAllowList` wraps the party's verifier so that a peer's signed keys
(vertical channels, SecAgg) are accepted only from a partner the job announced and the list allowed,
before any channel or mask exists. What the coordinator says about protections is re-checked on every
`fit` request (`check_request`).

Defaults when `[allow]` or a key is absent ("claim less"): any operator, workflow, dataset and column
of this party's own binding, no required protection and no noise floor — but **no vertical partner**:
a vertical run names its partners to each other through PSI, so a party joins one only with partners
it lists in `allow.partners`.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AllowSection", "JobRefused", "PROTECTIONS", "PeerAllowList", "check_job", "check_request",
           "job_description"]

PROTECTIONS = ("secure_aggregation", "dp", "dp1", "dp2", "dp3")


class JobRefused(PermissionError):
    """This party's allow-list refuses the job; the message names the rule and the value."""

    def __init__(self, party: str, rule: str, reason: str) -> None:
        super().__init__(f"party {party!r} refuses this job ({rule}): {reason}")
        self.party, self.rule, self.reason = party, rule, reason


class AllowSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operators: list[str] | None = Field(None, description="operators whose jobs are accepted; default any")
    workflows: list[Literal["horizontal", "vertical"]] | None = Field(None, description="default any")
    partners: list[str] | None = Field(None, description="parties this one may train with; default: any in "
                                       "horizontal runs, none in vertical runs")
    datasets: list[str] | None = Field(None, description="which [data.<name>] jobs may use; default any")
    columns: list[str] | None = Field(None, description="feature columns a job may use; default any of the binding")
    require: list[Literal["secure_aggregation", "dp", "dp1", "dp2", "dp3"]] = Field(
        default_factory=list, description="protections every job must use")
    min_noise_multiplier: float | None = Field(None, gt=0, description="least noise multiplier of every DP "
                                               "mechanism of a job (after its schedule); 'auto' is refused")


def job_description(config: Mapping[str, Any], *, workflow: str, operator: str | None, parties: Sequence[str],
                    label_holder: str | None) -> dict[str, Any]:
    """What the coordinator tells a party about a job (from the stored run config), to check against its list."""
    privacy = config.get("privacy") or {}
    secagg = config.get("secure_aggregation") or {}
    noise: dict[str, Any] = {}
    for name in ("dp1", "dp2", "dp3"):
        section = privacy.get(name)
        if section:
            value = section.get("noise_multiplier", "auto")
            schedule = section.get("schedule") or [1.0]
            noise[name] = value if value == "auto" else float(value) * min(float(f) for f in schedule)
    protections = sorted({*noise, *(["dp"] if noise else []),
                          *(["secure_aggregation"] if secagg and secagg.get("enabled", True) else [])})
    return {"workflow": workflow, "operator": operator, "parties": list(parties), "label_holder": label_holder,
            "protections": protections, "noise_multipliers": noise}


def check_job(allow: AllowSection | None, party: str, job: Mapping[str, Any], dataset: str,
              columns: Sequence[str]) -> None:
    """Raise JobRefused unless the job fits this party's allow-list (None: the defaults)."""
    allow = allow or AllowSection()
    if not isinstance(job.get("parties"), list) or "protections" not in job:
        raise JobRefused(party, "job", "the coordinator sent no job description (parties, protections); a job "
                         "this party cannot check is refused (upgrade the coordinator)")
    workflow = str(job.get("workflow"))
    operator = job.get("operator")
    partners = [p for p in job.get("parties") or [] if p != party]
    if allow.operators is not None and operator not in allow.operators:
        raise JobRefused(party, "operators", f"submitted by {operator!r}, not one of {allow.operators}")
    if allow.workflows is not None and workflow not in allow.workflows:
        raise JobRefused(party, "workflows", f"workflow {workflow!r} is not one of {allow.workflows}")
    listed = allow.partners if allow.partners is not None else (None if workflow == "horizontal" else [])
    if listed is not None:
        unlisted = sorted(p for p in partners if p not in listed)
        if unlisted:
            default = " (a vertical run needs its partners listed in allow.partners)" if allow.partners is None else ""
            raise JobRefused(party, "partners", f"partners {unlisted} are not in allow.partners {listed}{default}")
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
    if allow.min_noise_multiplier is not None:
        for name, value in (job.get("noise_multipliers") or {}).items():
            if value == "auto" or float(value) < allow.min_noise_multiplier:
                raise JobRefused(party, "min_noise_multiplier", f"{name} noise multiplier {value!r} is below this "
                                 f"party's minimum {allow.min_noise_multiplier} ('auto' cannot be checked in advance)")


def check_request(allow: AllowSection | None, party: str, kind: str, meta: Mapping[str, Any]) -> None:
    """Each horizontal `fit` request must carry the protections the list requires, at or above its noise floor."""
    if allow is None or kind != "fit" or not (allow.require or allow.min_noise_multiplier):
        return
    present = {"secure_aggregation": "secagg" in meta, "dp2": "dp2" in meta, "dp3": "dp3" in meta}
    for need in allow.require:  # ("dp" and "dp1" are checked when the job opens: they may not be on `fit`)
        if need in present and not present[need]:
            raise JobRefused(party, "require", f"this fit request carries no {need}")
    floor = allow.min_noise_multiplier
    if floor is not None:
        dp2, dp3 = meta.get("dp2") or {}, meta.get("dp3") or {}
        if "noise_multiplier" in dp2 and float(dp2["noise_multiplier"]) < floor:
            raise JobRefused(party, "min_noise_multiplier", f"DP-SGD noise multiplier {dp2['noise_multiplier']} < {floor}")
        if dp3.get("clip") and "sum_sigma" in dp3:  # record-level multiplier, as the ledger charges it
            from sampan.privacy.dp3 import settings_noise_multiplier

            z3 = settings_noise_multiplier(dp3)
            if z3 < floor:
                raise JobRefused(party, "min_noise_multiplier", f"DP3 noise multiplier {z3:.3g} < {floor}")


class PeerAllowList:
    """A peer-identity verifier that also admits only the partners this party accepted for the job.

    Wraps `sampan.crypto.identity.IdentityVerifier` (same `check`/`verify`; everything else delegated):
    a party peer outside `allowed` is refused with `IdentityError(peer, "not_allowed", ...)` before its
    certificate or signature is even looked at.
    """

    def __init__(self, inner: Any, party: str, allowed: Sequence[str]) -> None:
        self._inner, self._party = inner, party
        self._allowed = frozenset(allowed) | {party}

    def _admit(self, peer: str, role: str | None) -> None:
        from sampan.crypto.identity import IdentityError

        if role == "party" and peer not in self._allowed:
            raise IdentityError(peer, "not_allowed", f"party {self._party!r} accepted this job with "
                                f"{sorted(self._allowed - {self._party})} only; the coordinator paired it with "
                                f"{peer!r}")

    def check(self, peer: str, certificate: Any, *, role: str | None = "party") -> Any:
        self._admit(peer, role)
        return self._inner.check(peer, certificate, role=role)

    def verify(self, peer: str, certificate_pem: bytes, payload: bytes, signature: bytes, *,
               role: str | None = "party") -> Any:
        self._admit(peer, role)
        return self._inner.verify(peer, certificate_pem, payload, signature, role=role)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
