"""The typed request and response bodies of the scoring service (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Applicant", "ScoreRequest", "Reason", "ScoredApplicant", "ScoreResponse", "Health", "ModelDescription",
           "Monitoring"]

Value = float | int | str | bool | None
MAX_FEATURES = 500  # input columns per applicant (R13-SRV-7: the body's size is bounded too, `app.BodyLimit`)
MAX_NAME = 128  # characters of a feature name
MAX_LABEL = 256  # characters of a category label
MAX_ABS = 1e15  # a numeric feature's magnitude (R13-SRV-5: 1e308 made an infinite reason contribution, a 500)


class Applicant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=128, description="The applicant's registration number. Required for a "
                           "vertical model (partners look it up in their own tables); echoed back otherwise.")
    features: dict[str, Value] = Field(default_factory=dict, description="Input columns by name (horizontal "
                                       "models): numbers, booleans or category labels; other columns are ignored.",
                                       max_length=MAX_FEATURES)

    @field_validator("features")
    @classmethod
    def _bounded(cls, features: dict[str, Value]) -> dict[str, Value]:
        """Names, labels and magnitudes a model can use; the error names the field."""
        for name, value in features.items():
            if len(name) > MAX_NAME:
                raise ValueError(f"feature name {name[:40]!r}...: longer than {MAX_NAME} characters")
            if isinstance(value, str) and len(value) > MAX_LABEL:
                raise ValueError(f"feature {name!r}: a label longer than {MAX_LABEL} characters")
            if isinstance(value, (int, float)) and not abs(value) <= MAX_ABS:  # NaN and +/-inf fail too
                raise ValueError(f"feature {name!r}: {value!r} is not a finite number within +/-{MAX_ABS:g}")
        return features


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    applicants: list[Applicant] = Field(..., min_length=1, max_length=1000,
                                        description="One applicant or a batch (at most 1000).")


class Reason(BaseModel):
    code: str = Field(..., description="R01, R02, ...: rank of the reason for this applicant.")
    source: str = Field(..., description="'bank' for the bank's own feature, 'partners (aggregated)' for the "
                        "partners' summed effect (vertical).")
    feature: str = Field(..., description="The feature (input column) the reason names.")
    logit_contribution: float = Field(..., description="Its effect on the log-odds of default (positive raises "
                                      "the PD).")
    effect: Literal["raises risk", "lowers risk", "neutral"] = Field(..., description="The sign of the effect.")


class ScoredApplicant(BaseModel):
    applicant: str = Field(..., description="The applicant's id (or its position in the batch when none was given).")
    probability_of_default: float = Field(..., description="P(default), float64, not rounded.")
    score: float = Field(..., description="Points: 600 at odds 50:1 good:bad, 20 points to double the odds.")
    decision: Literal["approve", "decline"] | None = Field(..., description="'decline' when the PD is at or above "
                                                           "the threshold; null when neither the service nor the "
                                                           "model sets one.")
    reasons: list[Reason] = Field(..., description="Reason codes, largest risk-raising effect first; never empty.")
    missing_at: list[str] = Field(default_factory=list, description="['partner data'] when some partner does not "
                                  "know the applicant (its part was neutral). Aggregated: which partner is never "
                                  "shown to a client (it would say whose customer the applicant is not); the bank's "
                                  "own scoring jobs (`sampan score`) name them.")
    unknown_at_bank: bool = Field(False, description="The bank holds no record of the applicant (vertical).")


class ScoreResponse(BaseModel):
    model: str = Field(..., description="The model's name.")
    version: int | None = Field(None, description="The model's registry version.")
    results: list[ScoredApplicant] = Field(..., description="One result per applicant, in request order.")


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(..., description="'degraded' after a failed vertical exchange.")
    uptime_s: float = Field(..., description="Seconds since the service started.")
    model: str = Field(..., description="The model served.")


class ModelDescription(BaseModel):
    name: str = Field(..., description="The registered model's name.")
    version: int | None = Field(None, description="Its registry version.")
    format: str = Field(..., description="The model format it was loaded from.")
    kind: str = Field(..., description="logistic, mlp or gbdt (horizontal); lr, scorecard or gbdt (vertical).")
    topology: Literal["horizontal", "vertical"] = Field(..., description="Scored at the bank alone, or jointly with "
                                                        "the partners through the coordinator relay.")
    threshold: float | None = Field(None, description="The decision threshold on the PD (null: no decisions).")
    inputs: list[str] = Field(default_factory=list, description="The input columns a horizontal model reads.")
    reasons: str = Field("", description="How the reason codes are computed.")


class Monitoring(BaseModel):
    requests: int = Field(..., description="Score requests answered since start (any status).")
    applicants: int = Field(..., description="Applicants scored.")
    errors: dict[str, int] = Field(..., description="Failed requests by HTTP status.")
    latency_ms: dict[str, float] = Field(..., description="p50 and p99 over the last 2000 score requests.")
    published_after: int = Field(..., description="Scored requests counted in decisions, score_bands and drift: "
                                 "they refresh once per monitor_every requests, never per request.")
    decisions: dict[str, int] = Field(..., description="Decisions made, by decision (as of published_after).")
    score_bands: dict[str, int] = Field(..., description="Scored applicants by 20-point score band (bank-local, as "
                                        "of published_after).")
    drift: dict[str, object] | None = Field(None, description="From `sampan.monitoring` (horizontal models): the "
                                            "served PDs binned against the training reference (PSI) and the drift, "
                                            "backtest and challenger results recorded for the model.")
