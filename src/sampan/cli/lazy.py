"""Command groups whose subcommands are imported only when they run (or their own --help is asked for).

`sampan --help` lists every command from the short help stored here, so it imports no command module
(and so no numpy, pydantic, sqlalchemy or grpc). A test checks that each stored help matches the
command's own first help line, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer

from sampan.cli.error_path import ErrorHandlingGroup

__all__ = ["LazyCommand", "LazyGroup", "load"]


@dataclass(frozen=True)
class LazyCommand:
    """Where a subcommand lives: ``module:attr`` is a Typer app (a group) or, with ``command``, the app
    that holds that one command; ``help`` is what the parent's --help shows for it."""

    module: str
    attr: str
    help: str
    command: str | None = None


def load(entry: LazyCommand, name: str) -> Any:
    """Import the module and build the click command (or group) named ``name``."""
    target = getattr(importlib.import_module(entry.module), entry.attr)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        if entry.command is None:
            group.name = name
            return group
        command = group.commands[entry.command]
        command.name = name
        return command
    return target  # already a click command


class LazyGroup(ErrorHandlingGroup):
    """The root `sampan` group: own commands plus ``lazy_commands`` imported on first use."""

    lazy_commands: dict[str, LazyCommand] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, Any] = {}
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        own = super().list_commands(ctx)
        return [*self.lazy_commands, *(name for name in own if name not in self.lazy_commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = self.lazy_commands.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self._listing and cmd_name not in self._loaded:  # a help listing: the stored line suffices
            return typer.core.TyperCommand(name=cmd_name, help=entry.help, short_help=entry.help)
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = load(entry, cmd_name)
        return self._loaded[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

