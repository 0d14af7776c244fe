"""The CLI's one error path: every `sampan` command runs inside `ErrorHandlingGroup.invoke`.

A user error (a `SampanError`, a pydantic ValidationError, a missing or unreadable file) ends in one
`error: ...` line on stderr and the exit code of its category (`sampan.errors.ExitCode`), never a
traceback. Ctrl-C ends with 130. Anything else is a bug: one line naming the exception and where it
was raised, exit 1. `SAMPAN_DEBUG=1` re-raises instead, so the full traceback shows.

Imports nothing heavy: `sampan --help` goes through here.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from sampan.errors import ExitCode, SampanError, exit_code_for, user_message

__all__ = ["ErrorHandlingGroup", "debug_enabled", "fail", "quiet_broken_pipe", "report", "treat_as_usage"]


def debug_enabled() -> bool:
    """SAMPAN_DEBUG=1 (or true/yes): show tracebacks instead of one-line errors."""
    return os.environ.get("SAMPAN_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _where(exc: BaseException) -> str:
    """`module.py:line` of the frame that raised, for the one-line report of an unexpected error."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {os.path.basename(last.filename)}:{last.lineno})"


def _print_error(text: str) -> None:
    from rich.console import Console  # only when there is an error to show
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)


def report(exc: BaseException) -> int:
    """Print the one-line message for ``exc`` on stderr and return its exit code."""
    code = exit_code_for(exc)
    if code == ExitCode.INTERNAL:
        text = (f"internal error: {type(exc).__name__}: {user_message(exc)}{_where(exc)}; "
                "rerun with SAMPAN_DEBUG=1 for the traceback")
    else:
        text = user_message(exc)
    _print_error(text)
    return code


def fail(exc: BaseException | str, code: int | None = None) -> NoReturn:
    """Stop a command with one error line for something the user must fix: an exception (exit code of its
    category; 2 for one outside the hierarchy, e.g. a ValueError from a parameter check) or a text (2)."""
    if isinstance(exc, str):
        text, category = exc, int(ExitCode.USAGE)
    else:
        text, category = user_message(exc), exit_code_for(exc)
    _print_error(text)
    default = ExitCode.USAGE if category == ExitCode.INTERNAL else category
    raise typer.Exit(default if code is None else code)


@contextmanager
def treat_as_usage(*types: type[BaseException]) -> Iterator[None]:
    """Inside a command: also treat these (e.g. ValueError from a model's parameter check) as user errors."""
    try:
        yield
    except SampanError:
        raise
    except types as exc:
        if debug_enabled():
            raise
        _print_error(user_message(exc))
        raise typer.Exit(ExitCode.USAGE) from None


class ErrorHandlingGroup(TyperGroup):
    """A command group whose subcommands all run inside the shared error path."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.Exit:
            raise
        except BrokenPipeError:  # `sampan ... | head`: the reader left; nothing to report
            quiet_broken_pipe()
        except KeyboardInterrupt as exc:
            if debug_enabled():
                raise
            _print_error("interrupted")
            raise typer.Exit(ExitCode.CANCELLED) from exc
        except Exception as exc:
            if _is_click_control(exc) or debug_enabled():
                raise  # usage errors, --help, Abort: click prints those itself
            raise typer.Exit(report(exc)) from None


def quiet_broken_pipe() -> NoReturn:
    """Exit without a second BrokenPipeError when stdout's reader is gone (as `sampan --help | head` does)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test runner's buffer)
        pass
    raise typer.Exit(ExitCode.BROKEN_PIPE)


def _is_click_control(exc: BaseException) -> bool:
    """click's own exceptions (usage errors, Abort, Exit) already carry their message and code."""
    from typer.exceptions import TyperException

    return isinstance(exc, (TyperException, typer.Exit, typer.Abort))
