"""Drawing primitives for the procedural documents: guilloche, a face-like portrait, a logo, a seal, print noise.

Kept apart from `documents` so the layout code reads as a layout. Pillow is imported inside the functions that need
it (the caller passes an `ImageDraw.ImageDraw`), so importing this module stays light.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

__all__ = [
    "Box", "Color", "random_tint", "darker", "guilloche", "portrait", "logo", "seal", "signature", "print_noise",
    "random_name", "random_digits", "font",
]

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end exclusive
Color = tuple[int, int, int]

_FIRST = ("WONG", "CHAN", "LEUNG", "LAU", "CHEUNG", "HO", "NG", "LI", "TANG", "YEUNG", "SMITH", "GARCIA", "KHAN",
          "MULLER", "SATO", "NGUYEN", "PATEL", "SILVA", "IVANOV", "OKAFOR")
_GIVEN = ("KA MAN", "SIU WAI", "MEI LING", "CHI KEUNG", "ANNA", "DAVID", "MARIA", "JOHN", "PRIYA", "YUKI", "LEON",
          "FATIMA", "OMAR", "HANNAH", "WEI", "SOPHIE", "RAJ", "ELENA", "TOMAS", "AMARA")


def font(size_px: float) -> Any:
    """Pillow's bundled default font at a pixel size (no font download)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=max(6, int(size_px)))


def _rgb(values: np.ndarray) -> Color:
    """Three numbers as an RGB tuple clipped to 0-255."""
    r, g, b = (int(np.clip(v, 0, 255)) for v in values)
    return (r, g, b)


def random_tint(rng: np.random.Generator, lightness: float = 0.9) -> Color:
    """A pale random colour: paper or card background."""
    hue = rng.uniform(0, 2 * np.pi)
    sat = rng.uniform(0.04, 0.14)
    return _rgb(np.array([lightness + sat * np.cos(hue + k * 2 * np.pi / 3) for k in range(3)]) * 255)


def darker(color: Color, factor: float) -> Color:
    """The colour scaled towards black (factor < 1)."""
    return _rgb(np.asarray(color, np.float64) * factor)


def guilloche(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator, color: Color, curves: int = 5) -> None:
    """Fine security line-work: hypotrochoid and wave curves whose parameters are drawn from the rng."""
    y0, x0, y1, x1 = box
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    ry, rx = (y1 - y0) / 2, (x1 - x0) / 2
    t = np.linspace(0, 2 * np.pi, 900)
    for _ in range(curves):
        big, small = rng.integers(5, 13), rng.integers(2, 5)
        d = rng.uniform(0.4, 1.2)
        xs = (big - small) * np.cos(small * t) + d * small * np.cos((big - small) * t)
        ys = (big - small) * np.sin(small * t) - d * small * np.sin((big - small) * t)
        scale = max(np.abs(xs).max(), np.abs(ys).max(), 1e-9)
        px = cx + xs / scale * rx * rng.uniform(0.6, 1.0)
        py = cy + ys / scale * ry * rng.uniform(0.6, 1.0)
        draw.line(list(zip(px.tolist(), py.tolist(), strict=True)), fill=color, width=1)
    u = np.linspace(x0, x1, 300)
    for _ in range(max(1, curves // 2)):
        amp, freq, phase = rng.uniform(0.05, 0.15) * (y1 - y0), rng.uniform(2, 6), rng.uniform(0, 2 * np.pi)
        base = rng.uniform(y0, y1)
        vy = base + amp * np.sin(freq * 2 * np.pi * (u - x0) / max(x1 - x0, 1) + phase)
        draw.line(list(zip(u.tolist(), vy.tolist(), strict=True)), fill=color, width=1)


def portrait(image: Image.Image, box: Box, rng: np.random.Generator) -> None:
    """A face-like passport photo (plain backdrop, shoulders, head, hair, eyes, nose, mouth) pasted into the box."""
    from PIL import Image as PILImage
    from PIL import ImageDraw as PILDraw

    by0, bx0, by1, bx1 = box
    photo = PILImage.new("RGB", (bx1 - bx0, by1 - by0))
    draw = PILDraw.Draw(photo)
    y0, x0, y1, x1 = 0, 0, by1 - by0, bx1 - bx0
    h, w = y1 - y0, x1 - x0
    backdrop = _rgb(rng.integers(170, 235, 3))
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=backdrop)
    skin = _rgb(np.array([224, 182, 150]) * rng.uniform(0.55, 1.05) + rng.integers(-12, 12, 3))
    cloth = _rgb(rng.integers(20, 160, 3))
    hair = _rgb(rng.integers(10, 90, 3))
    cx = x0 + w * rng.uniform(0.45, 0.55)
    draw.ellipse((x0 + w * 0.05, y0 + h * 0.72, x1 - w * 0.05, y1 + h * 0.35), fill=cloth)
    draw.rectangle((cx - w * 0.09, y0 + h * 0.55, cx + w * 0.09, y0 + h * 0.78), fill=darker(skin, 0.9))
    hw, hh = w * rng.uniform(0.26, 0.33), h * rng.uniform(0.27, 0.33)
    hy = y0 + h * 0.42
    draw.ellipse((cx - hw * 1.08, hy - hh * 1.12, cx + hw * 1.08, hy + hh * 0.45), fill=hair)
    draw.ellipse((cx - hw, hy - hh, cx + hw, hy + hh), fill=skin)
    draw.chord((cx - hw * 1.02, hy - hh * 1.1, cx + hw * 1.02, hy + hh * 0.2), 180, 360, fill=hair)
    ey = hy + hh * rng.uniform(0.0, 0.12)
    for side in (-1, 1):
        ex = cx + side * hw * 0.42
        draw.ellipse((ex - hw * 0.14, ey - hh * 0.07, ex + hw * 0.14, ey + hh * 0.07), fill=(245, 245, 240))
        draw.ellipse((ex - hw * 0.06, ey - hh * 0.06, ex + hw * 0.06, ey + hh * 0.06), fill=darker(hair, 0.8))
        draw.line((ex - hw * 0.18, ey - hh * 0.2, ex + hw * 0.18, ey - hh * 0.22), fill=hair, width=2)
    draw.line((cx, ey + hh * 0.1, cx - hw * 0.08, ey + hh * 0.4), fill=darker(skin, 0.7), width=1)
    my = hy + hh * 0.62
    draw.arc((cx - hw * 0.35, my - hh * 0.15, cx + hw * 0.35, my + hh * 0.12), 20, 160,
             fill=(150, 60, 60), width=2)
    image.paste(PILImage.fromarray(_photo_texture(np.asarray(photo), rng)), (bx0, by0))


def _photo_texture(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photographic look for the drawn face: a soft lighting gradient and smooth film grain."""
    from scipy.ndimage import gaussian_filter

    h, w = photo.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    light = 1.0 + rng.uniform(0.04, 0.12) * ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle))
    img = gaussian_filter(photo.astype(np.float32), sigma=(0.7, 0.7, 0)) * light[:, :, None]
    img += gaussian_filter(rng.normal(0, 1, (h, w, 1)).astype(np.float32), sigma=(1.0, 1.0, 0)) * 6.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def logo(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator, color: Color) -> None:
    """An issuer logo: a ring with two initials and a star of rays."""
    y0, x0, y1, x1 = box
    draw.ellipse((x0, y0, x1 - 1, y1 - 1), outline=color, width=max(1, (x1 - x0) // 12))
    cy, cx, r = (y0 + y1) / 2, (x0 + x1) / 2, (x1 - x0) / 2
    for k in range(int(rng.integers(5, 9))):
        a = k * 2 * np.pi / 7 + rng.uniform(0, 0.3)
        draw.line((cx, cy, cx + 0.7 * r * np.cos(a), cy + 0.7 * r * np.sin(a)), fill=color, width=1)
    letters = "".join(rng.choice(list(string.ascii_uppercase), 2))
    draw.text((cx, cy), letters, fill=darker(color, 0.6), font=font(r * 0.9), anchor="mm")


def seal(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    """A company seal (two rings, a star, a number) overlapped by a signature: the business 'photo region'."""
    y0, x0, y1, x1 = box
    ink = (int(rng.integers(150, 210)), int(rng.integers(20, 60)), int(rng.integers(30, 90)))
    size = min(y1 - y0, x1 - x0)
    sy, sx = y0 + (y1 - y0 - size) // 2, x0 + int((x1 - x0 - size) * rng.uniform(0.1, 0.9))
    draw.ellipse((sx, sy, sx + size - 1, sy + size - 1), outline=ink, width=2)
    draw.ellipse((sx + size * 0.15, sy + size * 0.15, sx + size * 0.85, sy + size * 0.85), outline=ink, width=1)
    draw.text((sx + size / 2, sy + size / 2), random_digits(rng, 4), fill=ink, font=font(size * 0.2), anchor="mm")
    signature(draw, box, rng)


def signature(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    """A pen signature: a sum of sines across the box."""
    y0, x0, y1, x1 = box
    t = np.linspace(0, 1, 200)
    freqs, phases = rng.uniform(1, 6, 3), rng.uniform(0, 2 * np.pi, 3)
    ys = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases, strict=True)) / 3
    xs = x0 + (x1 - x0) * (0.05 + 0.9 * t + 0.05 * np.sin(2 * np.pi * rng.uniform(5, 11) * t))
    py = y0 + (y1 - y0) * (0.55 + 0.3 * ys)
    draw.line(list(zip(xs.tolist(), py.tolist(), strict=True)), fill=(20, 30, int(rng.integers(60, 140))), width=1)


def print_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Print texture of a real document: ink spread (3-tap blur), paper grain and per-pixel noise, back to uint8."""
    img = image.astype(np.float32)
    spread = rng.uniform(0.15, 0.35)
    blurred = img.copy()
    blurred[1:-1] = (1 - spread) * img[1:-1] + spread / 2 * (img[:-2] + img[2:])
    blurred[:, 1:-1] = (1 - spread) * blurred[:, 1:-1] + spread / 2 * (blurred[:, :-2] + blurred[:, 2:])
    h, w = image.shape[:2]
    from scipy.ndimage import gaussian_filter

    grain = gaussian_filter(rng.normal(0.0, 1.0, (h, w)).astype(np.float32), sigma=2.0)
    blurred += grain[:, :, None] * (rng.uniform(1.0, 3.0) / max(float(grain.std()), 1e-6))
    blurred += rng.normal(0.0, rng.uniform(1.5, 3.5), img.shape).astype(np.float32)
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def random_name(rng: np.random.Generator) -> str:
    """A surname and given name in capitals (as on an ID card)."""
    return f"{rng.choice(_FIRST)} {rng.choice(_GIVEN)}"


def random_digits(rng: np.random.Generator, n: int) -> str:
    """n random decimal digits."""
    return "".join(str(int(d)) for d in rng.integers(0, 10, n))
