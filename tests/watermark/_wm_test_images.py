"""Procedural 512x512 test images made here (no downloaded data): provenance is this file.

Kinds: "natural" (coloured 1/f noise, like photo statistics), "smooth" (gradients and soft blobs),
"texture" (fine noise and stripes), "strokes" (text-like dark strokes on light paper), and "document"
(sampan.fraud.documents.render_document's business document, rescaled)."""

from __future__ import annotations

import io

import numpy as np

KINDS = ("natural", "smooth", "texture", "strokes", "document")


def _natural(rng: np.random.Generator, n: int) -> np.ndarray:
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]
    out = np.zeros((n, n, 3))
    base = rng.normal(size=(n, n))
    for c in range(3):
        noise = 0.7 * base + 0.3 * rng.normal(size=(n, n))
        x = np.real(np.fft.ifft2(np.fft.fft2(noise) / (np.hypot(fy, fx) + 1.0 / n)))
        out[..., c] = 128 + 45 * (x - x.mean()) / x.std()
    return out


def _smooth(rng: np.random.Generator, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    out = np.zeros((n, n, 3))
    for c in range(3):
        a, b = rng.uniform(-80, 80, 2)
        out[..., c] = 128 + a * (yy - 0.5) + b * (xx - 0.5)
        for _ in range(4):
            cy, cx, s, h = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(-50, 50)
            out[..., c] += h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return out


def _texture(rng: np.random.Generator, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    stripes = 40 * np.sin(2 * np.pi * (yy * rng.uniform(0.01, 0.05) + xx * rng.uniform(0.01, 0.05)))
    grain = rng.normal(0, 25, (n, n, 3))
    return 128 + stripes[..., None] + grain


def _strokes(rng: np.random.Generator, n: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (n, n), (245, 243, 236))
    draw = ImageDraw.Draw(img)
    for row in range(24, n - 24, 22):
        x = 20
        while x < n - 40:
            word = int(rng.integers(12, 60))
            for _ in range(int(rng.integers(2, 6))):
                x0 = x + rng.uniform(0, word)
                draw.line([(x0, row), (x0 + rng.uniform(-6, 6), row + 12)], fill=(30, 30, 40), width=2)
            x += word + 10
    return np.asarray(img, dtype=float)


def _document(rng: np.random.Generator, n: int) -> np.ndarray:
    from PIL import Image

    from sampan.fraud.documents import render_document

    doc = render_document("business", rng, size=(512, 512))
    if doc.shape[0] != n:
        doc = np.asarray(Image.fromarray(doc).resize((n, n), Image.Resampling.BICUBIC))
    return doc.astype(float)


def make_image(kind: str, seed: int = 0, n: int = 512) -> np.ndarray:
    """A uint8 (n, n, 3) test image of `kind` (one of KINDS), reproducible from `seed`."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    maker = {"natural": _natural, "smooth": _smooth, "texture": _texture, "strokes": _strokes,
             "document": _document}[kind]
    return np.clip(np.rint(maker(rng, n)), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG round trip."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(image.ndim == 2 and "L" or "RGB"))


def rotate_rescale(image: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    """Pillow rotation about the centre (same canvas, black corners), then resize by `scale`."""
    from PIL import Image

    img = Image.fromarray(image).rotate(degrees, resample=Image.Resampling.BICUBIC)
    h, w = image.shape[:2]
    return np.asarray(img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC))


def translate(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift content by (dy, dx) with edge padding (a crop-and-pad translation)."""
    pad = ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0))) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    h, w = image.shape[:2]
    return padded[max(-dy, 0):max(-dy, 0) + h, max(-dx, 0):max(-dx, 0) + w].copy()
