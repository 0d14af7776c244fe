"""`sampan portal`: the verification portal on this machine (SQLite in a folder, or PostgreSQL by URL).

The web stack (fastapi, uvicorn, jinja2, argon2: the `console` extra) is imported only when the command runs.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from sampan.cli.error_path import ErrorHandlingGroup

__all__ = ["portal_app"]

portal_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, cls=ErrorHandlingGroup,
                         help="The verification portal: vendors register, qualify and evaluate their FL platform.")


@portal_app.command("portal")
def portal(
    folder: Path = typer.Option(Path("sampan-portal"), "--dir", help="Folder for the portal's store, keys, logs and "
                                "evaluation results; a second start in the same folder resumes it."),
    port: int = typer.Option(8090, "--port", min=0, max=65535, help="HTTP port on 127.0.0.1 (0 picks a free one)."),
    database_url: str | None = typer.Option(None, "--database-url", help="A SQLAlchemy URL such as "
                                            "postgresql+psycopg://user@host/portal (default: SQLite in --dir)."),
    local_platforms: bool = typer.Option(False, "--local-platforms", help="Also start the in-repo weak and Sampan "
                                         "platforms on loopback (allow-listed) to try the whole flow."),
) -> None:
    """Start the verification portal on this machine: vendors register, qualify and evaluate their FL platform.

    It serves on 127.0.0.1 (Ctrl-C stops it); verification links go to the log.
    """
    from sampan.cli.console import _needs_console_extra

    _needs_console_extra()
    from sampan.web.portal.embedded import EmbeddedPortal

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    to_terminal = logging.StreamHandler()  # verification links and warnings on stderr too (the file has them all)
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger("sampan.portal").addHandler(to_terminal)
    embedded = EmbeddedPortal(folder, port=port, database_url=database_url, local_platforms=local_platforms)
    try:
        typer.echo(f"sampan portal: making or opening {folder.resolve()} ...", err=True)
        started = embedded.start()
        typer.echo(f"Portal: {started.url}")
        if started.admin_password:
            typer.echo(f"First admin: {started.admin_email}  one-time password: {started.admin_password}")
            typer.echo("  (shown once, stored only as a hash; you choose a new one at the first sign-in)")
        else:
            typer.echo(f"Resumed {started.folder}: sign in with your accounts (the admin is {started.admin_email}).")
        for name, local in started.platforms.items():
            typer.echo(f"Local platform {name}: endpoint {local.url}  bench token {local.token}"
                       + (f"  TLS certificate: paste {local.ca_file}" if local.ca_file else ""))
        typer.echo(f"Verification links and warnings: {started.folder / 'portal.log'}. Ctrl-C stops the portal.")
        stop.wait()
        typer.echo("Stopping ...", err=True)
    finally:
        embedded.stop()
        logging.getLogger("sampan.portal").removeHandler(to_terminal)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
