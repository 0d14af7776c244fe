"""What a platform implements to be served as Benchmark API v1: one method per endpoint, pydantic in and out.

`server.make_benchmark_app(backend)` turns any object with these methods into the HTTP API, so an adapter (the weak
platform, Sampan, Flower) writes no HTTP code. Methods are plain (synchronous) calls: the server runs them in a
worker thread, so a slow `submit_job` never blocks other requests. A backend refuses with `BackendError(code,
message, field)` using the API's error codes; anything else it raises becomes a 500 `internal` with no traceback.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sampan.errors import SampanError
from sampan.verify.api import (
    ERROR_STATUS,
    EvaluateResult,
    Job,
    JobResults,
    ModelExport,
    Party,
    PartyRegistration,
    PlatformInfo,
    PredictResult,
    Project,
    ProjectCreate,
    TableData,
    TaskSpec,
)


class BackendError(SampanError):
    """A refusal the platform means: an API error code, a message for a person, and the field at fault."""

    category = "benchmark API"

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown Benchmark API error code {code!r} (one of {', '.join(ERROR_STATUS)})")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def status(self) -> int:
        """The HTTP status the code maps to."""
        return ERROR_STATUS[self.code]


@runtime_checkable
class PlatformBackend(Protocol):
    """The platform side of Benchmark API v1 (see docs/verification/api.md for each call's meaning)."""

    def info(self) -> PlatformInfo: ...

    def create_project(self, spec: ProjectCreate) -> Project: ...

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party: ...

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job: ...

    def job(self, job_id: str) -> Job: ...

    def cancel(self, job_id: str) -> Job: ...

    def results(self, job_id: str) -> JobResults: ...

    def model(self, job_id: str) -> ModelExport: ...

    def evaluate(self, job_id: str, data: TableData) -> EvaluateResult: ...

    def predict(self, job_id: str, data: TableData) -> PredictResult: ...


__all__ = ["BackendError", "PlatformBackend"]
