"""The REST API's request and response bodies (pydantic): the OpenAPI 3.1 document is generated from these.

Why strict requests (`extra="forbid"`, bounded strings and numbers): a typo in a field name is a 422 naming the
field instead of a silently ignored setting, and no input can make the server fail (huge ids, megabyte names).
Responses allow extra keys where the body is a view assembled elsewhere (run views, lineage), so the document
stays true while those views grow.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Error", "LoginRequest", "LoginResponse", "Me", "PasswordChange", "TokenRequest", "TokenCreated", "TokenInfo",
    "TotpEnrolment", "TotpCode", "UserCreate", "UserCreated", "UserInfo", "UserDisable", "ConsortiumCreate",
    "Consortium", "MemberInvite", "Invitation", "Party", "CatalogueEntry", "DatasetRegister", "Budget", "Dataset",
    "DatasetChoice", "JobCreate", "JobEdit", "Job", "Decision", "ApprovalRecord", "InboxItem", "RuleCreate", "Rule",
    "RunSummary", "RunViewBody", "Comparison", "ReportFiles", "ModelSummary", "ModelDetail", "StageChange",
    "AuditEntry", "AuditLog", "Verification", "Health", "AgentJob", "MAX_ID",
]

MAX_ID = 2**31 - 1
Name = Field(min_length=1, max_length=200)
RoleName = Literal["consortium_admin", "party_operator", "analyst", "auditor"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(_Out):
    error: str
    field: str | None = None


class Health(_Out):
    status: Literal["ok"]
    api: str


# --- accounts ----------------------------------------------------------------------------------------
class LoginRequest(_In):
    username: str = Name
    password: str = Field(min_length=1, max_length=1000)
    totp: str | None = Field(None, max_length=12)


class Me(_Out):
    id: int
    username: str
    role: str
    organisation: str | None
    totp_enabled: bool
    must_change_password: bool


class LoginResponse(_Out):
    csrf_token: str = Field(description="send as X-CSRF-Token with every unsafe request made with the cookie")
    expires_at: str
    user: Me


class PasswordChange(_In):
    old_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)


class TokenRequest(_In):
    label: str = Field("", max_length=200)
    days: int = Field(90, ge=1, le=365)


class TokenCreated(_Out):
    id: int
    token: str = Field(description="shown once; only its SHA-256 is stored")
    expires_at: str


class TokenInfo(_Out):
    id: int
    label: str
    expires_at: str
    revoked: bool
    created_at: str


class TotpEnrolment(_Out):
    secret: str
    provisioning_uri: str


class TotpProof(_In):
    """Re-enrolling over a confirmed factor needs the current password or code (R14-WEB-5)."""

    proof: str | None = Field(None, max_length=1000, description="current password or authenticator code")


class TotpCode(_In):
    code: str = Field(pattern=r"^[0-9]{6}$")


class UserCreate(_In):
    username: str = Name
    role: RoleName
    organisation: str | None = Field(None, min_length=1, max_length=200)


class UserCreated(_Out):
    id: int
    username: str
    role: str
    organisation: str | None
    one_time_password: str | None


class UserInfo(_Out):
    id: int
    username: str
    role: str
    organisation: str | None
    disabled: bool
    totp_confirmed: bool
    created_at: str


class UserDisable(_In):
    disabled: bool


# --- consortia, members, parties, datasets ----------------------------------------------------------------
class ConsortiumCreate(_In):
    name: str = Name
    description: str = Field("", max_length=2000)


class Consortium(_Out):
    id: int
    name: str
    description: str
    created_by: str
    created_at: str
    members: list[str]


class MemberInvite(_In):
    organisation: str = Name
    role: Literal["bank", "label_holder", "feature_holder", "payment_provider", "platform", "observer"] = "bank"
    certificate_pem: str | None = Field(None, max_length=20000)
    operator_username: str | None = Field(None, min_length=1, max_length=200)


class Invitation(_Out):
    consortium_id: int
    organisation: str
    role: str
    operator_username: str
    one_time_password: str | None = Field(description="shown once; None when the operator account existed")


class Party(_Out):
    name: str
    connected: bool
    last_seen: str | None


class CatalogueEntry(_Out):
    party: str
    name: str
    columns: dict[str, str]
    label: str | None
    rows: int | None = Field(description="the size the party publishes ([data.<name>] public_rows); null: not "
                             "published (an exact count is never released, R14-CONSENT-5)")


class DatasetRegister(_In):
    party: str = Name
    name: str = Name


class Budget(_Out):
    party: str
    dataset: str
    total_epsilon: float | None
    total_delta: float | None
    spent_epsilon: float
    spent_delta: float
    reserved_epsilon: float
    reserved_delta: float
    remaining_epsilon: float | None
    remaining_delta: float | None
    history: list[dict[str, Any]]
    updated_at: str


class Dataset(_Out):
    id: int
    consortium_id: int
    party: str
    name: str
    schema_: dict[str, Any] = Field(alias="schema")
    row_count: int | None  # as the party published it; null: not published
    registered_by: str
    created_at: str
    budget: Budget | None


# --- jobs, approvals, rules ----------------------------------------------------------------------------
class DatasetChoice(_In):
    dataset: str = Name
    columns: list[str] | None = Field(None, max_length=10000, description="columns the job reads (default: all)")


MAX_CONFIG_DEPTH = 32  # a run config is a few levels deep; bounded so storing it cannot recurse away (R14-WEB-12)
MAX_CONFIG_BYTES = 256_000


def bounded_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The config unchanged, or ValueError (a 422 naming `config`) when it is nested or sized past the bounds."""
    if config is None:
        return None
    stack: list[tuple[Any, int]] = [(config, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"config is nested deeper than {MAX_CONFIG_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    import json

    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        raise ValueError(f"config is larger than {MAX_CONFIG_BYTES} bytes")
    return config


class JobCreate(_In):
    name: str = Name
    config: dict[str, Any] = Field(description="the run config (TOML as JSON) of any workflow")
    @field_validator("config")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return bounded_config(value)
    datasets: dict[str, str | DatasetChoice] = Field(description="party -> dataset name, or {dataset, columns}")
    label_holder: str | None = Field(None, min_length=1, max_length=200)
    submit: bool = True


class JobEdit(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    config: dict[str, Any] | None = None
    datasets: dict[str, str | DatasetChoice] | None = None
    label_holder: str | None = Field(None, min_length=1, max_length=200)
    @field_validator("config")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return bounded_config(value)


class Job(_Out):
    id: int
    consortium_id: int
    name: str
    config: dict[str, Any]
    bindings: dict[str, Any]
    spec: dict[str, Any]
    spec_hash: str
    status: str
    created_by: str
    created_at: str
    updated_at: str
    parties: list[str]
    run_id: str | None
    approvals: dict[str, Literal["approved", "refused", "pending"]]
    refusals: dict[str, str | None]


class Decision(_In):
    approve: bool
    reason: str = Field("", max_length=2000)


class ApprovalRecord(_Out):
    id: int
    job_id: int
    party: str
    spec_hash: str
    approved: bool
    approval: dict[str, Any] | None
    reason: str | None
    decided_by: str
    decided_at: str


class InboxItem(_Out):
    job_id: int
    name: str
    consortium_id: int
    status: str
    spec_hash: str
    workflow: str | None
    code_version: str | None
    dataset: str
    columns: list[str]
    model: dict[str, Any] | None
    rounds: int | None
    privacy: dict[str, Any]
    protections: list[str]
    partners: list[str]
    label_holder: str | None
    decision: Literal["approved", "refused", "pending"]
    remaining_epsilon: float | None
    open_ended: bool = Field(False, description="DP with no stated epsilon: may spend all the dataset has left")
    remaining_after_epsilon: float | None
    created_by: str


class RuleCreate(_In):
    rule: dict[str, Any] = Field(description="a StandingRule (id, dataset, workflows, max_epsilon, columns, ...)")


class Rule(_Out):
    id: int
    party: str
    rule: dict[str, Any]
    active: bool


# --- runs, models, audit ---------------------------------------------------------------------------------
class RunSummary(_Out):
    id: int
    job_id: int
    run_id: str
    spec_hash: str
    started_by: str
    created_at: str
    consortium_id: int
    name: str
    status: str


class RunViewBody(_Open):
    run_id: str
    status: str
    round: int
    total_rounds: int
    job_id: int
    spec_hash: str
    rounds: list[dict[str, Any]]
    epsilon: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]


class Comparison(_Open):
    run_ids: list[str]
    runs: list[dict[str, Any]]


class ReportFiles(_Out):
    run_id: str
    report_path: str | None
    receipt_path: str | None


class ModelSummary(_Out):
    name: str
    version: int
    run_id: str
    stage: str
    created_at: str | None
    has_receipt: bool


class ModelDetail(_Out):
    name: str
    version: int
    run_id: str
    stage: str
    stage_history: list[dict[str, Any]]
    lineage: dict[str, Any]
    kind: str | None
    has_receipt: bool


class StageChange(_In):
    stage: Literal["candidate", "approved", "retired"]
    note: str = Field("", max_length=2000)


class Verification(_Out):
    ok: bool
    entries: int
    signed: int
    problems: list[str]


class AuditEntry(_Out):
    seq: int | None
    at: str | None
    kind: str
    detail: dict[str, Any]
    hash: str


class AuditLog(_Out):
    entries: list[AuditEntry]
    total: int
    verification: Verification


class AgentJob(_Out):
    job_id: int
    spec: dict[str, Any]
    spec_hash: str
    status: str
    approvals: list[dict[str, Any]]
