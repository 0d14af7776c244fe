"""One error hierarchy for everything a user can get wrong or a federation can refuse.

Every error Sampan raises on purpose is a `SampanError`: the CLI turns it into one clear message and an
exit code (never a traceback), and a Python caller can catch one type. The concrete errors stay where
they are raised (`sampan.config.ConfigError`, `sampan.data.DataValidationError`,
`sampan.privacy.ledger.BudgetExceeded`, `sampan.core.PartyError`, `sampan.runtime.store.StoreError`, ...)
and subclass the categories here, so `except sampan.errors.DataError` catches every data problem.
ConfigError and DataError are ValueErrors and StoreError a RuntimeError (as those errors always were);
the other categories add no builtin base, so a concrete error keeps exactly the builtin base it had.

Standard library only and imported by the lowest layers, so it sits below `sampan.wire` and `sampan.core`.

Exit codes (stable, for scripts and schedulers):

    0  success
    1  internal error (a bug: the CLI prints the traceback only with SAMPAN_DEBUG=1)
    2  usage: a config, data file, column, store entry or file that must be fixed before a rerun
    3  a party failed, refused or did not answer
    4  a privacy budget would be exceeded (nothing was spent beyond it)
    5  a protocol check failed (a message, signature, mask or share that does not verify)
    130 cancelled (Ctrl-C, `sampan runs cancel`)
    141 stdout's reader went away (`sampan ... | head`)
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ExitCode", "SampanError", "ConfigError", "DataError", "PartyError", "BudgetError", "ProtocolError",
    "StoreError", "CancelledError", "exit_code_for", "user_message",
]


class ExitCode(IntEnum):
    """The process exit status of `sampan` for each kind of failure."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    PARTY = 3
    BUDGET = 4
    PROTOCOL = 5
    CANCELLED = 130
    BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`sampan ... | head`)


class SampanError(Exception):
    """Base of every deliberate Sampan error; its message names the party, file, column or field at fault."""

    exit_code: ExitCode = ExitCode.INTERNAL
    category: str = "error"

    def user_message(self) -> str:
        """What a person reads: the message itself (no class name, no traceback)."""
        return user_message(self)


class ConfigError(SampanError, ValueError):
    """A run description, option or setting that cannot be used; names the file and the dotted field."""

    exit_code = ExitCode.USAGE
    category = "config error"


class DataError(SampanError, ValueError):
    """A party's data that cannot be used (missing column, bad value, unknown category); names party/file/column."""

    exit_code = ExitCode.USAGE
    category = "data error"


class StoreError(SampanError, RuntimeError):
    """A run store that cannot be opened, or a run, model or key that is not in it."""

    exit_code = ExitCode.USAGE
    category = "store error"


class PartyError(SampanError):
    """A party that failed, refused a job or is unreachable; names the party and the step."""

    exit_code = ExitCode.PARTY
    category = "party error"


class BudgetError(SampanError):
    """A privacy budget that the next release would exceed; nothing beyond the budget was released."""

    exit_code = ExitCode.BUDGET
    category = "privacy budget"


class ProtocolError(SampanError):
    """A protocol check that failed: a message, signature, share or mask that does not verify."""

    exit_code = ExitCode.PROTOCOL
    category = "protocol error"


class CancelledError(SampanError):
    """A run stopped on request; its finished rounds are saved."""

    exit_code = ExitCode.CANCELLED
    category = "cancelled"


def exit_code_for(exc: BaseException) -> int:
    """The exit status for an exception: its category's for a SampanError, usage for a user's
    file/permission/validation problem, 130 for Ctrl-C, 1 (internal) for anything else."""
    if isinstance(exc, SampanError):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return int(ExitCode.CANCELLED)
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return int(ExitCode.USAGE)
    if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        return int(ExitCode.USAGE)
    return int(ExitCode.INTERNAL)


def user_message(exc: BaseException) -> str:
    """A message for a person: the error's own text; for OS errors the path and the reason; for a pydantic
    ValidationError every `dotted.field: problem` on one line (no pydantic URLs)."""
    if isinstance(exc, OSError) and exc.filename is not None and not isinstance(exc, SampanError):
        reason = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {reason}"
    errors = getattr(exc, "errors", None)
    if type(exc).__name__ == "ValidationError" and callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))
            parts.append(f"{loc or '(top level)'}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
        return f"{getattr(exc, 'title', 'invalid value')}: " + "; ".join(parts)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1 and text == repr(exc.args[0]):
        text = str(exc.args[0])  # KeyError quotes its message; a KeyError subclass with __str__ is left alone
    return text or type(exc).__name__
