"""Benchmark API v1: the JSON a platform under test exchanges with Sampan's verifier (the contract).

Every platform (Sampan, the weak one, Flower, a vendor's) implements these shapes at `/bench/v1`; the verifier
talks only to them. Validation is strict (unknown fields refused, names and sizes bounded) so a malformed request
gets a 422 naming the field instead of reaching a platform's training code. Pydantic only: no web framework here,
so the runner, the kits and the client can import the models without FastAPI.

Versioning: API_VERSION is "major.minor". A minor bump only adds optional fields or endpoints; a client refuses a
server whose major differs (see client.py and docs/verification/api.md).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

API_VERSION = "1.0"
BASE_PATH = "/bench/v1"
VERSION_HEADER = "X-Bench-API-Version"

# Limits a platform may rely on (and the verifier never exceeds): a TableData this big is ~ tens of MB of JSON.
MAX_ROWS = 200_000
MAX_COLUMNS = 512
MAX_CELLS = 5_000_000
MAX_STRING = 256
MAX_ROUNDS = 1000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

# Error code -> HTTP status (the `error.code` field of every error body).
ERROR_STATUS: dict[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "invalid": 422,
    "unsupported": 422,
    "conflict": 409,
    "too_large": 413,
    "internal": 500,
}
ErrorCode = Literal["unauthorized", "forbidden", "not_found", "invalid", "unsupported", "conflict", "too_large",
                    "internal"]

Capability = Literal["horizontal", "vertical", "psi", "secure_aggregation", "dp", "mtls", "model_export",
                     "evaluate", "predict", "dropout", "resume", "audit_log", "robust_aggregation"]
CAPABILITIES: tuple[str, ...] = ("horizontal", "vertical", "psi", "secure_aggregation", "dp", "mtls",
                                 "model_export", "evaluate", "predict", "dropout", "resume", "audit_log",
                                 "robust_aggregation")
Aggregator = Literal["mean", "median", "trimmed_mean", "krum"]
"""How a horizontal job combines the parties' updates: "mean" (FedAvg, the default) or a robust rule, offered by
a platform that declares the capability "robust_aggregation" (it does not combine with secure aggregation here:
a robust rule needs each update, secure aggregation reveals only their sum)."""

PartyName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
ShortText = Annotated[str, StringConstraints(max_length=MAX_STRING)]
Pem = Annotated[str, StringConstraints(max_length=64 * 1024)]
Role = Literal["data_owner", "label_holder", "feature_holder"]
OperatedBy = Literal["platform", "verifier"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Cell = float | str | None


class _Model(BaseModel):
    """Strict base: unknown fields are an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class _Answer(_Model):
    """What a platform answers with numbers in it: NaN and Infinity (not JSON, but pydantic's JSON mode reads
    them) are refused, so no check written ``if spent > claimed`` can be passed with a NaN."""

    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


class ApiError(_Model):
    """What went wrong: a stable code, a message for a person, and the field at fault when there is one."""

    code: ErrorCode
    message: str
    field: str | None = None


class ErrorBody(_Model):
    """The body of every non-2xx response."""

    error: ApiError


# ---------------------------------------------------------------- /info
class DPClaim(_Model):
    """The differential-privacy guarantee the platform claims for a job with DP on."""

    epsilon: float = Field(gt=0, le=1e6)
    delta: float = Field(ge=0, lt=1)
    level: Literal["record", "party"] = "record"


class Claims(_Model):
    """What the platform says it protects; the security tests check each claim against what they observe."""

    secure_aggregation: bool = False
    dp: DPClaim | None = None
    mtls: bool = False
    psi: bool = False
    audit_log: bool = False


class PlatformInfo(_Model):
    """GET /info: who the platform is, what it can do, what it claims."""

    api_version: str = API_VERSION
    platform: ShortText
    platform_version: ShortText
    capabilities: list[Capability] = Field(default_factory=list, max_length=len(CAPABILITIES))
    claims: Claims = Field(default_factory=Claims)
    party_kit: ShortText | None = None


# ---------------------------------------------------------------- projects and parties
class ProjectCreate(_Model):
    """POST /projects: a fresh project; ca_pem is the verifier's consortium CA (it issues the parties' certs)."""

    name: Identifier
    ca_pem: Pem | None = None


class Project(_Model):
    project_id: Identifier
    name: Identifier


class TableData(_Model):
    """Rows as JSON: column names plus one list per row (numbers, strings for ids/categories, null for missing)."""

    columns: list[ColumnName] = Field(min_length=1, max_length=MAX_COLUMNS)
    rows: list[list[Cell]] = Field(max_length=MAX_ROWS)

    @field_validator("columns")
    @classmethod
    def _unique_columns(cls, columns: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in columns:
            if name in seen:
                raise ValueError(f"column {name!r} appears twice")
            seen.add(name)
        return columns

    @model_validator(mode="after")
    def _rectangular(self) -> TableData:
        width = len(self.columns)
        if width * len(self.rows) > MAX_CELLS:
            raise ValueError(f"{width * len(self.rows)} cells is over the limit of {MAX_CELLS}")
        for i, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(f"row {i} has {len(row)} values, the table has {width} columns")
            for j, cell in enumerate(row):
                if isinstance(cell, float) and not math.isfinite(cell):
                    raise ValueError(f"row {i}, column {self.columns[j]!r}: {cell} is not a finite number")
                if isinstance(cell, str) and len(cell) > MAX_STRING:
                    raise ValueError(f"row {i}, column {self.columns[j]!r}: string longer than {MAX_STRING}")
        return self

    def column(self, name: str) -> list[Cell]:
        """The values of one column, in row order (KeyError naming the column if absent)."""
        try:
            j = self.columns.index(name)
        except ValueError:
            raise KeyError(f"column {name!r} is not in the table (columns: {', '.join(self.columns)})") from None
        return [row[j] for row in self.rows]


class PartyRegistration(_Model):
    """POST /projects/{id}/parties: a party the platform runs (with its rows) or one the verifier runs (its cert)."""

    name: PartyName
    role: Role
    operated_by: OperatedBy
    data: TableData | None = None
    certificate_pem: Pem | None = None

    @model_validator(mode="after")
    def _operator_fields(self) -> PartyRegistration:
        if self.operated_by == "platform" and self.data is None:
            raise ValueError("a platform-operated party needs `data` (the rows the platform holds for it)")
        if self.operated_by == "verifier" and self.data is not None:
            raise ValueError("a verifier-operated party keeps its rows: send no `data`")
        return self


class PartyConnect(_Model):
    """Where a verifier-operated party's kit connects (the verifier puts its recording proxy in between)."""

    address: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.\-\[\]:]{1,253}:[0-9]{1,5}$")]
    protocol: ShortText
    server_name: ShortText | None = None
    ca_pem: Pem | None = None

    @field_validator("address")
    @classmethod
    def _port_in_range(cls, address: str) -> str:
        if not 1 <= int(address.rpartition(":")[2]) <= 65535:
            raise ValueError(f"the port of {address!r} is not in 1..65535")
        return address


class Party(_Model):
    name: PartyName
    role: Role
    operated_by: OperatedBy
    connect: PartyConnect | None = None


# ---------------------------------------------------------------- jobs
class DPSpec(_Model):
    epsilon: float = Field(gt=0, le=1e6)
    delta: float = Field(ge=0, lt=1)
    clip: float = Field(default=1.0, gt=0, le=1e6)


class Dropout(_Model):
    """The platform must simulate `party` leaving after round `after_round` (and finish without it)."""

    party: PartyName
    after_round: int = Field(ge=0, le=MAX_ROUNDS)


class TaskSpec(_Model):
    """POST /projects/{id}/jobs: one training job, fully specified (the platform may not choose columns)."""

    kind: Literal["horizontal", "vertical"]
    model: Literal["logistic_regression"] = "logistic_regression"
    label: ColumnName
    id_column: ColumnName | None = None
    features: dict[PartyName, list[ColumnName]] = Field(min_length=1, max_length=64)
    rounds: int = Field(ge=1, le=MAX_ROUNDS)
    local_epochs: int = Field(default=1, ge=1, le=100)
    learning_rate: float = Field(default=0.1, gt=0, le=100)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)
    l2: float = Field(default=0.0, ge=0, le=1e6)
    secure_aggregation: bool = False
    dp: DPSpec | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    dropout: Dropout | None = None
    timeout_s: int = Field(default=600, ge=1, le=86_400)
    aggregator: Aggregator = "mean"  # optional, v1.0-compatible: a platform without robust_aggregation sees "mean"

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        for party, columns in self.features.items():
            if len(columns) > MAX_COLUMNS:
                raise ValueError(f"party {party!r}: {len(columns)} features is over the limit of {MAX_COLUMNS}")
            if len(set(columns)) != len(columns):
                raise ValueError(f"party {party!r}: a feature is listed twice")
        if self.kind == "horizontal":
            lists = {tuple(c) for c in self.features.values()}
            if len(lists) != 1:
                raise ValueError("horizontal: every party must list the same features")
        else:
            if self.id_column is None:
                raise ValueError("vertical: `id_column` is required (the column PSI aligns on)")
        if self.dropout is not None:
            if self.dropout.party not in self.features:
                raise ValueError(f"dropout: party {self.dropout.party!r} is not in `features`")
            if self.dropout.after_round >= self.rounds:
                raise ValueError("dropout: `after_round` must be below `rounds`")
        return self


class Job(_Model):
    job_id: Identifier
    project_id: Identifier
    state: JobState
    round: int = Field(default=0, ge=0)
    rounds: int = Field(ge=0)
    error: ApiError | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once the job can change no more (succeeded, failed or cancelled)."""
        return self.state in ("succeeded", "failed", "cancelled")


class RoundResult(_Answer):
    round: int = Field(ge=0)
    seconds: float = Field(ge=0)
    auc: float | None = None
    loss: float | None = None
    parties: list[PartyName] = Field(default_factory=list)


class AuditEntry(_Model):
    time: datetime
    actor: ShortText
    action: ShortText
    detail: str = ""


class JobResults(_Answer):
    """`metrics`: at least "auc" on the platform's own holdout if any; optional documented keys:
    "intersection_size" (vertical jobs: how many ids the PSI matched, checked by F-PSI-EXACT against a plaintext
    intersection)."""

    job_id: Identifier
    rounds: list[RoundResult] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    epsilon_spent: dict[str, float] | None = None
    audit_log: list[AuditEntry] | None = None


class Standardisation(_Answer):
    mean: list[float]
    scale: list[float]


class ModelExport(_Answer):
    """The trained linear model: features are "party:column" for vertical, plain column names for horizontal."""

    format: Literal["linear.v1"] = "linear.v1"
    features: list[str]
    coefficients: list[float]
    intercept: float
    standardisation: Standardisation | None = None

    @model_validator(mode="after")
    def _lengths(self) -> ModelExport:
        n = len(self.features)
        if len(self.coefficients) != n:
            raise ValueError(f"{len(self.coefficients)} coefficients for {n} features")
        if self.standardisation is not None and not (
                len(self.standardisation.mean) == len(self.standardisation.scale) == n):
            raise ValueError("standardisation: mean and scale must have one value per feature")
        return self


class EvaluateMetrics(_Answer):
    auc: float | None = None
    logloss: float | None = None
    accuracy: float | None = None


class EvaluateResult(_Answer):
    metrics: EvaluateMetrics
    rows: int = Field(ge=0)


class PredictResult(_Answer):
    scores: list[float]


__all__ = [
    "API_VERSION", "BASE_PATH", "VERSION_HEADER", "DEFAULT_MAX_BODY_BYTES", "ERROR_STATUS", "CAPABILITIES",
    "MAX_ROWS", "MAX_COLUMNS", "MAX_CELLS", "MAX_ROUNDS",
    "ApiError", "ErrorBody", "DPClaim", "Claims", "PlatformInfo", "ProjectCreate", "Project", "TableData",
    "PartyRegistration", "PartyConnect", "Party", "DPSpec", "Dropout", "Aggregator", "TaskSpec", "Job", "RoundResult",
    "AuditEntry", "JobResults", "Standardisation", "ModelExport", "EvaluateMetrics", "EvaluateResult",
    "PredictResult",
]
