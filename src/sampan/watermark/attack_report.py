"""The attack report of one marked image (``sampan watermark attack-report``): every attack of the suite, the
detector's verdict, p-value, bit accuracy and the geometry it inverted, as a JSON-ready dict and an HTML table.

Why a module of its own: the CLI stays a thin shell, and a Python caller gets the same report without the CLI.
Bit accuracy is against `expected_bits` when the caller knows the payload, else against the bits decoded from the
unattacked image (said in the report's "reference" field).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sampan.watermark.attacks import ATTACKS
from sampan.watermark.detect import detect
from sampan.watermark.errors import WatermarkError
from sampan.watermark.keys import WatermarkKey
from sampan.watermark.quality import psnr, ssim

__all__ = ["build_report", "render_html"]


def _row(name: str, attacked: np.ndarray, marked: np.ndarray, key: WatermarkKey, reference: np.ndarray,
         n_bits: int, fpr: float) -> dict[str, Any]:
    same_size = attacked.shape == marked.shape
    size = [int(v) for v in attacked.shape[:2]]
    try:
        det = detect(attacked, key, n_bits=n_bits)
    except WatermarkError as exc:  # e.g. a crop below the detector's minimum size: not detected, said why
        return {"attack": name, "size": size, "marked": False, "p_value": None, "bit_accuracy": None,
                "rotation_deg": None, "scale": None, "psnr_vs_marked": None, "ssim_vs_marked": None,
                "error": str(exc)}
    return {"attack": name, "size": size, "marked": bool(det.marked_at(fpr)),
            "p_value": float(det.p_value), "bit_accuracy": float((np.asarray(det.bits) == reference).mean()),
            "rotation_deg": float(det.rotation_deg), "scale": float(det.scale),
            "psnr_vs_marked": psnr(marked, attacked) if same_size else None,
            "ssim_vs_marked": ssim(marked, attacked) if same_size else None}


def build_report(pixels: np.ndarray, key: WatermarkKey, *, image: str = "image",
                 expected_bits: Sequence[int] | None = None, n_bits: int = 32, fpr: float = 1e-6, seed: int = 0,
                 attacks: Sequence[str] | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Detect the mark in `pixels` after every attack (randomness from `seed`, recorded for a rerun)."""
    names = list(ATTACKS) if attacks is None else list(attacks)
    if expected_bits is not None:
        reference = np.asarray(list(expected_bits), dtype=np.int64)
        ref_note = "the payload given (--bits)"
    else:
        reference = np.asarray(detect(pixels, key, n_bits=n_bits).bits, dtype=np.int64)
        ref_note = "the bits decoded from the unattacked image (no payload given)"
    rows = []
    for index, name in enumerate(names):
        if progress is not None:
            progress(name)
        attacked = ATTACKS[name](pixels, np.random.default_rng([seed, index]))
        rows.append(_row(name, attacked, pixels, key, reference, n_bits, fpr))
    return {"image": image, "key_id": key.key_id, "size": [int(v) for v in pixels.shape[:2]], "fpr": fpr,
            "n_bits": n_bits, "seed": seed, "reference": ref_note, "attacks": rows,
            "notes": "attacks: sampan.watermark.attacks (the issue-19 suite); marked = p-value <= fpr; "
                     "PSNR/SSIM against the input image where the attack keeps its size"}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page with the report's table (no scripts, no external resources)."""
    esc = html.escape
    rows = []
    for r in report["attacks"]:
        verdict = "detected" if r["marked"] else "not detected"
        colour = "#1b7f3b" if r["marked"] else "#b3261e"
        rows.append(
            f"<tr><td>{esc(r['attack'])}</td><td>{r['size'][0]}x{r['size'][1]}</td>"
            f"<td style='color:{colour}'>{verdict}{esc(' (' + r['error'] + ')') if r.get('error') else ''}</td>"
            f"<td>{_fmt(r['p_value'], '.3g')}</td><td>{_fmt(r['bit_accuracy'], '.3f')}</td>"
            f"<td>{_fmt(r['rotation_deg'], '.2f')}</td><td>{_fmt(r['scale'], '.3f')}</td>"
            f"<td>{_fmt(r['psnr_vs_marked'], '.2f')}</td>"
            f"<td>{_fmt(r['ssim_vs_marked'], '.4f')}</td></tr>")
    detected = sum(r["marked"] for r in report["attacks"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Watermark attack report: {esc(report['image'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>Watermark attack report</h1>
<p>Image {esc(report['image'])} ({report['size'][0]}x{report['size'][1]}), key {esc(report['key_id'])},
{report['n_bits']}-bit payload; decision: p-value &le; {report['fpr']:g}; attack seed {report['seed']}.
Bit accuracy against {esc(report['reference'])}.</p>
<p><strong>{detected} of {len(report['attacks'])}</strong> attacked copies detected.</p>
<table><tr><th>attack</th><th>size</th><th>verdict</th><th>p-value</th><th>bit accuracy</th><th>rotation (deg)</th>
<th>scale</th><th>PSNR vs input</th><th>SSIM vs input</th></tr>
{chr(10).join(rows)}
</table><p>{esc(report['notes'])}</p></body></html>
"""
