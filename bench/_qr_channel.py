"""Decode rate under each distortion of the simulated channel, and quishing precision/recall on the test corpus.

Decode rate: a signed item code with its copy-detection pattern is printed on the issuer's printer and captured
under one distortion at a time (each capture device as shipped; then phone-a with stains, a fold, lower JPEG
quality, more blur, more perspective); "decoded" means zxing-cpp returned exactly the code's text. Quishing: the
hand-built corpus of tests/qr/url_corpus.py (URLs and FPS/EMVCo payment payloads), "flagged" = verdict warn or
block; precision and recall of the flag for the malicious label.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sampan.qr.cdp import CdpLayout, render_original
from sampan.qr.channel import DEVICES, CaptureDevice, Distortions, PrintCaptureChannel
from sampan.qr.codec import QrCodecError, decode_qr


def conditions() -> dict[str, tuple[CaptureDevice, Distortions]]:
    """name -> (device, sheet damage): one distortion at a time."""
    a = DEVICES["phone-a"]
    out: dict[str, tuple[CaptureDevice, Distortions]] = {f"device {d}": (DEVICES[d], Distortions()) for d in DEVICES}
    out.update({
        "stains x1": (a, Distortions(stains=1)),
        "stains x3": (a, Distortions(stains=3)),
        "stains x3 strong": (a, Distortions(stains=3, stain_strength=0.6)),
        "fold": (a, Distortions(fold=True)),
        "fold strong": (a, Distortions(fold=True, fold_strength=0.3)),
    })
    for q in (70, 50, 30, 15):
        out[f"jpeg q{q}"] = (replace(a, jpeg_quality=q), Distortions())
    for s in (1.2, 1.8, 2.5):
        out[f"blur sigma {s}"] = (replace(a, blur_sigma=s), Distortions())
    for p in (0.05, 0.1):
        out[f"perspective {p}"] = (replace(a, perspective=p), Distortions())
    return out


def decode_rates(text: str, key: bytes, layout: CdpLayout, *, per_condition: int,
                 rng: np.random.Generator) -> dict[str, Any]:
    """{condition: {"decoded", "n", "rate"}} plus seconds."""
    t0 = time.perf_counter()
    inks = [render_original(text, key, f"DEC-{i}", layout) for i in range(per_condition)]
    out: dict[str, Any] = {}
    for name, (device, damage) in conditions().items():
        channel = PrintCaptureChannel(device=device, distortions=damage)
        ok = 0
        for ink in inks:
            try:
                ok += int(text in decode_qr(channel.transmit(ink, int(rng.integers(2**63)))))
            except QrCodecError:
                pass
        out[name] = {"decoded": ok, "n": per_condition, "rate": ok / per_condition}
    return {"conditions": out, "seconds": time.perf_counter() - t0}


def _corpus() -> Any:
    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.qr import url_corpus

    return url_corpus


def _pr(labels: list[bool], flagged: list[bool]) -> dict[str, Any]:
    tp = sum(m and f for m, f in zip(labels, flagged, strict=True))
    fp = sum((not m) and f for m, f in zip(labels, flagged, strict=True))
    fn = sum(m and not f for m, f in zip(labels, flagged, strict=True))
    return {"n": len(labels), "malicious": sum(labels), "tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan")}


def quishing_scores() -> dict[str, Any]:
    """Precision/recall of check_url (non-strict and strict Hong Kong allow-list) and check_payment."""
    from sampan.qr.emv import check_payment
    from sampan.qr.quishing import check_url, hong_kong_allow_list

    corpus = _corpus()
    out: dict[str, Any] = {}
    for label, strict in (("urls (allow-list non-strict)", False), ("urls (allow-list strict)", True)):
        allow = hong_kong_allow_list(strict=strict)
        verdicts = [check_url(c.url, allow=allow).verdict for c in corpus.URL_CORPUS]
        out[label] = _pr([c.label == "malicious" for c in corpus.URL_CORPUS], [v != "ok" for v in verdicts])
    pay = [check_payment(c.payload, c.expected).verdict for c in corpus.PAYMENT_CORPUS]
    out["payment payloads"] = _pr([c.label == "malicious" for c in corpus.PAYMENT_CORPUS], [v != "ok" for v in pay])
    return out
