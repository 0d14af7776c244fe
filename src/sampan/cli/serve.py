"""``sampan serve --config bank-serve.toml``: the bank's HTTP scoring endpoint; ``sampan serve token CLIENT``.

fastapi/uvicorn (the `serve` extra) are imported only when the service starts (`sampan.serve.service`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from sampan.cli.error_path import ErrorHandlingGroup

__all__ = ["serve_app"]

serve_app = typer.Typer(help="Serve a model over HTTPS at the bank (OpenAPI; API tokens and/or mTLS clients).",
                        add_completion=False, pretty_exceptions_enable=False, cls=ErrorHandlingGroup,
                        invoke_without_command=True)


@serve_app.callback()
def serve(ctx: typer.Context,
          config: Path = typer.Option(None, "--config", "-c", help="bank-serve.toml (its serve section)."),
          port: int | None = typer.Option(None, help="Override the configured port."),
          host: str | None = typer.Option(None, help="Override the configured host.")) -> None:
    """Serve a model over HTTPS at the bank (OpenAPI; API tokens and/or mTLS clients)."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("--config bank-serve.toml is required (see docs/deploy.md, 'Scoring service')")
    from sampan.errors import ConfigError

    try:
        from pydantic import ValidationError

        from sampan.config.base import problems
        from sampan.serve.config import ServeSection, load_serve_config
        from sampan.serve.service import serve as run_service
    except ImportError as exc:
        raise ConfigError(f"sampan serve needs the 'serve' extra (pip install 'sampan[serve]'): {exc}") from None
    loaded = load_serve_config(config)
    overrides = {k: v for k, v in (("port", port), ("host", host)) if v is not None}
    if overrides:  # validated like the file's values (R13-SRV-9: model_copy would skip the port's bounds)
        try:
            loaded.section = ServeSection.model_validate({**loaded.section.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(f"sampan serve --port/--host: {problems(exc)}") from None
    typer.echo(f"sampan serve: {loaded.section.model or loaded.section.vertical_run} on "
               f"{'https' if loaded.section.tls else 'http'}://{loaded.section.host}:{loaded.section.port}", err=True)
    run_service(loaded)


@serve_app.command("token")
def token(client: str = typer.Argument(..., help="The client's name (shown in the access log).")) -> None:
    """Make an API token: prints the token (give it to the client, once) and the line for the token file."""
    from sampan.serve.auth import new_token, token_hash

    made = new_token()
    typer.echo(f"token (give to {client}, not stored anywhere): {made}")
    typer.echo(f"token file line: {client}:{token_hash(made)}")
