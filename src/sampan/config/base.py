"""What every config section shares: strict frozen models and the one error type that names file and field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

from sampan.errors import ConfigError  # one class for every config problem (a ValueError, exit code 2)

__all__ = ["ConfigError", "Strict", "problems"]


class Strict(BaseModel):
    """Unknown keys are errors (a typo such as `learning_rat` must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def problems(exc: ValidationError) -> str:
    """Every pydantic error as `dotted.field: message`, joined (no traceback, no pydantic URL)."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.append(msg if not loc or msg.startswith(loc) else f"{loc}: {msg}")
    return "; ".join(out)
