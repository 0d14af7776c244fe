"""`sampan console` (the whole consortium on this machine) and `sampan control-plane` (on a real coordinator).

The web stack (fastapi, uvicorn, jinja2, argon2, the `console` extra) is imported only when a command runs.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from sampan.cli.error_path import ErrorHandlingGroup

__all__ = ["console_app"]

console_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, cls=ErrorHandlingGroup,
                          help="The consortium control plane and web console.")


def _needs_console_extra() -> None:
    from sampan.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the console needs the 'console' extra (pip install 'sampan[console]'): {exc}") from None


@console_app.command("console")
def console(
    folder: Path = typer.Option(Path("sampan-console"), "--dir", help="Folder for the consortium's data, keys, "
                                "configs and store; a second start in the same folder resumes it."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="HTTP port on 127.0.0.1 (0 picks a free one)."),
    parties: int = typer.Option(3, "--parties", min=1, max=8, help="Simulated banks, each with its own agent process "
                                "(only at the folder's first start)."),
) -> None:
    """Start a coordinator, the web console and simulated bank agents on this machine (Ctrl-C stops all)."""
    _needs_console_extra()
    from sampan.web.embedded import EmbeddedConsole

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    embedded = EmbeddedConsole(folder, port=port, parties=parties)
    try:
        typer.echo(f"sampan console: making or opening {folder.resolve()} ...", err=True)
        started = embedded.start()
        typer.echo(f"Console: {started.url}")
        if started.admin_password:
            typer.echo(f"First admin: {started.admin_user}  one-time password: {started.admin_password}")
            typer.echo("  (shown once, stored only as a hash; you choose a new one at the first sign-in)")
        else:
            typer.echo(f"Resumed {started.folder}: sign in with your accounts (the admin is {started.admin_user!r}).")
        missing = embedded.wait_connected()
        agents = ", ".join(p for p in started.parties if p not in missing)
        typer.echo(f"Party agents connected: {agents or 'none'}" + (f"; not connected: {', '.join(missing)} "
                                                                    "(see their agent.out)" if missing else ""))
        typer.echo(f"Logs: {started.folder / 'coordinator' / 'coordinator.log'}. Ctrl-C stops everything.")
        stop.wait()
        typer.echo("Stopping (a running job resumes at the next start) ...", err=True)
    finally:
        embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@console_app.command("control-plane")
def control_plane(config: Path = typer.Option(..., "--config", help="coordinator.toml with a [control_plane] "
                                              "section.")) -> None:
    """Serve a coordinator with its control plane API and web console (HTTPS; see docs/deploy.md)."""
    _needs_console_extra()
    from sampan.cli.deploy import _setup_logging
    from sampan.web.control_plane import load_control_plane, serve_control_plane

    coordinator_config, _ = load_control_plane(config)  # errors before anything starts
    _setup_logging(coordinator_config.coordinator.log_file, capture_grpc=False)
    serve_control_plane(config, echo=typer.echo)
