"""The control plane's errors: each carries the HTTP status the API answers and the field it is about.

Why one small hierarchy: the service raises them, the REST API and the console map them to a status code and
a JSON body ``{"error": ..., "field": ...}`` in one place, so bad input never becomes a 500 or a traceback.
"""

from __future__ import annotations

from sampan.errors import SampanError

__all__ = ["ControlPlaneError", "Invalid", "Unauthenticated", "Forbidden", "NotFound", "Conflict"]


class ControlPlaneError(SampanError):
    """A refused control-plane request: `status` for HTTP, `field` naming the offending input (or None)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(ControlPlaneError):
    status = 400


class Unauthenticated(ControlPlaneError):
    status = 401


class Forbidden(ControlPlaneError):
    status = 403


class NotFound(ControlPlaneError):
    status = 404


class Conflict(ControlPlaneError):
    status = 409
