"""Procedurally rendered 'real' documents: ID cards and business documents (issue 18, honest local data).

No public forgery corpus can be downloaded here, so the real class is rendered: a tinted background with fine
guilloche, an issuer logo, text fields with random names and numbers (Pillow's bundled font), a photo region (a
drawn face on an ID card, a company seal with a signature on a business document), a border, and the texture of
print (ink spread, paper grain, noise). The layout is fixed per kind and size (`photo_box`, `text_boxes`), so an
inpainter knows its target; only the content is drawn from the rng. Images are uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sampan.errors import ConfigError
from sampan.fraud import _draw

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

__all__ = [
    "KINDS", "SOURCES", "DocImage", "FraudDataError", "check_kind", "check_source", "photo_box", "text_boxes",
    "render_document",
]

KINDS: tuple[str, ...] = ("id_card", "business")
SOURCES: tuple[str, ...] = ("real", "autoencoder", "upsampler", "inpaint")

# Layout as fractions of (height, width): (y0, x0, y1, x1).
_PHOTO = {"id_card": (0.22, 0.05, 0.80, 0.36), "business": (0.80, 0.55, 0.97, 0.95)}
_TEXT = {
    "id_card": [(0.25 + 0.12 * k, 0.41, 0.33 + 0.12 * k, 0.95) for k in range(4)] + [(0.85, 0.05, 0.95, 0.95)],
    "business": [(0.22 + 0.065 * k, 0.06, 0.27 + 0.065 * k, 0.94) for k in range(5)]
    + [(0.58 + 0.065 * k, 0.55, 0.63 + 0.065 * k, 0.94) for k in range(3)],
}
_LABELS = ("NAME", "ID NO", "DATE OF BIRTH", "EXPIRY")


class FraudDataError(ConfigError):
    """A document kind, fake source or capture setting that does not exist or is out of range; names the field."""


@dataclass(frozen=True, eq=False)
class DocImage:
    """One document image with its ground truth: label 1 = fake; mask True = manipulated pixels.

    eq=False: two documents compare (and hash) by identity, as arrays have no single truth value.
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: int  # 0 real, 1 fake
    source: str  # "real", "autoencoder", "upsampler", "inpaint"
    kind: str  # "id_card", "business"
    mask: np.ndarray  # (H, W) bool; all False for real, all True for fully generated
    device: str  # capture profile name ("none" before capture)
    doc_id: str


def check_kind(kind: str) -> str:
    """The kind itself, or a FraudDataError naming the field and the known kinds."""
    if kind not in KINDS:
        raise FraudDataError(f"document kind {kind!r} is not one of {', '.join(KINDS)} (field 'kind')")
    return kind


def check_source(source: str) -> str:
    """The source itself, or a FraudDataError naming the field and the known sources."""
    if source not in SOURCES:
        raise FraudDataError(f"fake source {source!r} is not one of {', '.join(SOURCES)} (field 'source')")
    return source


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(size[0]), int(size[1]))
    if h < 32 or w < 32:
        raise FraudDataError(f"document size {size!r} is below 32x32 (field 'size')")
    return h, w


def _scale(frac: tuple[float, float, float, float], size: tuple[int, int]) -> _draw.Box:
    h, w = size
    return (int(round(frac[0] * h)), int(round(frac[1] * w)), int(round(frac[2] * h)), int(round(frac[3] * w)))


def photo_box(kind: str, size: tuple[int, int] = (256, 256)) -> _draw.Box:
    """The photo region (ID card: the portrait; business: the seal and signature) as (y0, x0, y1, x1)."""
    return _scale(_PHOTO[check_kind(kind)], _check_size(size))


def text_boxes(kind: str, size: tuple[int, int] = (256, 256)) -> list[_draw.Box]:
    """The value fields that carry random text, as (y0, x0, y1, x1) boxes (inpainting targets)."""
    size = _check_size(size)
    return [_scale(f, size) for f in _TEXT[check_kind(kind)]]


def render_document(kind: str, rng: np.random.Generator, size: tuple[int, int] = (256, 256)) -> np.ndarray:
    """A real document of the kind, drawn from the rng: uint8 (H, W, 3)."""
    from PIL import Image, ImageDraw

    check_kind(kind)
    h, w = _check_size(size)
    paper = _draw.random_tint(rng, 0.9 if kind == "id_card" else 0.96)
    img = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(img)
    accent: _draw.Color = (int(rng.integers(20, 150)), int(rng.integers(20, 150)), int(rng.integers(20, 150)))
    if kind == "id_card":
        _id_card(img, rng, (h, w), paper, accent)
    else:
        _business(draw, rng, (h, w), paper, accent)
    return _draw.print_noise(np.asarray(img), rng)


def _id_card(img: Image.Image, rng: np.random.Generator, size: tuple[int, int], paper: _draw.Color,
             accent: _draw.Color) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    h, w = size
    _draw.guilloche(draw, (0, 0, h, w), rng, _draw.darker(paper, 0.86), curves=int(rng.integers(4, 8)))
    draw.rectangle((0, 0, w - 1, int(0.16 * h)), fill=accent)
    draw.text((0.2 * w, 0.08 * h), str(rng.choice(["IDENTITY CARD", "RESIDENT CARD", "NATIONAL ID"])),
              fill=(250, 250, 250), font=_draw.font(0.07 * h), anchor="lm")
    _draw.logo(draw, (int(0.015 * h), int(0.86 * w), int(0.145 * h), int(0.86 * w + 0.13 * h)), rng,
               (240, 240, 240))
    _draw.portrait(img, photo_box("id_card", size), rng)
    small, big = _draw.font(0.035 * h), _draw.font(0.055 * h)
    values = [_draw.random_name(rng), f"{chr(65 + int(rng.integers(0, 26)))}{_draw.random_digits(rng, 6)}"
              f"({int(rng.integers(0, 10))})", _date(rng, 1950, 2005), _date(rng, 2027, 2036)]
    for (y0, x0, y1, _x1), label, value in zip(text_boxes("id_card", size)[:4], _LABELS, values, strict=True):
        draw.text((x0, y0 - 0.035 * h), label, fill=_draw.darker(accent, 0.8), font=small)
        draw.text((x0, (y0 + y1) / 2), value, fill=(15, 15, 25), font=big, anchor="lm")
    y0, x0, y1, _ = text_boxes("id_card", size)[4]
    mrz = f"ID<<{_draw.random_name(rng).replace(' ', '<')}<<{_draw.random_digits(rng, 9)}"
    draw.text((x0, (y0 + y1) / 2), mrz[:30], fill=(30, 30, 30), font=_draw.font(0.045 * h), anchor="lm")
    draw.rounded_rectangle((1, 1, w - 2, h - 2), radius=int(0.05 * w), outline=accent, width=max(1, w // 128))


def _business(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int], paper: _draw.Color,
              accent: _draw.Color) -> None:
    h, w = size
    _draw.guilloche(draw, (int(0.02 * h), int(0.6 * w), int(0.17 * h), int(0.97 * w)), rng,
                    _draw.darker(paper, 0.85), curves=3)
    _draw.logo(draw, (int(0.03 * h), int(0.05 * w), int(0.03 * h + 0.13 * w), int(0.18 * w)), rng, accent)
    company = f"{_draw.random_name(rng).split()[0].title()} {rng.choice(['Trading', 'Logistics', 'Foods'])} Ltd"
    draw.text((0.22 * w, 0.07 * h), company, fill=accent, font=_draw.font(0.06 * h), anchor="lm")
    draw.text((0.22 * w, 0.13 * h), f"BR No. {_draw.random_digits(rng, 8)}", fill=(60, 60, 60),
              font=_draw.font(0.035 * h), anchor="lm")
    draw.line((0.05 * w, 0.18 * h, 0.95 * w, 0.18 * h), fill=accent, width=max(1, h // 128))
    words = ("invoice", "payment", "goods", "delivered", "terms", "net", "days", "account", "balance", "order",
             "shipment", "Kowloon", "supplier", "credit", "total", "amount", "due", "bank", "ref", "per")
    body = _draw.font(0.04 * h)
    boxes = text_boxes("business", size)
    for y0, x0, y1, x1 in boxes[:5]:
        line = " ".join(str(rng.choice(words)) for _ in range(int(rng.integers(4, 9))))
        draw.text((x0, (y0 + y1) / 2), line[: int((x1 - x0) / (0.022 * h))], fill=(25, 25, 35), font=body,
                  anchor="lm")
    for k, (y0, x0, y1, x1) in enumerate(boxes[5:]):
        label = ("Subtotal", "Tax", "Total")[k]
        draw.text((0.08 * w, (y0 + y1) / 2), label, fill=(40, 40, 40), font=body, anchor="lm")
        amount = f"HKD {int(rng.integers(1, 999))},{int(rng.integers(0, 999)):03d}.{int(rng.integers(0, 99)):02d}"
        draw.text((x1, (y0 + y1) / 2), amount, fill=(15, 15, 25), font=body, anchor="rm")
        draw.line((x0, y1, x1, y1), fill=(180, 180, 180), width=1)
    _draw.seal(draw, photo_box("business", size), rng)
    draw.rectangle((0, 0, w - 1, h - 1), outline=_draw.darker(paper, 0.7), width=1)


def _date(rng: np.random.Generator, first: int, last: int) -> str:
    return f"{int(rng.integers(1, 29)):02d}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(first, last))}"
