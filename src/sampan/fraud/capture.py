"""The phone-capture chain applied to real and fake documents alike (issue 18): warp, resize, blur, noise, JPEG.

A loan applicant photographs or scans the document, so a detector never sees the rendered pixels: a mild
perspective warp (the manipulation mask is warped by the same transform), a down-scale (and back), a lens blur,
sensor noise, a brightness change and JPEG compression at a quality of 30-100. `CaptureProfile` fixes the ranges of
one device; `DEVICES` holds five presets from a flatbed scanner to a forwarded messaging-app photo.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np

from sampan.fraud.documents import DocImage, FraudDataError

__all__ = ["CaptureProfile", "DEVICES", "capture", "perspective_coefficients"]


@dataclass(frozen=True)
class CaptureProfile:
    """One capture device: each field a (low, high) range drawn uniformly per image, except perspective."""

    name: str
    jpeg_quality: tuple[int, int] = (75, 95)  # within 30-100
    resize: tuple[float, float] = (1.0, 1.0)  # scale factor within (0, 1]; 1.0 = no resampling
    blur_sigma: tuple[float, float] = (0.0, 0.0)  # Gaussian blur radius in pixels
    perspective: float = 0.0  # largest corner shift as a fraction of the side (0 = flat scan), at most 0.2
    noise_std: tuple[float, float] = (0.0, 0.0)  # sensor noise in grey levels
    brightness: tuple[float, float] = (1.0, 1.0)  # multiplicative brightness
    resize_back: bool = True  # False keeps the down-scaled size (the mask is resized with the image)

    def __post_init__(self) -> None:
        """Refuse ranges outside what the chain supports, naming the field."""
        lo, hi = self.jpeg_quality
        if not 30 <= lo <= hi <= 100:
            raise FraudDataError(f"capture profile {self.name!r}: jpeg_quality {self.jpeg_quality} must lie within "
                                 "30-100 with low <= high (field 'jpeg_quality')")
        checks = {"resize": (self.resize, 0.05, 1.0), "blur_sigma": (self.blur_sigma, 0.0, 5.0),
                  "noise_std": (self.noise_std, 0.0, 40.0), "brightness": (self.brightness, 0.3, 2.0)}
        for field, ((a, b), low, high) in checks.items():
            if not low <= a <= b <= high:
                raise FraudDataError(f"capture profile {self.name!r}: {field} ({a}, {b}) must lie within "
                                     f"{low}-{high} with low <= high (field {field!r})")
        if not 0.0 <= self.perspective <= 0.2:
            raise FraudDataError(f"capture profile {self.name!r}: perspective {self.perspective} must lie within "
                                 "0-0.2 (field 'perspective')")


DEVICES: dict[str, CaptureProfile] = {
    p.name: p
    for p in (
        CaptureProfile("flatbed_scanner", jpeg_quality=(88, 100), blur_sigma=(0.0, 0.3), noise_std=(0.3, 1.0),
                       brightness=(0.98, 1.04)),
        CaptureProfile("flagship_phone", jpeg_quality=(75, 95), resize=(0.8, 1.0), blur_sigma=(0.2, 0.6),
                       perspective=0.03, noise_std=(1.0, 2.5), brightness=(0.9, 1.08)),
        CaptureProfile("budget_phone", jpeg_quality=(50, 80), resize=(0.6, 0.9), blur_sigma=(0.4, 1.0),
                       perspective=0.06, noise_std=(2.5, 5.0), brightness=(0.8, 1.1)),
        CaptureProfile("messaging_app", jpeg_quality=(30, 60), resize=(0.5, 0.75), blur_sigma=(0.3, 0.8),
                       perspective=0.05, noise_std=(1.5, 4.0), brightness=(0.85, 1.1)),
        CaptureProfile("webcam", jpeg_quality=(60, 85), resize=(0.5, 0.7), blur_sigma=(0.6, 1.2),
                       perspective=0.08, noise_std=(3.0, 6.0), brightness=(0.75, 1.0)),
    )
}


def perspective_coefficients(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """The 8 coefficients Pillow's PERSPECTIVE transform needs to map output corners `dst` back to input `src`."""
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.asarray(a, np.float64), np.asarray(src, np.float64).reshape(8))
    return tuple(float(c) for c in coeffs)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def capture(doc: DocImage, profile: CaptureProfile, rng: np.random.Generator) -> DocImage:
    """The document as one device captures it: the same geometric changes to image and mask; device recorded."""
    from PIL import Image, ImageFilter

    img = Image.fromarray(doc.image)
    mask = Image.fromarray(doc.mask.astype(np.uint8) * 255)
    w, h = img.size
    if profile.perspective > 0:
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        moved = corners + rng.uniform(-1, 1, (4, 2)) * profile.perspective * np.array([w, h])
        coeffs = perspective_coefficients(corners, moved)
        table = tuple(int(v) for v in rng.integers(30, 90, 3))
        img = img.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR,
                            fillcolor=table)
        mask = mask.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.NEAREST, fillcolor=0)
    scale = rng.uniform(*profile.resize)
    if scale < 0.999:
        small = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
        img = img.resize(small, Image.Resampling.BILINEAR)
        mask = mask.resize(small, Image.Resampling.NEAREST)
        if profile.resize_back:
            img = img.resize((w, h), Image.Resampling.BILINEAR)
            mask = mask.resize((w, h), Image.Resampling.NEAREST)
    sigma = rng.uniform(*profile.blur_sigma)
    if sigma > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(radius=sigma))
    arr = np.asarray(img).astype(np.float32) * rng.uniform(*profile.brightness)
    noise = rng.uniform(*profile.noise_std)
    if noise > 0:
        arr += rng.normal(0.0, noise, arr.shape).astype(np.float32)
    out = _jpeg(np.clip(np.rint(arr), 0, 255).astype(np.uint8), int(rng.integers(profile.jpeg_quality[0],
                                                                                  profile.jpeg_quality[1] + 1)))
    return dataclasses.replace(doc, image=out, mask=np.asarray(mask) > 127, device=profile.name)
