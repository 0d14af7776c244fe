"""CLI for invisible keyed watermarks (issue 19): ``sampan watermark keygen | embed | detect | attack-report``.

``keygen`` makes a secret key locally (``secrets``) and writes it 0600, refusing to overwrite a file. ``embed``
marks an image with a payload (``--bits`` as hex, or ``--message`` as UTF-8 text of at most n_bits/8 bytes,
zero-padded) and writes the marked image (format from the extension; PNG keeps every bit, JPEG is written at
quality 95). ``detect`` prints one JSON object (marked at ``--fpr``, p-value, decoded bits, the rotation/scale the
detector inverted) and its exit code says marked (0) or not (10). ``attack-report`` runs the attack suite
(sampan.watermark.attacks) on one marked image and writes ``report.json`` and ``report.html`` into a new folder.

Every input is read and checked before anything is written; outputs appear complete or not at all; bad input ends in
one ``error:`` line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from sampan.cli.error_path import ErrorHandlingGroup

__all__ = ["NOT_MARKED_EXIT", "watermark_app"]

NOT_MARKED_EXIT = 10
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                  ".webp": "WEBP"}
_REPORT_FILES = frozenset({"report.json", "report.html"})

watermark_app = typer.Typer(help="Invisible keyed watermarks for AI-generated images: make a key, embed, detect "
                                 "(a p-value), run the attack suite.",
                            no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                            cls=ErrorHandlingGroup)
console = Console(highlight=False)


def _read_image(path: Path) -> Any:
    """The image as uint8 HxWx3 RGB (HxW for a gray file); a one-line DataError naming the file otherwise."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from sampan.errors import DataError

    try:
        with Image.open(path) as im:
            im.load()
            mode = "L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            return np.array(im.convert(mode), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"image {str(path)!r} is a folder, not an image file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"image {str(path)!r}: cannot read it as an image ({exc})") from None


def _image_bytes(image: Any, path: Path) -> bytes:
    import io

    from PIL import Image

    fmt = _WRITE_FORMATS[path.suffix.lower()]
    buf = io.BytesIO()
    options: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(image).save(buf, format=fmt, **options)
    return buf.getvalue()


def _check_out_image(out: Path) -> None:
    from sampan.errors import ConfigError

    if out.suffix.lower() not in _WRITE_FORMATS:
        raise ConfigError(f"--out {str(out)!r}: unknown image extension {out.suffix!r}; use one of "
                          f"{', '.join(sorted(_WRITE_FORMATS))} (.png keeps every bit of the mark)")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give an image file name")


def payload_bits(bits_hex: str | None, message: str | None, n_bits: int) -> list[int]:
    """The payload as 0/1 ints (most significant bit first) from hex digits or UTF-8 text."""
    from sampan.errors import ConfigError

    if (bits_hex is None) == (message is None):
        raise ConfigError("give the payload as exactly one of --bits HEX or --message TEXT")
    if n_bits % 8:
        raise ConfigError(f"--n-bits must be a multiple of 8 (got {n_bits})")
    if bits_hex is not None:
        digits = bits_hex.lower().removeprefix("0x")
        if len(digits) != n_bits // 4 or any(c not in "0123456789abcdef" for c in digits):
            raise ConfigError(f"--bits must be exactly {n_bits // 4} hex digits for {n_bits} bits (got {bits_hex!r})")
        data = bytes.fromhex(digits)
    else:
        assert message is not None
        data = message.encode("utf-8")
        if not data or len(data) > n_bits // 8:
            raise ConfigError(f"--message must be 1 to {n_bits // 8} bytes of UTF-8 for {n_bits} bits "
                              f"(got {len(data)} bytes); use --bits for a hex payload")
        data = data.ljust(n_bits // 8, b"\0")
    return [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]


def bits_to_hex(bits: list[int]) -> str:
    """0/1 ints (MSB first, a multiple of 8) as hex digits."""
    return bytes(int("".join(str(b) for b in bits[i:i + 8]), 2) for i in range(0, len(bits), 8)).hex()


def _as_text(bits: list[int]) -> str | None:
    raw = bytes.fromhex(bits_to_hex(bits)).rstrip(b"\0")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and text.isprintable() else None


def _check_fpr(fpr: float) -> None:
    from sampan.errors import ConfigError

    if not 0.0 < fpr < 1.0:
        raise ConfigError(f"--fpr must be in (0, 1) (got {fpr})")


def _attack_names(attacks: str | None) -> list[str]:
    from sampan.errors import ConfigError
    from sampan.watermark.attacks import ATTACKS

    if attacks is None:
        return list(ATTACKS)
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    unknown = [a for a in names if a not in ATTACKS]
    if not names or unknown:
        raise ConfigError(f"--attacks: unknown or empty {unknown or attacks!r}; known: {', '.join(ATTACKS)}")
    return names


@watermark_app.command("keygen")
def keygen(out: Path = typer.Option(..., "--out", "-o", help="The key file to write (0600; never overwritten)."),
           key_id: str | None = typer.Option(None, help="A public label for the key (default: random).")) -> None:
    """Make a secret watermark key on this machine and write it 0600."""
    from sampan.watermark.keys import generate_key, save_key

    key = generate_key(key_id)
    save_key(key, out)
    console.print(f"watermark key {escape(key.key_id)} written to {escape(str(out))} (0600; keep it secret: "
                  "whoever holds it can detect, forge and try to remove the mark)")


@watermark_app.command("embed")
def embed_cmd(
    image: Path = typer.Argument(..., help="The image to mark (PNG, JPEG, ...)."),
    key: Path = typer.Option(..., "--key", help="The key file from `sampan watermark keygen`."),
    out: Path = typer.Option(..., "--out", "-o", help="The marked image to write (.png keeps every bit)."),
    bits: str | None = typer.Option(None, "--bits", help="Payload as hex digits (8 for 32 bits)."),
    message: str | None = typer.Option(None, "--message", help="Payload as UTF-8 text (4 bytes for 32 bits)."),
    n_bits: int = typer.Option(32, "--n-bits", help="Payload length in bits (a multiple of 8)."),
    strength: float | None = typer.Option(None, help="The mark's RMS in grey levels (default: the library's)."),
    target_psnr: float | None = typer.Option(None, help="Scale the mark to reach this PSNR instead."),
) -> None:
    """Embed a payload under a key and write the marked image."""
    from sampan.files import atomic_write_bytes
    from sampan.watermark import embed
    from sampan.watermark.keys import load_key
    from sampan.watermark.quality import psnr, ssim

    _check_out_image(out)
    payload = payload_bits(bits, message, n_bits)
    wm_key = load_key(key)
    pixels = _read_image(image)
    options: dict[str, Any] = {"n_bits": n_bits, "target_psnr": target_psnr}
    if strength is not None:
        options["strength"] = strength
    marked = embed(pixels, wm_key, payload, **options)
    atomic_write_bytes(out, _image_bytes(marked, out))
    console.print(f"{escape(str(out))}: marked with key {escape(wm_key.key_id)}, payload {bits_to_hex(payload)}; "
                  f"PSNR {psnr(pixels, marked):.2f} dB, SSIM {ssim(pixels, marked):.4f}")
    if _WRITE_FORMATS[out.suffix.lower()] == "JPEG":
        console.print("[yellow]note:[/] written as JPEG (quality 95): lossy; .png keeps the mark exactly")


def detection_record(image: Path, key_id: str, det: Any, fpr: float) -> dict[str, Any]:
    """The JSON that `detect` prints (and attack-report stores per attack).

    When the image is not marked at ``fpr`` the decoded bits are noise: ``bits`` and ``message`` are null then
    (REVW-6). ``min_bit_strength`` is the smallest Phi(|z_i|) of the bits, a strength score of at least 0.5, not
    the probability that a bit is right."""
    marked = bool(det.marked_at(fpr))
    bits = list(det.bits)
    return {"image": str(image), "key_id": key_id, "fpr": fpr, "marked": marked,
            "p_value": float(det.p_value), "statistic": float(det.statistic),
            "bits": bits_to_hex(bits) if marked else None, "message": _as_text(bits) if marked else None,
            "min_bit_strength": float(min(det.bit_confidences)) if marked else None,
            "rotation_deg": float(det.rotation_deg), "scale": float(det.scale),
            "mirrored": bool(getattr(det, "mirrored", False)),
            "offset": [int(v) for v in det.offset], "notes": list(det.notes)}


@watermark_app.command("detect")
def detect_cmd(
    image: Path = typer.Argument(..., help="The image to test."),
    key: Path = typer.Option(..., "--key", help="The key file."),
    fpr: float = typer.Option(1e-6, "--fpr", help="False-positive rate of the decision (p-value <= fpr)."),
    n_bits: int = typer.Option(32, "--n-bits", help="Payload length in bits used when embedding."),
) -> None:
    """Test an image for the key's mark: one JSON object; exit 0 marked, 10 not marked."""
    from sampan.watermark import detect
    from sampan.watermark.keys import load_key

    _check_fpr(fpr)
    wm_key = load_key(key)
    det = detect(_read_image(image), wm_key, n_bits=n_bits)
    record = detection_record(image, wm_key.key_id, det, fpr)
    typer.echo(json.dumps(record, indent=1))
    if not record["marked"]:
        raise typer.Exit(NOT_MARKED_EXIT)


@watermark_app.command("attack-report")
def attack_report(
    image: Path = typer.Argument(..., help="A marked image."),
    key: Path = typer.Option(..., "--key", help="The key it was marked with."),
    out: Path = typer.Option(..., "--out", "-o", help="A new (or empty) folder for report.json and report.html."),
    bits: str | None = typer.Option(None, "--bits", help="The payload embedded, as hex (default: the bits "
                                                         "decoded from the unattacked image)."),
    n_bits: int = typer.Option(32, "--n-bits"),
    fpr: float = typer.Option(1e-6, "--fpr", help="The decision's false-positive rate."),
    seed: int | None = typer.Option(None, help="Seed of the attacks' randomness (default: random, recorded)."),
    attacks: str | None = typer.Option(None, "--attacks", help="Comma-separated subset of the suite (default: "
                                                               "every attack)."),
) -> None:
    """Run the attack suite on one marked image; write a JSON and an HTML table."""
    import secrets

    from sampan.files import atomic_directory
    from sampan.watermark.attack_report import build_report, render_html
    from sampan.watermark.keys import load_key

    _check_fpr(fpr)
    if out.exists() and not out.is_dir():
        from sampan.errors import ConfigError

        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    names = _attack_names(attacks)
    expected = payload_bits(bits, None, n_bits) if bits is not None else None
    wm_key = load_key(key)
    pixels = _read_image(image)
    used_seed = seed if seed is not None else secrets.randbits(63)
    report = build_report(pixels, wm_key, image=str(image), expected_bits=expected, n_bits=n_bits, fpr=fpr,
                          seed=used_seed, attacks=names, progress=lambda name: console.print(f"  {escape(name)}"))
    try:
        with atomic_directory(out, replaceable=_REPORT_FILES) as staging:
            (staging / "report.json").write_text(json.dumps(report, indent=1))
            (staging / "report.html").write_text(render_html(report))
    except FileExistsError as exc:
        from sampan.errors import ConfigError

        raise ConfigError(f"--out: {exc}") from None
    survived = sum(r["marked"] for r in report["attacks"])
    console.print(f"{survived}/{len(report['attacks'])} attacked copies detected at FPR {fpr:g}; report in "
                  f"{escape(str(out))} (report.html, report.json)")
