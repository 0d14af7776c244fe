"""`sampan audit-log verify|show` and `sampan models list|show|export`.

Mounted by `sampan.cli` as sub-apps (errors go through `sampan.cli.error_path`, also when run on
their own). The store comes from --store, else $SAMPAN_STORE, else the default
SQLite file; the audit signing key from --audit-key, else $SAMPAN_AUDIT_KEY, else next to the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sampan.cli.error_path import ErrorHandlingGroup, fail
from sampan.files import atomic_write_bytes, atomic_write_json
from sampan.runtime.store import DEFAULT_STORE_URL, Store, StoreError, load_public_key

console = Console()

audit_log_app = typer.Typer(help="The signed, hash-chained audit log: verify it, show a run's entries.",
                            no_args_is_help=True, cls=ErrorHandlingGroup)
models_app = typer.Typer(help="The model registry: list, show and export registered models.", no_args_is_help=True,
                         cls=ErrorHandlingGroup)

StoreOption = typer.Option(None, "--store", help=f"SQLAlchemy URL of the run store (default: $SAMPAN_STORE or "
                           f"{DEFAULT_STORE_URL}).")
AuditKeyOption = typer.Option(None, "--audit-key", help="The coordinator's audit key file (default: $SAMPAN_AUDIT_KEY, "
                              "else next to a SQLite store, else ~/.config/sampan/audit-keys/).")


def _open(url: str | None, audit_key: Path | None = None) -> Store:
    return Store.open(url or os.environ.get("SAMPAN_STORE") or DEFAULT_STORE_URL, audit_key=audit_key)


def _write_json(path: Path, value: Any) -> None:
    """Atomic JSON write (a half-written anchor or export must never be mistaken for a whole one)."""
    atomic_write_json(path, value, indent=2, sort_keys=True, default=str)


# --- audit log --------------------------------------------------------------------------------------
@audit_log_app.command("verify")
def audit_verify(
    run_id: str | None = typer.Argument(None, help="Verify one run's chain (default: every run in the store)."),
    store: str | None = StoreOption,
    audit_key: Path | None = AuditKeyOption,
    public_key: list[str] | None = typer.Option(
        None, "--public-key", help="Trust only this Ed25519 public key (64 hex characters or a PEM file); repeatable."),
    anchor: Path | None = typer.Option(None, "--anchor", help="Heads recorded earlier by --write-anchor: each must "
                                          "still be in its chain (catches rollbacks and deleted runs)."),
    write_anchor: Path | None = typer.Option(None, "--write-anchor", help="After a clean check, record the heads "
                                                "here; keep the file outside the database's reach."),
) -> None:
    """Recompute every hash, position and Ed25519 signature; name the first bad entry (exit code 1)."""
    s = _open(store, audit_key)
    try:
        keys = [load_public_key(k) for k in public_key] if public_key else None
        anchored = None
        if anchor is not None:
            try:
                anchored = json.loads(anchor.read_text())["heads"]
            except (OSError, ValueError, KeyError) as exc:
                fail(StoreError(f"cannot read anchor {str(anchor)!r}: {exc}"))
        report = s.verify_audit(run_id, public_keys=keys, anchor=anchored)
    except StoreError as exc:
        fail(exc)
        return
    finally:
        s.close()
    trust = "pinned key" if report.pinned else "keys recorded in the store (not pinned: pass --public-key)"
    console.print(f"{report.runs} run(s), {report.entries} entries ({report.signed} signed, {report.legacy} unsigned "
                  f"legacy); signatures checked against {trust}: {', '.join(report.key_ids) or 'none'}",
                  highlight=False)
    if report.ok:
        console.print("[green]audit log intact[/]: every chain, position, signature and head verifies")
        if write_anchor is not None:
            _write_json(write_anchor, {"heads": {r: list(h) for r, h in report.heads.items()},
                                       "key_ids": report.key_ids})
            console.print(f"anchor written to {escape(str(write_anchor))}", highlight=False)
        return
    first = report.first_bad
    console.print(f"[bold red]AUDIT LOG BROKEN[/] — first bad entry: {escape(str(first))}", highlight=False,
                  soft_wrap=True)
    for problem in report.problems[1:]:
        console.print(f"  also: {escape(str(problem))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@audit_log_app.command("show")
def audit_show(run_id: str, store: str | None = StoreOption,
               limit: int = typer.Option(200, help="Entries shown (the newest are cut).")) -> None:
    """A run's audit entries: position, time, kind, signer and a short detail."""
    s = _open(store)
    try:
        rows = s.events(run_id)
    finally:
        s.close()
    if not rows:
        fail(StoreError(f"no audit entries for run {run_id!r}"))
    table = Table(title=f"Audit log of run {run_id}")
    for col in ("#", "at (UTC)", "kind", "signed by", "detail"):
        table.add_column(col)
    for i, row in enumerate(rows[:limit], start=1):
        detail = json.dumps(row.detail, sort_keys=True, default=str)
        table.add_row(str(row.seq or i), str(row.at)[:19], row.kind, row.key_id or "unsigned",
                      escape(detail if len(detail) <= 90 else detail[:87] + "..."))
    console.print(table)


def _register_export() -> None:
    """`sampan audit-log export` lives in `sampan.cli.store_admin` (with backup/restore); mounted here."""
    from sampan.cli.store_admin import audit_export

    audit_log_app.command("export")(audit_export)


_register_export()


# --- model registry ---------------------------------------------------------------------------------
@models_app.command("list")
def models_list(name: str | None = typer.Option(None, help="Only versions of this model."),
                store: str | None = StoreOption,
                limit: int = typer.Option(200, help="Newest entries shown.")) -> None:
    """Registered models, newest first, with the run and config each came from."""
    s = _open(store)
    try:
        models = s.list_models(name, limit=limit)
    finally:
        s.close()
    if not models:
        console.print("no registered models" + (f" named {escape(name)!r}" if name else ""))
        return
    table = Table(title="Model registry")
    for col in ("name", "version", "run", "created (UTC)", "config sha256", "parent", "receipt"):
        table.add_column(col, no_wrap=col in ("name", "run"))
    for m in models:
        parent = m.lineage.get("parent")
        table.add_row(escape(m.name), str(m.version), m.run_id, str(m.created_at)[:16],
                      (m.lineage.get("config_sha256") or "–")[:12],
                      f"{parent['name']} v{parent['version']}" if parent else "–", "yes" if m.has_receipt else "–")
    console.print(table)


def _arrays_manifest(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: {"dtype": str(v.dtype), "shape": list(v.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()}
            for k, v in sorted(arrays.items())}


@models_app.command("show")
def models_show(name: str, version: int | None = typer.Option(None, help="Default: the latest."),
                store: str | None = StoreOption) -> None:
    """One model: metadata, lineage, arrays and the protection it was trained under."""
    s = _open(store)
    try:
        model = s.get_model(name, version)
    except StoreError as exc:
        fail(exc)
        return
    finally:
        s.close()
    console.print(f"[bold]{escape(model.name)}[/] version {model.version} — run {model.run_id}, "
                  f"registered {str(model.created_at)[:19]} UTC", highlight=False)
    console.print_json(json.dumps({"metadata": model.meta, "lineage": model.lineage,
                                   "arrays": _arrays_manifest(model.arrays)}, default=str))
    if model.receipt:
        r = model.receipt
        console.print(f"receipt: differential privacy {'on' if r.get('differential_privacy') else 'off'}, "
                      f"secure aggregation {'on' if r.get('secure_aggregation') else 'off'}", highlight=False)
    else:
        console.print("receipt: not attached (export regenerates it from the store)")


@models_app.command("export")
def models_export(name: str, out: Path = typer.Option(Path("sampan-models"), help="Folder to write into."),
                  version: int | None = typer.Option(None, help="Default: the latest."),
                  onnx: bool = typer.Option(False, "--onnx", help="Also write NAME-vN.onnx (horizontal LR, MLP, GBDT; "
                                            "needs the 'onnx' extra)."),
                  store: str | None = StoreOption) -> None:
    """Write NAME-vN.npz (arrays), NAME-vN.json (metadata + lineage) and NAME-vN.receipt.json. Never pickle.

    A horizontal LR, MLP or GBDT also gets NAME-vN.model.json, the documented `sampan-model` format
    (docs/model_format.md) that scores outside Sampan, and with --onnx an ONNX graph of the same model."""
    from sampan.runtime.receipt import build_receipt
    from sampan.runtime.scorers import scoring_document

    s = _open(store)
    try:
        model = s.get_model(name, version)
        document = scoring_document(s, model)
        receipt = model.receipt
        if receipt is None:
            try:
                receipt = build_receipt(s, model.run_id)
            except StoreError:
                receipt = None
    except StoreError as exc:
        fail(exc)
        return
    finally:
        s.close()
    stem = f"{_safe(model.name)}-v{model.version}"
    out.mkdir(parents=True, exist_ok=True)
    npz = out / f"{stem}.npz"
    buffer = io.BytesIO()
    # Any: numpy's stub types **kwds as if they could fill savez's own `allow_pickle: bool`
    arrays: dict[str, Any] = {k: np.ascontiguousarray(v) for k, v in model.arrays.items()}
    np.savez(buffer, **arrays)  # numeric arrays: no pickle
    atomic_write_bytes(npz, buffer.getvalue())
    npz_sha = hashlib.sha256(npz.read_bytes()).hexdigest()
    _write_json(out / f"{stem}.json", {
        "name": model.name, "version": model.version, "run_id": model.run_id,
        "created_at": str(model.created_at), "metadata": model.meta, "lineage": model.lineage,
        "arrays": _arrays_manifest(model.arrays), "npz": {"file": npz.name, "sha256": npz_sha},
        "receipt": f"{stem}.receipt.json" if receipt is not None else None,
        "format": "arrays in .npz (load with numpy.load(..., allow_pickle=False)); metadata JSON"})
    if receipt is not None:
        _write_json(out / f"{stem}.receipt.json", receipt)
    if document is not None:
        _write_json(out / f"{stem}.model.json", document)
        if onnx:
            from sampan.models.onnx_export import to_onnx

            atomic_write_bytes(out / f"{stem}.onnx", to_onnx(document))
    else:
        console.print("no NAME-vN.model.json: not a horizontal scoring model (a vertical model's parts stay with "
                      "their parties; each exports its own part's arrays)", highlight=False)
    console.print(f"exported {escape(model.name)} v{model.version} to {escape(str(out))}/{stem}.{{npz,json"
                  f"{',receipt.json' if receipt is not None else ''}"
                  f"{',model.json' if document is not None else ''}{',onnx' if document and onnx else ''}}}",
                  highlight=False)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


# `sampan models pack NAME --out DIR`: the model-validation pack (HTML and PDF), from the store alone
from sampan.cli.validate import register_pack_command  # noqa: E402 - after models_app exists

register_pack_command(models_app)
