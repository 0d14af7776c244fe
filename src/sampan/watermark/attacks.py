"""The attack suite of issue 19: pure functions (image, rng) -> image, Pillow/NumPy only.

Why one table: the benchmark, the CLI's attack-report and the tests must run exactly the same attacks on every
method. Each attack takes a uint8 HxW gray or HxWx3 RGB image and a NumPy Generator (used only where the attack has
a random part: a rotation's sign, a crop's position, a shift, noise) and returns a new uint8 image; the input is
never modified. Sizes: "same" = the attacked image keeps the input's size, "changes" = it does not (the detector
sees the new size: resize without restoring, crops, screenshot).

Names (`ATTACKS`, in order):
- none: the marked image itself.
- jpeg90, jpeg70, jpeg50, jpeg30: Pillow JPEG at that quality (4:2:0 chroma subsampling, Pillow's default tables).
- resize{0.5,0.75,1.25,1.5}: bicubic resize by that factor, NOT restored (size changes).
- resize{...}_restore: resized by that factor and back to the original size (size same; a low-pass attack).
- rotate{1,5,15,30}: rotation by +-angle about the centre (sign drawn from rng), bicubic, same size, the corners
  that leave the frame lost and black corners filled in.
- rotate{1,5,15,30}_rescale: the same rotation, then the largest centred axis-aligned square/rectangle inside the
  rotated frame (no black corners) is cropped and rescaled to the original size (an editor's "rotate and fill":
  a zoom of cos + sin(angle) on top of the rotation, 1.22x at 15 deg).
- crop{90,75,50,25,10}: keep that percentage of the area (same aspect, position drawn from rng), no rescale.
- translate_fill: content shifted by 16-64 px in x and y (signs and amounts from rng), the uncovered band black.
- translate_crop: 16-64 px cut off the top and left (amounts from rng): the grid origin moves, size changes.
- noise: additive Gaussian noise, sigma 5 (of 255), per channel.
- blur: Gaussian blur, sigma 1 px (Pillow's GaussianBlur radius 1).
- brightness_contrast: brightness x1.2 then contrast x0.8 (Pillow ImageEnhance).
- screenshot: rescale by a factor drawn uniformly in [0.75, 1.3], light unsharp mask (radius 1, 50 %), JPEG 80.
- regenerate: re-synthesis through a tile autoencoder fitted to the image (`sampan.watermark.regenerate`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.watermark.errors import WatermarkError
from sampan.watermark.regenerate import regenerate

__all__ = ["ATTACKS", "GEOMETRIC_ATTACKS", "AttackError", "Attack", "attack_names", "run_attack"]

Attack = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class AttackError(WatermarkError):
    """An attack asked of an image it cannot take (wrong type/shape) or an unknown attack name."""


def _check(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise AttackError(f"attack input must be uint8, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise AttackError(f"attack input shape {img.shape}: expected HxW gray or HxWx3 RGB")
    if min(img.shape[:2]) < 16:
        raise AttackError(f"attack input {img.shape[:2]} is too small (at least 16 x 16 pixels)")
    return img


def _pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(image)


def _arr(pil_image: Any, like: np.ndarray) -> np.ndarray:
    out = np.asarray(pil_image.convert("L" if like.ndim == 2 else "RGB"), dtype=np.uint8)
    return np.array(out)  # writable copy


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    _pil(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    from PIL import Image

    with Image.open(buf) as im:
        return _arr(im, image)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    w, h = size
    return _arr(_pil(image).resize((max(1, w), max(1, h)), resample=Image.Resampling.BICUBIC), image)


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return _resize(image, (int(round(w * factor)), int(round(h * factor))))


def _rotate(image: np.ndarray, angle: float) -> np.ndarray:
    from PIL import Image

    fill: Any = 0 if image.ndim == 2 else (0, 0, 0)
    return _arr(_pil(image).rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=fill), image)


def _inscribed(w: int, h: int, angle_deg: float) -> tuple[int, int]:
    """Largest axis-aligned rectangle of the input's aspect inside a w x h frame rotated by angle (centred)."""
    a = math.radians(abs(angle_deg))
    c, s = math.cos(a), math.sin(a)
    # A centred rectangle (k w, k h) fits inside the rotated frame when both of its rotated extents fit.
    k = min(w / (w * c + h * s), h / (w * s + h * c))
    return max(1, int(math.floor(k * w))), max(1, int(math.floor(k * h)))


def _signed(rng: np.random.Generator, angle: float) -> float:
    return angle if rng.random() < 0.5 else -angle


def _rotate_attack(angle: float, rescale: bool) -> Attack:
    def attack(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = _check(image)
        a = _signed(rng, angle)
        out = _rotate(img, a)
        if not rescale:
            return out
        h, w = img.shape[:2]
        cw, ch = _inscribed(w, h, a)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        return _resize(out[y0:y0 + ch, x0:x0 + cw], (w, h))

    return attack


def _jpeg_attack(quality: int) -> Attack:
    return lambda image, rng: _jpeg(_check(image), quality)


def _resize_attack(factor: float, restore: bool) -> Attack:
    def attack(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = _check(image)
        out = _scaled(img, factor)
        return _resize(out, (img.shape[1], img.shape[0])) if restore else out

    return attack


def _crop_attack(percent: int) -> Attack:
    def attack(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = _check(image)
        h, w = img.shape[:2]
        side = math.sqrt(percent / 100.0)
        ch, cw = max(16, int(round(h * side))), max(16, int(round(w * side)))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        return np.array(img[y0:y0 + ch, x0:x0 + cw])

    return attack


def _shift_amount(rng: np.random.Generator) -> int:
    return int(rng.integers(16, 65))


def translate_fill(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Content shifted by 16-64 px in x and y (random signs), the uncovered band filled black; same size."""
    img = _check(image)
    dy = _shift_amount(rng) * (1 if rng.random() < 0.5 else -1)
    dx = _shift_amount(rng) * (1 if rng.random() < 0.5 else -1)
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    src_y, dst_y = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    src_x, dst_x = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[dst_y, dst_x] = img[src_y, src_x]
    return out


def translate_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """16-64 px cut off the top and the left: the content's origin moves and the image shrinks."""
    img = _check(image)
    dy, dx = _shift_amount(rng), _shift_amount(rng)
    return np.array(img[dy:, dx:])


def noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, sigma 5 grey levels, rounded and clipped to uint8."""
    img = _check(image)
    noisy = img.astype(np.float64) + rng.normal(0.0, 5.0, size=img.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur of radius (sigma) 1 px."""
    from PIL import ImageFilter

    img = _check(image)
    return _arr(_pil(img).filter(ImageFilter.GaussianBlur(radius=1.0)), img)


def brightness_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness x1.2, then contrast x0.8."""
    from PIL import ImageEnhance

    img = _check(image)
    brighter = ImageEnhance.Brightness(_pil(img)).enhance(1.2)
    return _arr(ImageEnhance.Contrast(brighter).enhance(0.8), img)


def screenshot(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A screenshot-like chain: rescale by U[0.75, 1.3], light unsharp mask, JPEG 80 (size changes)."""
    from PIL import ImageFilter

    img = _check(image)
    scaled = _scaled(img, float(rng.uniform(0.75, 1.3)))
    sharp = _arr(_pil(scaled).filter(ImageFilter.UnsharpMask(radius=1, percent=50, threshold=0)), img)
    return _jpeg(sharp, 80)


def _regenerate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return regenerate(_check(image), rng)


def _none(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.array(_check(image))


def _build() -> dict[str, Attack]:
    table: dict[str, Attack] = {"none": _none}
    for q in (90, 70, 50, 30):
        table[f"jpeg{q}"] = _jpeg_attack(q)
    for f in (0.5, 0.75, 1.25, 1.5):
        table[f"resize{f}"] = _resize_attack(f, restore=False)
    for f in (0.5, 0.75, 1.25, 1.5):
        table[f"resize{f}_restore"] = _resize_attack(f, restore=True)
    for a in (1, 5, 15, 30):
        table[f"rotate{a}"] = _rotate_attack(float(a), rescale=False)
    for a in (1, 5, 15, 30):
        table[f"rotate{a}_rescale"] = _rotate_attack(float(a), rescale=True)
    for p in (90, 75, 50, 25, 10):
        table[f"crop{p}"] = _crop_attack(p)
    table.update({"translate_fill": translate_fill, "translate_crop": translate_crop, "noise": noise,
                  "blur": blur, "brightness_contrast": brightness_contrast, "screenshot": screenshot,
                  "regenerate": _regenerate})
    return table


ATTACKS: dict[str, Attack] = _build()
#: The rotation/scale rows (issue 19's goal: ahead of every baseline there).
GEOMETRIC_ATTACKS: tuple[str, ...] = tuple(n for n in ATTACKS if n.startswith(("resize", "rotate", "screenshot")))


def attack_names() -> list[str]:
    """Every attack's name, in the suite's order."""
    return list(ATTACKS)


def run_attack(name: str, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply the named attack; an unknown name is an AttackError listing the known ones."""
    try:
        attack = ATTACKS[name]
    except KeyError:
        raise AttackError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}") from None
    return attack(image, rng)
