"""CLI for anti-counterfeit QR codes (issue 20): ``sampan qr keygen | issue | verify | check-url | report``.

``keygen`` makes an issuer's Ed25519 key locally (0600, never overwritten), its public trust file and, if asked, a
secret copy-detection (CDP) key. ``issue`` signs one item code, draws it (with the keyed CDP in its centre when a
CDP key is given), records the serial in the issuer registry (a serial is issued once: a re-issue is refused) and
writes a PNG. ``verify`` decodes a capture and checks the signature, the expiry, the CDP (original / copy / retake)
and the registry flags; it prints one JSON verdict, exit 0 genuine, 10 suspicious, 2 bad input. ``check-url``
reports the quishing checks of a URL or, with ``--merchant``, of an EMVCo/FPS payment payload (exit 10 on warn or
block). ``report`` renders a verdict JSON as HTML.

Inputs are read and checked before anything is written; outputs appear complete or not at all; bad input ends in one
``error:`` line naming the file or field. The CDP threshold defaults come from the simulated channel
(bench/qr_anticounterfeit.py), not from real printers and phones: calibrate them for the printer and phones in use.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from sampan.cli.error_path import ErrorHandlingGroup

__all__ = ["SUSPICIOUS_EXIT", "qr_app"]

SUSPICIOUS_EXIT = 10
CDP_KEY_FORMAT = "sampan-qr-cdp-key/1"
DEFAULT_CDP_THRESHOLD = 0.51   # keyed correlation at P_fa 1% over the three simulated phones (bench: 0.508)
DEFAULT_MIN_SHARPNESS = 0.35   # QR edge sharpness below which the CDP cannot be judged: ask for a retake

qr_app = typer.Typer(help="Anti-counterfeit QR codes: issuer keys, signed item codes with a copy-detection "
                          "pattern, verification, quishing checks, reports.",
                     no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                     cls=ErrorHandlingGroup)


def _config_error(message: str) -> Exception:
    from sampan.errors import ConfigError

    return ConfigError(message)


def _new_path(path: Path, option: str) -> None:
    if path.exists():
        raise _config_error(f"{option} {str(path)!r} exists already; refusing to overwrite it")
    if not path.parent.is_dir():
        raise _config_error(f"{option} {str(path)!r}: folder {str(path.parent)!r} does not exist")


def _out_file(path: Path, option: str, suffixes: tuple[str, ...]) -> None:
    if path.suffix.lower() not in suffixes:
        raise _config_error(f"{option} {str(path)!r}: use a {' or '.join(suffixes)} file name")
    if path.is_dir():
        raise _config_error(f"{option} {str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        raise _config_error(f"{option} {str(path)!r}: folder {str(path.parent)!r} does not exist")


def load_cdp_key(path: Path) -> bytes:
    """A CDP key file written by `sampan qr keygen --cdp-out` (0600 checked)."""
    from sampan.errors import DataError
    from sampan.files import check_private_mode

    try:
        check_private_mode(path, "CDP key")
        doc = json.loads(path.read_bytes()[:4096])
    except FileNotFoundError:
        raise DataError(f"CDP key {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"CDP key {str(path)!r}: cannot read it ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CDP_KEY_FORMAT:
        raise DataError(f"CDP key {str(path)!r}: field 'format' must be {CDP_KEY_FORMAT!r}")
    try:
        key = bytes.fromhex(str(doc.get("key", "")))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise DataError(f"CDP key {str(path)!r}: field 'key' must be 64 hex characters")
    return key


def load_trust(paths: list[Path]) -> dict[str, str]:
    """Issuer name -> public key hex, merged from JSON trust files ({issuer: hex}); conflicts refused."""
    from sampan.errors import DataError

    trusted: dict[str, str] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_bytes()[:1 << 20])
        except FileNotFoundError:
            raise DataError(f"--issuers {str(path)!r} does not exist") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"--issuers {str(path)!r}: not a JSON trust file ({exc})") from None
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise DataError(f"--issuers {str(path)!r}: must be a JSON object issuer -> public key hex")
        for issuer, value in doc.items():
            if trusted.get(issuer, value) != value:
                raise DataError(f"--issuers {str(path)!r}: issuer {issuer!r} has two different public keys")
            trusted[issuer] = value
    return trusted


@qr_app.command("keygen")
def keygen(issuer: str = typer.Option(..., "--issuer", help="The issuer's public name (carried in every code)."),
           out: Path = typer.Option(..., "--out", "-o", help="The private key file (0600; never overwritten)."),
           public_out: Path | None = typer.Option(None, "--public-out", help="Trust file {issuer: public key} "
                                                  "for verifiers (default: OUT with .public.json)."),
           cdp_out: Path | None = typer.Option(None, "--cdp-out", help="Also make a secret CDP key here "
                                               "(0600; held by the issuer and the verification sites only).")) -> None:
    """Make an issuer key (and optionally a CDP key) on this machine."""
    import secrets

    from sampan.files import create_exclusive_bytes
    from sampan.qr.keys import generate_issuer_key, public_key_hex, save_issuer_key
    from sampan.qr.verify_flow import cdp_key_id

    public_out = public_out or out.with_name(out.name + ".public.json")
    for path, option in ((out, "--out"), (public_out, "--public-out"), *(((cdp_out, "--cdp-out"),) if cdp_out
                                                                          else ())):
        _new_path(path, option)
    key = generate_issuer_key(issuer)
    trust = (json.dumps({key.issuer: public_key_hex(key)}, indent=1) + "\n").encode()
    cdp = secrets.token_bytes(32) if cdp_out else None
    save_issuer_key(key, out)
    if not create_exclusive_bytes(public_out, trust, mode=0o644):
        raise _config_error(f"--public-out {str(public_out)!r} appeared meanwhile; the key is in {str(out)!r}")
    if cdp_out and cdp is not None:
        doc = {"format": CDP_KEY_FORMAT, "key": cdp.hex(), "key_id": cdp_key_id(cdp)}
        if not create_exclusive_bytes(cdp_out, (json.dumps(doc) + "\n").encode()):
            raise _config_error(f"--cdp-out {str(cdp_out)!r} appeared meanwhile; no CDP key written")
    typer.echo(f"issuer key {key.issuer} written to {out} (0600); public trust file {public_out}"
               + (f"; CDP key {cdp_key_id(cdp)} in {cdp_out} (0600, secret)" if cdp_out and cdp else ""))


def _expiry(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _config_error(f"--expiry {value!r} must be a date YYYY-MM-DD") from None


def _registry_url(path: Path) -> str:
    if path.is_dir():
        raise _config_error(f"--registry {str(path)!r} is a folder; give a database file")
    if not path.parent.is_dir():
        raise _config_error(f"--registry {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return f"sqlite:///{path}"


@qr_app.command("issue")
def issue(key: Path = typer.Option(..., "--key", help="The issuer key file."),
          serial: str = typer.Option(..., "--serial", help="The item's serial (A-Z a-z 0-9 . _ -)."),
          expiry: str = typer.Option(..., "--expiry", help="Valid through this UTC day (YYYY-MM-DD)."),
          out: Path = typer.Option(..., "--out", "-o", help="The code image to write (.png)."),
          cdp_key: Path | None = typer.Option(None, "--cdp-key", help="Put the keyed CDP in the code's centre."),
          registry: Path | None = typer.Option(None, "--registry", help="The issuer registry (SQLite file)."),
          single_use: bool = typer.Option(False, "--single-use", help="A ticket: scans after it is consumed "
                                          "are flagged.")) -> None:
    """Sign one item code, record its serial once, and write it as a PNG."""
    import numpy as np

    from sampan.files import atomic_write_bytes
    from sampan.qr.codec import decode_qr, render_qr
    from sampan.qr.keys import load_issuer_key
    from sampan.qr.payload import ItemCode, MalformedCodeError, sign
    from sampan.qr.verify_flow import cdp_key_id

    _out_file(out, "--out", (".png",))
    url = _registry_url(registry) if registry else None
    when = _expiry(expiry)
    issuer_key = load_issuer_key(key)
    cdp = load_cdp_key(cdp_key) if cdp_key else None
    try:
        code = ItemCode(serial, issuer_key.issuer, when, cdp_key_id(cdp) if cdp else None)
        text = sign(code, issuer_key)
    except MalformedCodeError as exc:
        raise _config_error(f"--serial/--expiry: {exc}") from None
    if cdp is not None:
        from sampan.qr.cdp import layout_for, render_original

        image = np.where(render_original(text, cdp, serial, layout_for(text)), 0, 255).astype(np.uint8)
    else:
        image = render_qr(text, scale=8, border=4, error="q")
    if decode_qr(image) != [text]:
        from sampan.errors import DataError

        raise DataError(f"--out {str(out)!r}: the drawn code does not read back; nothing written")
    if url is not None:
        from sampan.qr.registry import IssuerRegistry

        reg = IssuerRegistry.open(url, issuer_key.issuer)
        try:
            reg.issue_code(code, issuer_key, single_use=single_use)   # refuses a serial issued before
        finally:
            reg.close()
    atomic_write_bytes(out, _png(image))
    typer.echo(json.dumps({"serial": serial, "issuer": issuer_key.issuer, "expiry": when.isoformat(),
                           "cdp_key_id": code.cdp_seed_id, "image": str(out), "registered": url is not None,
                           "text": text}, indent=1))


def _png(image: Any) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _read_gray(path: Path) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from sampan.errors import DataError

    try:
        with Image.open(path) as im:
            im.load()
            return np.array(im.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"image {str(path)!r} is a folder, not an image file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"image {str(path)!r}: cannot read it as an image ({exc})") from None


@qr_app.command("verify")
def verify_cmd(
    image: Path = typer.Argument(..., help="A capture of the code (PNG, JPEG, ...)."),
    issuers: list[Path] = typer.Option(..., "--issuers", help="Trust file(s) {issuer: public key hex}."),
    cdp_key: Path | None = typer.Option(None, "--cdp-key", help="Check the copy-detection pattern with this key."),
    registry: Path | None = typer.Option(None, "--registry", help="The issuer registry (record the scan, flags)."),
    region: str | None = typer.Option(None, "--region", help="Coarse region of the scan: a 1-3 character "
                                      "geohash (with --registry)."),
    consume: bool = typer.Option(False, "--consume", help="This scan consumes a single-use item (a ticket)."),
    cdp_threshold: float = typer.Option(DEFAULT_CDP_THRESHOLD, "--cdp-threshold",
                                        help="Keyed correlation an original reaches (simulated-channel default)."),
    min_sharpness: float = typer.Option(DEFAULT_MIN_SHARPNESS, "--min-sharpness",
                                        help="Below this capture sharpness the CDP verdict is 'retake'."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the verdict JSON here."),
) -> None:
    """Verify a capture: one JSON verdict; exit 0 genuine, 10 suspicious, 2 bad input."""
    from sampan.files import atomic_write_bytes
    from sampan.qr.keys import load_public_keys
    from sampan.qr.verify_flow import run_checks

    if (registry is None) != (region is None):
        raise _config_error("give --registry and --region together (the scan is recorded with its region)")
    if out is not None:
        _out_file(out, "--out", (".json",))
    keys = load_public_keys(load_trust(issuers))
    cdp = load_cdp_key(cdp_key) if cdp_key else None
    url = _registry_url(registry) if registry else None
    record = run_checks(_read_gray(image), str(image), keys, cdp=cdp, registry_url=url, region=region,
                        consume=consume, cdp_threshold=cdp_threshold, min_sharpness=min_sharpness)
    text = json.dumps(record, indent=1, ensure_ascii=False)
    if out is not None:
        atomic_write_bytes(out, (text + "\n").encode())
    typer.echo(text)
    if record["verdict"] != "genuine":
        raise typer.Exit(SUSPICIOUS_EXIT)


@qr_app.command("check-url")
def check_url_cmd(
    text: str | None = typer.Argument(None, help="The text a QR code carries (a URL or a payment payload)."),
    file: Path | None = typer.Option(None, "--file", help="Read the text from this file instead."),
    merchant: str | None = typer.Option(None, "--merchant", help="The payee you expect (payment payloads)."),
    merchant_proxy: str | None = typer.Option(None, "--merchant-proxy", help="Its FPS ID, mobile or e-mail."),
    strict: bool = typer.Option(False, "--strict", help="Warn on every domain not on the allow-list."),
) -> None:
    """Quishing report of a URL or an EMVCo/FPS payment payload: JSON; exit 10 on warn or block."""
    from dataclasses import asdict

    from sampan.errors import DataError
    from sampan.qr.emv import ExpectedMerchant, check_payment
    from sampan.qr.quishing import check_url, hong_kong_allow_list

    if (text is None) == (file is None):
        raise _config_error("give the text as exactly one of TEXT or --file F")
    if file is not None:
        try:
            text = file.read_bytes()[:8192].decode("utf-8").strip()
        except FileNotFoundError:
            raise DataError(f"--file {str(file)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"--file {str(file)!r}: cannot read it as UTF-8 text ({exc})") from None
    assert text is not None
    if not text:
        raise DataError("the text to check is empty")
    if merchant_proxy is not None and merchant is None:
        raise _config_error("--merchant-proxy needs --merchant")
    record: dict[str, Any]
    if merchant is not None:
        report = check_payment(text, ExpectedMerchant(merchant, proxy=merchant_proxy))
        record = {"kind": "payment", "payee": report.payee, "verdict": report.verdict,
                  "payment": asdict(report.payment) if report.payment else None,
                  "findings": [asdict(f) for f in report.findings]}
    elif text.startswith("000201"):
        raise _config_error("this looks like an EMVCo payment payload: give --merchant NAME (the payee you expect)")
    else:
        url = check_url(text, allow=hong_kong_allow_list(strict=strict))
        record = {"kind": "url", "full_destination": url.full_destination,
                  "unicode_destination": url.unicode_destination, "registrable": url.registrable,
                  "verdict": url.verdict, "findings": [asdict(f) for f in url.findings]}
    typer.echo(json.dumps(record, indent=1, ensure_ascii=False, default=str))
    if record["verdict"] != "ok":
        raise typer.Exit(SUSPICIOUS_EXIT)


@qr_app.command("report")
def report_cmd(verdict: Path = typer.Argument(..., help="A verdict JSON from `sampan qr verify --out`."),
               out: Path = typer.Option(..., "--out", "-o", help="The HTML report to write.")) -> None:
    """Render a verdict JSON as a self-contained HTML page."""
    from sampan.files import atomic_write_bytes
    from sampan.qr.report import load_verdict, render_html

    _out_file(out, "--out", (".html", ".htm"))
    page = render_html(load_verdict(verdict))
    atomic_write_bytes(out, page.encode("utf-8"))
    typer.echo(f"report written to {out}")
