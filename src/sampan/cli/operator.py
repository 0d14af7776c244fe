"""Operator commands against a running coordinator: `sampan runs status|cancel|attach --coordinator ...`.

The same operator certificate as `sampan submit` (mutual TLS; the coordinator answers only members with
the operator role). `attach` polls the coordinator's Status, riding out a coordinator restart (it keeps
asking until the coordinator is back and the run, resumed, ends), so a run submitted with `--no-wait` or
from another terminal can be followed to its end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["OperatorClient", "register_operator_commands", "follow"]

console = Console()
TERMINAL = ("completed", "failed", "cancelled")


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


@dataclass
class OperatorClient:
    """One operator's calls to one coordinator (a fresh channel per call: survives its restarts)."""

    coordinator: str
    credentials: Any
    operator: str
    target: str

    @classmethod
    def open(cls, coordinator: str, ca: Path, cert: Path, key: Path, server_name: str | None) -> OperatorClient:
        import grpc

        from sampan.deploy.certs import cert_identity, load_cert
        from sampan.deploy.config import split_address
        from sampan.deploy.keyfiles import KeyFileError, unencrypted_pem

        try:
            host, _ = split_address(coordinator)
            credentials = grpc.ssl_channel_credentials(
                ca.read_bytes(), unencrypted_pem(key, what="operator's private key"), cert.read_bytes())
            operator = cert_identity(load_cert(cert))[0]
        except Exception as exc:  # noqa: BLE001 - a user error: unreadable files, bad address
            _fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, (OSError, KeyFileError, ValueError))
                  else str(exc))
        return cls(coordinator, credentials, operator, server_name or host)

    def call(self, method: str, meta: dict[str, object], *, retry_unavailable_s: float = 0.0) -> Any:
        """One operator call; a refusal ends the command with the coordinator's reason."""
        import grpc

        from sampan.transport.grpc_client import operator_call
        from sampan.wire import Message

        deadline = time.monotonic() + retry_unavailable_s
        while True:
            request = Message("", 0, self.operator, "coordinator", f"deploy.{method.lower()}", meta=meta)
            try:
                reply = operator_call(self.coordinator, self.credentials, method, request, target_name=self.target)
                break
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline:
                    time.sleep(1.0)  # the coordinator restarts: ask again
                    continue
                _fail(f"coordinator {self.coordinator}: {code.name}: {exc.details()}")
        if reply.is_error:
            _fail(f"coordinator refused: {reply.meta.get('error_type')}: {reply.meta.get('error')}")
        return reply.meta


def _party_line(parties: list[dict[str, Any]]) -> str:
    def one(p: dict[str, Any]) -> str:
        if p["state"] == "connected":
            return p["party"]
        return f"{p['party']} ({p['state']} {p['seconds']:.0f} s)"
    return ", ".join(one(p) for p in parties)


def follow(client: OperatorClient, run_id: str, timeout: float) -> dict[str, Any]:
    """Print a run's progress until it ends (or `timeout`); rides out coordinator restarts."""
    deadline, last = time.monotonic() + timeout, None
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.call("Status", {"run_id": run_id}, retry_unavailable_s=max(0.0, deadline - time.monotonic()))
        trouble = [p for p in status.get("parties") or [] if p["state"] != "connected"]
        line = (status["status"], status["round"], tuple(p["party"] for p in trouble), tuple(status.get("waiting_for")
                                                                                            or ()))
        if line != last:
            extra = f"; waiting for {', '.join(status['waiting_for'])}" if status.get("waiting_for") else ""
            extra += f"; parties: {_party_line(trouble)}" if trouble else ""
            console.print(f"  {status['status']}: round {status['round']}/{status['total_rounds']}{extra}")
            last = line
        if status["status"] in TERMINAL:
            return status
        time.sleep(0.5)
    _fail(f"run {run_id} still {status.get('status', 'unknown')} after {timeout:.0f} s", code=1)
    return status


def finish(run_id: str, status: dict[str, Any]) -> None:
    """The closing line of `attach` / `submit`; exit 1 unless the run completed."""
    if status["status"] == "failed":
        _fail(f"run {run_id} failed: {status['error']}", code=1)
    if status["status"] == "cancelled":
        _fail(f"run {run_id} was cancelled: {status['error']}", code=1)
    metrics = status.get("final_metrics") or {}
    shown = ", ".join(f"{k.upper()} {metrics[k]:.4f}" for k in ("auc", "ks", "brier")
                      if isinstance(metrics.get(k), float))
    console.print(f"Run [bold]{run_id}[/] completed{': ' + shown if shown else ''}.")


_COORDINATOR = typer.Option(..., "--coordinator", envvar="SAMPAN_COORDINATOR", help="host:port of the coordinator")
_CA = typer.Option(..., "--ca", envvar="SAMPAN_CA", help="Consortium CA certificate.")
_CERT = typer.Option(..., "--cert", envvar="SAMPAN_CERT", help="Operator certificate.")
_KEY = typer.Option(..., "--key", envvar="SAMPAN_KEY", help="Operator key.")
_SERVER = typer.Option(None, help="TLS name on the coordinator's certificate (default: the host of --coordinator).")


def runs_status(run_id: str = typer.Argument(..., help="The run's id."), coordinator: str = _COORDINATOR,
                ca: Path = _CA, cert: Path = _CERT, key: Path = _KEY, server_name: str | None = _SERVER) -> None:
    """A run's state at a coordinator, with each of its parties' liveness."""
    status = OperatorClient.open(coordinator, ca, cert, key, server_name).call("Status", {"run_id": run_id})
    console.print(f"Run [bold]{escape(run_id)}[/] ({escape(str(status['workflow']))}, {escape(str(status['name']))}): "
                  f"{status['status']}, round {status['round']}/{status['total_rounds']}"
                  + (" (running now)" if status.get("current") else "")
                  + (" (cancel requested)" if status.get("cancel_requested") else ""))
    if status.get("waiting_for"):
        console.print(f"  waiting for: {', '.join(status['waiting_for'])}")
    for p in status.get("parties") or []:
        console.print(f"  {p['party']}: {p['state']}" + (f" for {p['seconds']:.0f} s" if p["state"] != "connected"
                                                        else "") + (f", {p['outstanding']} request(s) outstanding"
                                                                    if p["outstanding"] else ""))
    if status.get("error"):
        console.print(f"  error: {escape(str(status['error']))}")
    if status.get("final_metrics"):
        console.print(f"  final metrics: {status['final_metrics']}")


def runs_cancel(run_id: str = typer.Argument(..., help="The run's id."), coordinator: str = _COORDINATOR,
                ca: Path = _CA, cert: Path = _CERT, key: Path = _KEY, server_name: str | None = _SERVER,
                wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the run has stopped."),
                timeout: float = typer.Option(600.0, help="Give up waiting after this many seconds.")) -> None:
    """Cancel a queued or running run: it stops at its next round or stage and ends "cancelled"."""
    client = OperatorClient.open(coordinator, ca, cert, key, server_name)
    reply = client.call("Cancel", {"run_id": run_id})
    outcome = "requested (it stops at its next check)" if reply["running"] else "done"
    console.print(f"Run [bold]{escape(run_id)}[/]: cancel {outcome}.")
    if wait:
        status = follow(client, run_id, timeout)
        console.print(f"Run [bold]{escape(run_id)}[/] is {status['status']}.")


def runs_attach(run_id: str = typer.Argument(..., help="The run's id."), coordinator: str = _COORDINATOR,
                ca: Path = _CA, cert: Path = _CERT, key: Path = _KEY, server_name: str | None = _SERVER,
                timeout: float = typer.Option(86400.0, help="Give up after this many seconds.")) -> None:
    """Follow a run at a coordinator until it ends (also across a coordinator restart)."""
    client = OperatorClient.open(coordinator, ca, cert, key, server_name)
    finish(run_id, follow(client, run_id, timeout))


def register_operator_commands(runs_app: typer.Typer) -> None:
    """Add status/cancel/attach to the `sampan runs` group."""
    runs_app.command("status")(runs_status)
    runs_app.command("cancel")(runs_cancel)
    runs_app.command("attach")(runs_attach)
