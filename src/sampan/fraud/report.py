"""The detection report of one scanned image: a JSON record (the source of truth) and its HTML view.

Why a record first: a bank archives what the detector said about a document (score, threshold and its false-positive
rate, every patch's box and score, which detector and which training run) as JSON; the HTML page is a view of that
record and can be rendered again at any time from it and the image (`sampan fraud report`), with the image's SHA-256
checked so a report never shows a different image than the one scanned.

The page is self-contained (inline CSS, the image with the heatmap overlay and the patch crops as PNG data URIs, a
Content-Security-Policy that loads nothing), every text is escaped, and it is written atomically. It states the
verdict, the score, the threshold with its FPR and whose operating point it is (the scanning bank's own threshold,
fixed on its own real validation images, or a pooled simulation threshold), the most suspicious patches with their
fake probabilities, the model's provenance (training run, banks, DP settings and the unit they protect) and the data
provenance note.

What a record embeds of the detector: its path, the model's identity (``model_sha256``, `Detector.model_sha256`)
and the training provenance, never a bank's validation figures; the threshold used is the record's
``operating_point``. Both files embed the customer's document (the HTML as pixels, the record as its digest and
patch boxes) and are written 0600 (`sampan fraud scan` puts them in a 0700 folder).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import ConfigError, DataError
from sampan.files import atomic_write_bytes
from sampan.fraud.detector import Verdict
from sampan.fraud.heatmap import heatmap_png, patch_heatmap
from sampan.report._style import CSS
from sampan.report._svg_base import esc

__all__ = ["RECORD_FORMAT", "check_record", "image_sha256", "render_detection_report", "verdict_record",
           "write_detection_report"]

RECORD_FORMAT = "sampan.fraud.verdict"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CROP_ZOOM = 3
PRIVATE_FILE = 0o600
_NOT_IN_RECORD = ("validation", "threshold", "thresholds", "threshold_note")  # a bank's figures stay in its file
_EXTRA_CSS = """
.verdict-fake { color: var(--bad); } .verdict-real { color: var(--good); }
.overlay img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
  image-rendering: pixelated; }
.crops { display: flex; flex-wrap: wrap; gap: 14px; }
.crops figure { border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: #fafbfc; }
.crops img { display: block; image-rendering: pixelated; }
.crops figcaption { font-size: 12px; color: var(--muted); margin-top: 6px; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""


def image_sha256(image: np.ndarray) -> str:
    """SHA-256 of the decoded pixels (shape + RGB bytes): the same image however it is re-encoded on disk."""
    pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def verdict_record(verdict: Verdict, image: np.ndarray, *, image_path: str, detector_path: str,
                   aggregation: str, provenance: Mapping[str, Any] | None, data_note: str,
                   operating_point: Mapping[str, Any] | None = None,
                   model_sha256: str | None = None) -> dict[str, Any]:
    """The JSON record of one scan (every patch's box and real-probability score included). ``operating_point``
    (`sampan.fraud.operating_point.OperatingPoint.to_dict()`) says whose threshold was used; ``model_sha256``
    (`Detector.model_sha256`) which model judged. Validation figures and thresholds in ``provenance`` are left out."""
    kept = {k: v for k, v in dict(provenance or {}).items() if k not in _NOT_IN_RECORD}
    return {
        "format": RECORD_FORMAT, "version": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "image": {"path": image_path, "sha256": image_sha256(image), "height": int(image.shape[0]),
                  "width": int(image.shape[1])},
        "verdict": {**verdict.to_dict(), "aggregation": aggregation},
        "patches": {"boxes": np.asarray(verdict.boxes, dtype=np.int64).reshape(-1, 4).tolist(),
                    "scores": [float(s) for s in np.asarray(verdict.patch_scores, dtype=np.float64)]},
        "detector": {"path": detector_path, "model_sha256": model_sha256, "provenance": kept},
        "data_provenance": data_note,
        "operating_point": dict(operating_point) if operating_point is not None else None,
    }


def check_record(record: Any, source: str) -> dict[str, Any]:
    """Refuse a file that is not a verdict record, naming ``source`` and the field."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ConfigError(f"{source}: not a Sampan verdict record (field 'format' must be {RECORD_FORMAT!r})")
    for key in ("image", "verdict", "patches", "detector"):
        if not isinstance(record.get(key), dict):
            raise ConfigError(f"{source}: field {key!r} is missing or not an object")
    verdict = record["verdict"]
    for key in ("score", "threshold", "fpr"):
        value = verdict.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: field 'verdict.{key}' must be a finite number (got {value!r})")
    if record.get("operating_point") is not None and not isinstance(record["operating_point"], dict):
        raise ConfigError(f"{source}: field 'operating_point' must be an object or null")
    boxes, scores = record["patches"].get("boxes"), record["patches"].get("scores")
    if not isinstance(boxes, list) or not isinstance(scores, list) or len(boxes) != len(scores):
        raise ConfigError(f"{source}: fields 'patches.boxes' and 'patches.scores' must be lists of equal length")
    return record


def _png(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels.astype(np.uint8)), "RGB").save(buffer, format="PNG")
    return _data_uri(buffer.getvalue())


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _crop(image: np.ndarray, box: Sequence[int]) -> str:
    y0, x0, y1, x1 = (int(v) for v in box)
    patch = np.asarray(image)[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    if patch.size == 0:
        return ""
    return _png(np.repeat(np.repeat(patch, _CROP_ZOOM, axis=0), _CROP_ZOOM, axis=1))


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    body = "".join(f'<tr><td class="key">{esc(k)}</td><td class="val">{esc(v)}</td></tr>' for k, v in pairs)
    return f'<div class="table-wrap"><table><tbody>{body}</tbody></table></div>'


def _section(title: str, body: str, lede: str = "") -> str:
    lede_html = f'<p class="lede">{esc(lede)}</p>' if lede else ""
    return f"<section><h2>{esc(title)}</h2>{lede_html}{body}</section>"


def _card(label: str, value: str, hint: str = "") -> str:
    return (f'<div class="card"><p class="label">{esc(label)}</p><p class="value">{esc(value)}</p>'
            f'<p class="hint">{esc(hint) if hint else "&#160;"}</p></div>')


def _provenance_rows(provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    dp = provenance.get("dp")
    dp_text = ("none (updates not noised)" if not dp else
               f"DP-SGD: epsilon {dp.get('epsilon')}, delta {dp.get('delta')}, clip {dp.get('max_grad_norm')}")
    banks = provenance.get("banks") or []
    return [("training run", str(provenance.get("run_id") or "not recorded")),
            ("banks", ", ".join(map(str, banks)) if banks else "not recorded"),
            ("model", str(provenance.get("model") or "not recorded")),
            ("rounds", str(provenance.get("rounds", "not recorded"))),
            ("differential privacy", dp_text),
            ("unit of privacy", str(provenance.get("privacy_unit") or "not recorded")),
            ("patches per document (cap)", str(provenance.get("max_patches_per_doc", "not recorded")))]


def _operating_point_text(point: Mapping[str, Any] | None) -> tuple[str, str]:
    """(short card hint, full sentence) for whose threshold the scan used."""
    if not point:
        return "operating point not recorded", "not recorded in this verdict (a record written before per-bank " \
                                               "thresholds)"
    n = point.get("n_real_validation")
    images = f"{n} real validation images" if isinstance(n, int) else "real validation images"
    if point.get("scope") == "bank":
        bank = str(point.get("bank"))
        return f"bank {bank}'s own", f"bank {bank}'s own threshold, fixed on {images} of that bank only"
    return "pooled (simulation)", (f"pooled threshold fixed on {images} of all banks, their scores released to the "
                                   "trainer (a simulation/benchmark setting)")


def render_detection_report(record: Mapping[str, Any], image: np.ndarray, *, image_name: str | None = None) -> str:
    """The HTML page of one verdict record; ``image`` must be the scanned image (its SHA-256 is checked;
    ``image_name`` names it in that error, default: the record's path)."""
    record = check_record(dict(record), "verdict record")
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"the report needs an RGB image (H, W, 3), got shape {image.shape}")
    info, verdict = record["image"], record["verdict"]
    if info.get("sha256") != image_sha256(image):
        raise DataError(f"image {image_name or info.get('path')!r} is not the image that was scanned (its SHA-256 "
                        "differs from the record's): the report would show other pixels than those judged")
    boxes = np.asarray(record["patches"]["boxes"], dtype=np.int64).reshape(-1, 4)
    scores = np.asarray(record["patches"]["scores"], dtype=np.float64)
    overlay = _data_uri(heatmap_png(image, patch_heatmap(image.shape[:2], boxes, 1.0 - scores)))
    shown_width = min(720, 4 * int(image.shape[1]))  # small scans drawn larger (pixelated, not smoothed)
    fake = bool(verdict.get("is_fake"))
    word = "FAKE" if fake else "REAL"
    score, threshold, fpr = float(verdict["score"]), float(verdict["threshold"]), float(verdict["fpr"])
    point_hint, point_text = _operating_point_text(record.get("operating_point"))
    title = f"Document judged {word}: {Path(str(info.get('path', 'image'))).name}"
    cards = "".join([
        _card("verdict", word, "score below threshold" if fake else "score at or above threshold"),
        _card("score", f"{score:.3f}", "probability of real (0-1)"),
        _card("threshold", f"{threshold:.3f}", f"{point_hint}; FPR {fpr:.1%} on real images"),
        _card("patches", str(len(scores)), "non-flat patches scored")])
    crops = []
    for rank, top in enumerate(verdict.get("top_patches") or [], 1):
        uri = _crop(image, top.get("box", (0, 0, 0, 0)))
        box = ", ".join(str(int(v)) for v in top.get("box", ()))
        p = float(top.get("fake_probability", math.nan))
        crops.append(f'<figure><img src="{esc(uri)}" alt="patch {rank}"/><figcaption>#{rank} · fake probability '
                     f"{esc(f'{p:.3f}')}<br/>box (y0, x0, y1, x1) = ({esc(box)})</figcaption></figure>")
    crops_html = f'<div class="crops">{"".join(crops)}</div>' if crops else '<p class="empty">no patch scored</p>'
    provenance = record["detector"].get("provenance") or {}
    body = "".join([
        '<header class="top"><div><p class="brand">Sampan · Document forgery detection</p>'
        f'<h1 class="verdict-{"fake" if fake else "real"}">{esc(title)}</h1>'
        f'<p class="meta"><span>image SHA-256 <code>{esc(str(info.get("sha256", ""))[:16])}</code></span>'
        f'<span>{esc(str(info.get("width")))} x {esc(str(info.get("height")))} px</span>'
        f'<span>{esc(str(record.get("generated_at", "")))}</span></p></div>'
        f'<div><span class="badge {"bad" if fake else "ok"}">{esc(word)}</span></div></header>',
        f'<div class="cards">{cards}</div>',
        _section("Heatmap", f'<figure class="overlay"><img src="{esc(overlay)}" width="{shown_width}" '
                 'alt="heatmap overlay"/></figure>',
                 "Each pixel is painted red by the mean fake probability of the patches covering it (flat, unscored "
                 "regions stay grey). The image is FAKE when its aggregated score (" +
                 str(verdict.get("aggregation", "")) + ") is below the threshold."),
        _section("Most suspicious patches", crops_html, f"Crops shown at {_CROP_ZOOM}x, highest fake probability "
                 "first (fake probability = 1 - the patch's score)."),
        _section("Model provenance", _rows([("detector file", str(record["detector"].get("path", ""))),
                                            ("model SHA-256", str(record["detector"].get("model_sha256")
                                                                  or "not recorded")),
                                            ("operating point", point_text),
                                            *_provenance_rows(provenance)])),
        _section("Data provenance", f"<p>{esc(str(record.get('data_provenance') or 'not recorded'))}</p>"),
        "<footer>A score is evidence, not proof: the threshold bounds the false-positive rate on the real "
        "validation images it was fixed on, not on every kind of document or capture.</footer>",
    ])
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8"/>'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
            f"<title>{esc(title)}</title><style>{CSS}{_EXTRA_CSS}</style></head>"
            f'<body><div class="page">{body}</div></body></html>\n')


def write_detection_report(path: str | os.PathLike[str], record: Mapping[str, Any], image: np.ndarray, *,
                           image_name: str | None = None) -> Path:
    """Render first, then write atomically (a failure leaves no file), 0600: the page embeds the document."""
    html = render_detection_report(record, image, image_name=image_name).encode("utf-8")
    return atomic_write_bytes(path, html, mode=PRIVATE_FILE)
