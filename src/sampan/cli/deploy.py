"""CLI for deployments: `sampan certs ...`, `sampan coordinator serve`, `sampan party serve`, `sampan submit`.

Sub-apps for the main CLI; `python -m sampan.cli.deploy` runs them on their own (the agents' entry
point in tests and containers).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sampan.cli.error_path import ErrorHandlingGroup, fail

__all__ = ["certs_app", "coordinator_app", "party_app", "submit", "deploy_app"]

console = Console()
certs_app = typer.Typer(help="Consortium certificates: CA, keys and CSRs made locally, signing, revocation.",
                        no_args_is_help=True, cls=ErrorHandlingGroup)
coordinator_app = typer.Typer(help="The coordinator agent (serves parties' streams and operators' runs).",
                              no_args_is_help=True, cls=ErrorHandlingGroup)
party_app = typer.Typer(help="A party agent (dials out to the coordinator; its data stays here).",
                        no_args_is_help=True, cls=ErrorHandlingGroup)


def _fail(exc: BaseException | str, code: int = 2) -> None:
    fail(exc, code)  # the CLI's one error path; deploy errors keep exit code 2 unless a caller says otherwise


def _user_errors() -> tuple[type[BaseException], ...]:
    from sampan.config import ConfigError
    from sampan.data import DataValidationError
    from sampan.deploy.certs import CertError
    from sampan.deploy.keyfiles import KeyFileError
    from sampan.runtime.store import StoreError

    return (ConfigError, CertError, KeyFileError, DataValidationError, StoreError, FileNotFoundError)


def _new_passphrase(encrypt: bool) -> bytes | None:
    """For a new key: $SAMPAN_KEY_PASSPHRASE, else typed twice; None unless --encrypt."""
    from sampan.deploy.keyfiles import passphrase_from_env

    if not encrypt:
        return None
    value = passphrase_from_env()
    if value:
        return value
    typed = typer.prompt("passphrase for the new private key", hide_input=True, confirmation_prompt=True)
    if not typed:
        _fail("an empty passphrase encrypts nothing")
    return str(typed).encode()


# --- certificates --------------------------------------------------------------------------------------
@certs_app.command("init")
def certs_init(
    directory: Path = typer.Option(Path("ca"), "--dir", help="Folder for ca.key (0600), ca.crt, crl.pem."),
    name: str = typer.Option("Sampan consortium CA", help="CA name on its certificate."),
    days: int = typer.Option(3650, min=1, help="CA validity."),
    force: bool = typer.Option(False, help="Replace an existing CA key."),
    encrypt: bool = typer.Option(False, "--encrypt", help="Encrypt the CA key with a passphrase "
                                 "($SAMPAN_KEY_PASSPHRASE, else prompted); asked for whenever the key is used."),
) -> None:
    """Create the consortium CA (once, at the consortium operator)."""
    from sampan.deploy.certs import init_ca, load_cert, spki_pin

    try:
        files = init_ca(directory, name=name, days=days, force=force, passphrase=_new_passphrase(encrypt))
    except _user_errors() as exc:
        _fail(exc)
    console.print(f"CA created: {files.cert} (key {files.key}, mode 0600; CRL {files.crl}: give it to every party "
                  "and the coordinator, as tls.crl). "
                  f"Key pin {spki_pin(load_cert(files.cert))}.", soft_wrap=True)


@certs_app.command("request")
def certs_request(
    name: str = typer.Argument(..., help="Member name (party name, 'coordinator', or an operator's name)."),
    role: str = typer.Option("party", help="party, coordinator or operator."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where NAME.key (0600) and NAME.csr are written."),
    dns: list[str] = typer.Option([], "--dns", help="Coordinator only: DNS name parties dial (repeatable)."),
    ip: list[str] = typer.Option([], "--ip", help="Coordinator only: IP address parties dial (repeatable)."),
    organisation: str | None = typer.Option(None, help="Organisation name on the certificate."),
    encrypt: bool = typer.Option(False, "--encrypt", help="Encrypt the key with a passphrase ($SAMPAN_KEY_PASSPHRASE, "
                                 "else prompted); agents then read it from $SAMPAN_KEY_PASSPHRASE or a prompt."),
) -> None:
    """Make this member's key and a certificate signing request, here. The key never leaves this machine."""
    from sampan.deploy.certs import create_request

    try:
        key, csr = create_request(name, role, directory, dns=dns, ips=ip, organisation=organisation,
                                  passphrase=_new_passphrase(encrypt))
    except _user_errors() + (ValueError,) as exc:
        _fail(exc)
    console.print(f"Key {key} (mode 0600, keep it here). Send {csr} to the consortium CA operator.")


@certs_app.command("sign")
def certs_sign(
    csr: Path = typer.Argument(..., help="A member's CSR."),
    ca_dir: Path = typer.Option(Path("ca"), "--ca-dir", help="The CA folder made by `certs init`."),
    days: int = typer.Option(365, min=1, help="Certificate validity."),
    out: Path | None = typer.Option(None, help="Certificate path (default: next to the CSR, .crt)."),
    rekey: bool = typer.Option(False, "--rekey", help="The member really changed its key: sign the new one and revoke "
                               "every other certificate of that name (else a second key for a name is refused)."),
    signing_only: bool = typer.Option(False, "--signing-only", help="A signing certificate (documentSigning, never "
                                      "TLS) for an organisation key held in an HSM (`certs hsm-keygen`)."),
) -> None:
    """Sign a member's CSR with the consortium CA; prints the key pin for coordinator.toml."""
    from sampan.deploy.certs import describe_cert, load_cert, sign_request

    try:
        path = sign_request(csr, ca_dir, out=out, days=days, rekey=rekey, signing_only=signing_only)
        info = describe_cert(load_cert(path))
    except _user_errors() as exc:
        _fail(exc)
    console.print(f"Signed {path}: {info['name']} ({info['role']}), valid until {info['not_after']}.")
    if signing_only:
        console.print("A signing-only certificate: set it as hsm.certificate in the member's party.toml.")
    else:
        console.print(f'Pin for coordinator.toml: pin = "{info["pin"]}"', soft_wrap=True)
    if rekey:
        console.print(f"Re-keyed {info['name']}: its other certificates are revoked. Distribute "
                      f"{ca_dir / 'crl.pem'} to every party and the coordinator (parties check peers' run keys "
                      f"against it) and {ca_dir / 'issued.json'} to the coordinator; "
                      f"if it pins {info['name']} explicitly, run `sampan certs repin` there.", soft_wrap=True)


@certs_app.command("crl")
def certs_crl(
    ca_dir: Path = typer.Option(Path("ca"), "--ca-dir"),
    days: float = typer.Option(30.0, min=0.01, help="Days until the CRL's nextUpdate (coordinators refuse to start "
                               "runs on a CRL past it)."),
) -> None:
    """Re-sign the CRL with a fresh nextUpdate (do it before the current one passes)."""
    from sampan.deploy.certs import refresh_crl

    try:
        crl = refresh_crl(ca_dir, days=days)
    except _user_errors() as exc:
        _fail(exc)
    console.print(f"CRL {crl} re-signed, valid for {days:g} days; distribute it to every party and the coordinator.")


@certs_app.command("repin")
def certs_repin(
    name: str = typer.Argument(..., help="The member whose key changed legitimately."),
    cert: Path = typer.Option(..., "--cert", help="The member's new certificate."),
    config: Path = typer.Option(..., "--config", help="coordinator.toml (its state_dir holds the pins file)."),
) -> None:
    """At the coordinator: accept a member's new key (after a deliberate re-key at the CA) by pinning it."""
    from sampan.deploy.certs import CertError, repin
    from sampan.deploy.config import load_coordinator_config

    try:
        cfg = load_coordinator_config(config)
        member = next((m for m in cfg.members if m.name == name), None)
        if member is None:
            raise CertError(f"{name!r} is not a member in {config}")
        if member.pin:
            raise CertError(f"{config} pins {name!r} itself (members.pin); replace that pin there")
        pin = repin(Path(cfg.coordinator.state_dir) / "pins.json", name, cert, cfg.tls.ca)
    except _user_errors() as exc:
        _fail(exc)
    console.print(f"{name} is now pinned to {pin}; the coordinator uses it for the next connection.", soft_wrap=True)


@certs_app.command("revoke")
def certs_revoke(
    cert: Path | None = typer.Argument(None, help="Certificate to revoke."),
    serial: str | None = typer.Option(None, help="Or its serial number (hex)."),
    ca_dir: Path = typer.Option(Path("ca"), "--ca-dir"),
) -> None:
    """Revoke a certificate: re-signs crl.pem and the issuance record; a coordinator given the new files cuts the
    member's live stream within crl_check_s and refuses it from then on."""
    from sampan.deploy.certs import revoke

    try:
        crl = revoke(ca_dir, cert_path=cert, serial=serial)
    except _user_errors() as exc:
        _fail(exc)
    console.print(f"Revoked; distribute {crl} to every party and the coordinator (parties refuse vertical and "
                  "SecAgg runs without a current one).", soft_wrap=True)


@certs_app.command("show")
def certs_show(cert: Path = typer.Argument(..., help="A certificate file.")) -> None:
    """Name, role, validity and key pin of a certificate."""
    from sampan.deploy.certs import describe_cert, load_cert

    try:
        info = describe_cert(load_cert(cert))
    except _user_errors() as exc:
        _fail(exc)
    table = Table(title=str(cert))
    table.add_column("field")
    table.add_column("value")
    for k, v in info.items():
        table.add_row(k, v)
    console.print(table)


# --- agents ------------------------------------------------------------------------------------------
def _setup_logging(log_file: str | None, capture_grpc: bool,
                   on_refusal: Callable[[str, str], None] | None = None) -> None:
    stream = sys.stderr
    if capture_grpc:
        from sampan.deploy.grpclog import capture_grpc_core_log

        stream = capture_grpc_core_log(on_refusal=on_refusal)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    if log_file:
        from sampan.files import private_file

        private_file(log_file)  # 0600 before the first line: logs name peers, members and refusals
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.ERROR)


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        logging.getLogger("sampan.deploy").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@coordinator_app.command("serve")
def coordinator_serve(config: Path = typer.Option(..., "--config", help="coordinator.toml")) -> None:
    """Serve parties and operators until stopped (SIGTERM/Ctrl-C); resumes unfinished runs on start."""
    from sampan.deploy.config import load_coordinator_config
    from sampan.deploy.coordinator import Coordinator

    try:
        cfg = load_coordinator_config(config)
    except _user_errors() as exc:
        _fail(exc)
    audit: list[Callable[..., object]] = []  # TLS-layer refusals go to the audit log once the coordinator exists

    def tls_refusal(code: str, reason: str) -> None:
        if audit:
            audit[0]("peer_refused", {"who": "", "peer": "unknown (refused in gRPC's TLS layer)", "code": code,
                                      "reason": reason, "layer": "tls"}, peer="tls-layer")

    _setup_logging(cfg.coordinator.log_file, capture_grpc=True, on_refusal=tls_refusal)
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        coordinator = Coordinator(cfg)
        audit.append(coordinator.security.record)
        coordinator.start()
    except _user_errors() + (OSError,) as exc:
        _fail(exc)
    coordinator.serve(stop)


@party_app.command("serve")
def party_serve(config: Path = typer.Option(..., "--config", help="party.toml")) -> None:
    """Dial out to the coordinator and answer its requests until stopped; reconnects with backoff."""
    from sampan.deploy.config import load_party_config
    from sampan.deploy.party_agent import PartyAgent
    from sampan.transport.grpc_client import FatalRejection

    try:
        cfg = load_party_config(config)
    except _user_errors() as exc:
        _fail(exc)
    _setup_logging(cfg.party.log_file, capture_grpc=False)
    stop = threading.Event()
    agent = PartyAgent(cfg)

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if agent.link is not None:
            agent.link.close()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.serve(stop)
    except FatalRejection as exc:
        _fail(exc, code=3)
    except _user_errors() as exc:
        _fail(exc)


# --- operators -----------------------------------------------------------------------------------------
def submit(
    config: Path | None = typer.Argument(None, metavar="RUN_TOML", help="Run description (no data binding)."),
    coordinator: str = typer.Option(..., "--coordinator", envvar="SAMPAN_COORDINATOR", help="host:port"),
    ca: Path = typer.Option(..., "--ca", envvar="SAMPAN_CA", help="Consortium CA certificate."),
    cert: Path = typer.Option(..., "--cert", envvar="SAMPAN_CERT", help="Operator certificate."),
    key: Path = typer.Option(..., "--key", envvar="SAMPAN_KEY", help="Operator key."),
    server_name: str | None = typer.Option(None, help="TLS name on the coordinator's certificate "
                                              "(default: the host of --coordinator)."),
    resume: str | None = typer.Option(None, "--resume", metavar="RUN_ID", help="Resume a failed/interrupted run."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the run until it ends."),
    timeout: float = typer.Option(3600.0, help="Give up waiting after this many seconds."),
) -> None:
    """Submit a run to a coordinator (as an operator, over mutual TLS) and follow it (`sampan runs attach`
    follows it again later, also after a coordinator restart)."""
    import tomllib

    from sampan.cli.operator import OperatorClient, finish, follow
    from sampan.deploy.config import parse_run_spec

    if (config is None) == (resume is None):
        _fail("give either a RUN_TOML or --resume RUN_ID")
    try:
        meta: dict[str, object] = {"resume": resume}
        if config is not None:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
            parse_run_spec(dict(data), source=str(config))  # fail here, not at the coordinator
            meta = {"config": data}
    except _user_errors() + (tomllib.TOMLDecodeError,) as exc:
        _fail(exc)
    client = OperatorClient.open(coordinator, ca, cert, key, server_name)
    reply = client.call("Submit", meta)
    run_id = str(reply["run_id"])
    console.print(f"Run [bold]{run_id}[/] {'resumed' if reply.get('resumed') else 'submitted'} to {coordinator}.")
    if wait:
        finish(run_id, follow(client, run_id, timeout))


deploy_app = typer.Typer(help="Sampan deployment: certificates, agents, run submission.", no_args_is_help=True,
                         add_completion=False, pretty_exceptions_enable=False, cls=ErrorHandlingGroup)
deploy_app.add_typer(certs_app, name="certs")
deploy_app.add_typer(coordinator_app, name="coordinator")
deploy_app.add_typer(party_app, name="party")
deploy_app.command("submit")(submit)

if __name__ == "__main__":  # pragma: no cover - agent entry point
    deploy_app()


def _mount_hsm_keygen() -> None:
    """`sampan certs hsm-keygen` lives in `sampan.cli.hsm_keys`."""
    from sampan.cli.hsm_keys import certs_hsm_keygen

    certs_app.command("hsm-keygen")(certs_hsm_keygen)


_mount_hsm_keygen()
