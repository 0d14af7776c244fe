"""`sampan store backup|restore|link-oidc` and `sampan audit-log export`: operators' copies of a store and its log.

Backups hold every table (the control plane's too); a restore goes into an empty database only and
re-verifies the signed audit log before it commits. The audit export writes JSON lines (verifiable offline
with `sampan audit-log export --verify FILE`) or RFC 5424 syslog, to a file (atomically) or to a collector
over UDP or TCP.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from sampan.cli.error_path import ErrorHandlingGroup, fail
from sampan.errors import StoreError

console = Console()

store_app = typer.Typer(help="Back up a store (every table) to one archive, and restore it into an empty database.",
                        no_args_is_help=True, cls=ErrorHandlingGroup)


def _url(store: str | None) -> str:
    from sampan.runtime.store import DEFAULT_STORE_URL

    return store or os.environ.get("SAMPAN_STORE") or DEFAULT_STORE_URL


def _keys(public_key: list[str] | None) -> list[bytes] | None:
    from sampan.runtime.store import load_public_key

    return [load_public_key(k) for k in public_key] if public_key else None


def _local_key(url: str) -> list[bytes] | None:
    """The store's own audit key when its file exists (what `Store.trusted_keys` pins by default)."""
    from sampan.runtime.audit_chain import default_audit_key_path, load_public_key

    path = default_audit_key_path(url)
    return [load_public_key(path)] if path is not None and path.exists() else None


def _control_plane_metadata() -> list[Any]:
    """The console's table definitions when the web extra is installed (restored with their own types)."""
    try:
        from sampan.web.db import metadata
    except ImportError:
        return []
    return [metadata]


_StoreOpt = typer.Option(None, "--store", help="SQLAlchemy URL of the store (default: $SAMPAN_STORE, else the "
                         "default SQLite file).")
_KeyOpt = typer.Option(None, "--public-key", help="Trust only this audit public key (64 hex characters or a PEM "
                       "file) when verifying the audit log; repeatable. Default: the store's own audit key file "
                       "when it exists, else the keys recorded in the data (no real check).")


@store_app.command("backup")
def store_backup(store: str | None = _StoreOpt,
                 to: Path = typer.Option(..., "--to", help="Archive to write (0600; replaced atomically).")) -> None:
    """Write every table of the store into one archive (manifest with row counts and SHA-256 per table)."""
    from sampan.runtime.backup import backup

    try:
        summary = backup(_url(store), to)
    except StoreError as exc:
        fail(exc)
    rows = sum(summary.tables.values())
    console.print(f"backed up {len(summary.tables)} tables, {rows} rows to {escape(str(to))}", highlight=False)


@store_app.command("restore")
def store_restore(source: Path = typer.Option(..., "--from", help="Archive written by `sampan store backup`."),
                  store: str | None = _StoreOpt, public_key: list[str] | None = _KeyOpt) -> None:
    """Restore an archive into an EMPTY store, in one transaction; the audit log is re-verified before commit."""
    from sampan.runtime.backup import restore

    try:
        summary = restore(source, _url(store), public_keys=_keys(public_key),
                          extra_metadata=_control_plane_metadata())
    except StoreError as exc:
        fail(exc)
    console.print(f"restored {len(summary.tables)} tables, {sum(summary.tables.values())} rows; "
                  f"{summary.audit_entries} audit entries verified ({summary.unsigned_entries} unsigned legacy), "
                  + ("against the pinned audit key" if summary.pinned else
                     "[yellow]against the keys recorded in the archive only: pass --public-key to pin[/]"),
                  highlight=False)


@store_app.command("link-oidc")
def store_link_oidc(
    user: str = typer.Option(..., "--user", help="The console account's user name."),
    issuer: str | None = typer.Option(None, "--issuer", help="The provider's issuer, exactly as in "
                                      "[control_plane.oidc] issuer (needed unless --unlink)."),
    subject: str | None = typer.Option(None, "--subject", help="The provider's `sub` for this person."),
    unlink: bool = typer.Option(False, "--unlink", help="Remove the account's OpenID Connect link instead."),
    store: str | None = _StoreOpt,
) -> None:
    """Link a console account to its OpenID Connect identity (or --unlink); audited as cli:<your user name>."""
    import getpass

    from sampan.runtime.store import Store

    if unlink == bool(subject) or (subject and not issuer):
        fail("give --issuer and --subject to link, or --unlink alone")
    try:
        from sampan.web.errors import ControlPlaneError
        from sampan.web.oidc_link import link_from_cli
    except ImportError as exc:
        fail(f"the console extra is not installed ({exc.name})")
    s = Store.open(_url(store))
    try:
        user_id = link_from_cli(s, user, issuer, None if unlink else subject, f"cli:{getpass.getuser()}")
    except (ControlPlaneError, StoreError) as exc:
        fail(str(exc))
    finally:
        s.close()
    console.print(f"account {escape(user)} (id {user_id}): " + ("OpenID Connect link removed" if unlink else
                  f"linked to {escape(str(subject))} at {escape(str(issuer))}"), highlight=False)


def audit_export(
    store: str | None = _StoreOpt,
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (one signed entry per line) or syslog (RFC 5424)."),
    to: str | None = typer.Option(None, "--to", help="A file (written atomically), udp://host:port or "
                                  "tcp://host:port (octet counting); default: standard output."),
    verify: Path | None = typer.Option(None, "--verify", help="Instead of exporting: check a JSON-lines export "
                                       "offline (chains, signatures, heads) and name the first bad entry."),
    public_key: list[str] | None = _KeyOpt,
) -> None:
    """Export the signed audit log for a SIEM as JSON lines or syslog; or verify a JSON-lines export offline."""
    from sampan.files import atomic_write_bytes
    from sampan.runtime.audit_export import export_lines, send, verify_jsonl, verify_manifest_time
    from sampan.runtime.store import Store

    if verify is not None:
        try:
            lines = verify.read_text(encoding="utf-8").splitlines()
            keys = _keys(public_key) or _local_key(_url(store))
            problems = verify_jsonl(lines, keys)
        except (OSError, UnicodeDecodeError) as exc:
            fail(StoreError(f"cannot read audit export {str(verify)!r}: {exc}"))
        except StoreError as exc:
            fail(exc)
        if problems:
            console.print(f"[bold red]AUDIT EXPORT BROKEN[/] — first bad entry: {escape(str(problems[0]))}",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        unsigned = sum(1 for line in lines if '"type":"event"' in line and '"signature":null' in line)
        console.print(f"audit export intact: {len(lines)} lines verify, made {verify_manifest_time(lines)} "
                      f"({unsigned} unsigned legacy entries)"
                      + (" against the pinned audit key" if keys else
                         " [yellow](keys from the export itself: pass --public-key to pin)[/]"),
                      highlight=False)
        return
    if fmt not in ("jsonl", "syslog"):
        fail(f"--format {fmt!r}: use jsonl or syslog")
    s = Store.open(_url(store))
    try:
        lines_out = export_lines(s, fmt)  # type: ignore[arg-type]
        if to and to.split("://", 1)[0] in ("udp", "tcp"):
            sent = send(lines_out, to)
            console.print(f"sent {sent} {fmt} messages to {escape(to)}", highlight=False)
        elif to:
            text = "".join(line + "\n" for line in lines_out)
            atomic_write_bytes(to, text.encode("utf-8"), 0o600)  # the log names people and decisions
            console.print(f"wrote {text.count(chr(10))} {fmt} lines to {escape(to)}", highlight=False)
        else:
            for line in lines_out:
                typer.echo(line)
    except StoreError as exc:
        fail(exc)
    finally:
        s.close()
