"""Test images for the watermark benchmark (issue 19): 512 x 512 RGB, provenance stated per image.

Two sources, nothing downloaded:
- scikit-image's data module: the images that ship INSIDE the scikit-image wheel (skimage/data/*.png|jpg; the
  package's README.txt gives each one's origin and licence: NASA, public-domain and CC0 photographs, and images
  contributed by scikit-image developers under its licence). Centre-cropped to a square, resized to 512 x 512
  (Pillow bicubic); gray images are copied into R, G and B.
- locally generated images (`generated_image`): a random smooth colour field, random ellipses and rectangles with
  soft edges and a fractal-noise texture, made by NumPy from a seed on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDE = 512

# Photographs and scans first (the natural-image cases), then texture images; all ship inside scikit-image.
SKIMAGE_NAMES: tuple[str, ...] = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
    "coins", "moon", "clock", "cell", "brick", "grass", "gravel", "motorcycle",
)


@dataclass(frozen=True)
class TestImage:
    name: str
    source: str  # "scikit-image data (shipped in the package)" or "generated locally (seed N)"
    pixels: np.ndarray  # uint8 512 x 512 x 3


def _square_512(img: np.ndarray) -> np.ndarray:
    from PIL import Image

    if img.dtype != np.uint8:
        img = np.clip(np.rint(img * (255.0 if img.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = img[y0:y0 + s, x0:x0 + s]
    if s != SIDE:
        sq = np.asarray(Image.fromarray(sq).resize((SIDE, SIDE), resample=Image.Resampling.BICUBIC))
    return np.ascontiguousarray(sq, dtype=np.uint8)


def skimage_image(name: str) -> TestImage:
    """One of scikit-image's shipped images as 512 x 512 RGB (needs scikit-image: the benchmark venv)."""
    from skimage import data  # type: ignore[import-not-found]

    raw = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return TestImage(name, "scikit-image data (shipped in the package)", _square_512(np.asarray(raw)))


def generated_image(seed: int, side: int = SIDE) -> TestImage:
    """A locally generated 'natural-like' image: smooth colours, soft-edged shapes, 1/f texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    # Smooth colour field: a few low-frequency cosines per channel.
    img = np.zeros((side, side, 3))
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(0.3, 3.0), rng.uniform(0.3, 3.0), rng.uniform(0, 2 * np.pi)
            img[:, :, c] += rng.uniform(15, 40) * np.cos(2 * np.pi * (fx * xx + fy * yy) + ph)
        img[:, :, c] += rng.uniform(80, 170)
    # Shapes with soft edges (objects with edges for the JND mask and the detector's sync to face).
    for _ in range(int(rng.integers(6, 14))):
        cx, cy = rng.uniform(0, 1, 2)
        rx, ry = rng.uniform(0.04, 0.25, 2)
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
            alpha = 1.0 / (1.0 + np.exp(np.minimum((d - 1.0) * 12, 50.0)))
        else:
            d = np.maximum(np.abs(xx - cx) / rx, np.abs(yy - cy) / ry)
            alpha = 1.0 / (1.0 + np.exp(np.minimum((d - 1.0) * 40, 50.0)))
        img = img * (1 - alpha[:, :, None]) + colour * alpha[:, :, None]
    # 1/f texture (as in natural images), strength drawn per image.
    spec = (rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side)))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side)))
    f[0, 0] = 1.0
    tex = np.real(np.fft.ifft2(spec / f))
    tex = tex / tex.std() * rng.uniform(4, 14)
    img += tex[:, :, None]
    pixels = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return TestImage(f"generated{seed}", f"generated locally (seed {seed})", pixels)


def test_images(n_skimage: int, n_generated: int, seed: int = 0) -> list[TestImage]:
    """The first n_skimage shipped images (in SKIMAGE_NAMES order) and n_generated generated ones."""
    if n_skimage > len(SKIMAGE_NAMES):
        raise ValueError(f"at most {len(SKIMAGE_NAMES)} scikit-image images, asked {n_skimage}")
    out = [skimage_image(n) for n in SKIMAGE_NAMES[:n_skimage]]
    out += [generated_image(seed * 1000 + i) for i in range(n_generated)]
    return out
