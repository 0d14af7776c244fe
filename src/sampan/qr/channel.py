"""A seeded print-and-capture channel simulator for copy-detection experiments.

Print: the ink image is blurred (dot gain), thresholded against a random, spatially correlated threshold
(ink spreading that varies along the paper), given a per-dot ink density and a paper texture. Capture: the
printed sheet is seen through a perspective homography, camera blur, a lighting gradient with vignetting,
signal-dependent sensor noise and JPEG; stains and folds are optional physical distortions of the sheet.

Each capture device (phones, the attacker's scanner) is a `CaptureDevice` profile; a run is deterministic
given its seed. The figures measured with this simulator hold for the simulated channel only, not for real
printers and phones.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, replace

import numpy as np

from sampan.qr._homography import apply_homography, fit_homography
from sampan.qr.cdp import CdpConfigError, CdpError

__all__ = ["PrinterProfile", "CaptureDevice", "Distortions", "PrintCaptureChannel", "DEVICES", "PRINTERS",
           "rng_for"]

_BACKGROUND = 0.55  # reflectance of the table around the printed sheet


@dataclass(frozen=True)
class PrinterProfile:
    """A printer: simulation pixels per dot, dot gain (blur in dots), threshold and its jitter, ink, paper."""

    name: str = "office-laser"
    oversample: int = 2
    dot_gain_sigma: float = 0.55
    threshold: float = 0.45
    threshold_jitter: float = 0.10
    jitter_scale: float = 0.6
    ink_density: float = 0.92
    ink_noise: float = 0.05
    paper_noise: float = 0.025
    paper_scale: float = 1.2


@dataclass(frozen=True)
class CaptureDevice:
    """A camera or scanner: resolution (pixels per printer dot), blur, geometry, lighting, noise, JPEG."""

    name: str
    px_per_dot: float = 1.6
    blur_sigma: float = 0.7
    perspective: float = 0.02
    rotation_deg: float = 4.0
    lighting: float = 0.15
    vignetting: float = 0.10
    noise: float = 3.0
    jpeg_quality: int = 90
    exposure: float = 0.95


PRINTERS: dict[str, PrinterProfile] = {
    "office-laser": PrinterProfile(),
    "attacker-laser": PrinterProfile(name="attacker-laser", dot_gain_sigma=0.6, threshold=0.47),
    # a better press than the issuer's (sharper dots, steadier ink): the strongest counterfeiter modelled
    "attacker-hq": PrinterProfile(name="attacker-hq", dot_gain_sigma=0.4, threshold=0.5, threshold_jitter=0.06,
                                  ink_noise=0.03),
}

DEVICES: dict[str, CaptureDevice] = {
    "phone-a": CaptureDevice("phone-a", px_per_dot=1.6, blur_sigma=0.7, noise=3.0, jpeg_quality=90),
    "phone-b": CaptureDevice("phone-b", px_per_dot=1.4, blur_sigma=0.8, noise=4.0, jpeg_quality=85,
                             lighting=0.2),
    "phone-c": CaptureDevice("phone-c", px_per_dot=1.8, blur_sigma=0.9, noise=2.5, jpeg_quality=92,
                             perspective=0.03, vignetting=0.15),
    "scanner": CaptureDevice("scanner", px_per_dot=2.0, blur_sigma=0.5, perspective=0.0, rotation_deg=0.5,
                             lighting=0.02, vignetting=0.0, noise=1.5, jpeg_quality=98, exposure=0.98),
}


@dataclass(frozen=True)
class Distortions:
    """Optional damage to the printed sheet: coffee-like stains and a fold (crease and shading)."""

    stains: int = 0
    stain_strength: float = 0.35
    fold: bool = False
    fold_strength: float = 0.12


def rng_for(seed: int | None) -> np.random.Generator:
    """A seeded generator for reproducible experiments, else one seeded from `secrets`."""
    return np.random.default_rng(secrets.randbits(128) if seed is None else seed)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Unit-variance Gaussian noise low-passed at `scale` pixels (spatially correlated texture)."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), scale) if scale > 0 else rng.standard_normal(shape)
    return field / max(float(field.std()), 1e-12)


@dataclass(frozen=True)
class PrintCaptureChannel:
    """Print an ink image on `printer`, damage the sheet with `distortions`, capture it with `device`."""

    printer: PrinterProfile = PrinterProfile()
    device: CaptureDevice = DEVICES["phone-a"]
    distortions: Distortions = Distortions()

    def with_device(self, device: CaptureDevice | str) -> PrintCaptureChannel:
        """The same printer and distortions seen by another capture device (a profile or a DEVICES name)."""
        if isinstance(device, str):
            if device not in DEVICES:
                raise CdpConfigError(f"field 'device' must be one of {sorted(DEVICES)}, got {device!r}")
            device = DEVICES[device]
        return replace(self, device=device)

    def print_sheet(self, ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Reflectance (float, 0 = black .. 1 = paper) of the printed `ink`, `oversample` pixels per dot."""
        from scipy.ndimage import gaussian_filter

        if not isinstance(ink, np.ndarray) or ink.ndim != 2 or min(ink.shape) < 16:
            raise CdpError("field 'ink' must be a 2-D bool array of at least 16x16 printer dots")
        p = self.printer
        k = p.oversample
        up = np.kron(ink.astype(float), np.ones((k, k)))
        spread = gaussian_filter(up, p.dot_gain_sigma * k)
        thresh = p.threshold + p.threshold_jitter * _smooth_noise(rng, up.shape, p.jitter_scale * k)
        inked = gaussian_filter((spread > thresh).astype(float), 0.35 * k)  # soft toner edge
        density = np.clip(p.ink_density + p.ink_noise * _smooth_noise(rng, up.shape, 0.5 * k), 0.0, 1.0)
        paper = 1.0 - p.paper_noise * np.abs(_smooth_noise(rng, up.shape, p.paper_scale * k))
        sheet = paper * (1.0 - density * inked)
        return self._damage(sheet, rng)

    def _damage(self, sheet: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Stains (soft dark ellipses with a darker rim) and a fold (crease line plus shading on one side)."""
        from scipy.ndimage import gaussian_filter

        d = self.distortions
        if d.stains <= 0 and not d.fold:
            return sheet
        h, w = sheet.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(float)
        for _ in range(d.stains):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(0.05, 0.2) * h, rng.uniform(0.05, 0.2) * w
            r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
            body = gaussian_filter((r < 1.0).astype(float), 2.0)
            rim = np.exp(-((r - 1.0) / 0.06) ** 2)
            sheet = sheet * (1.0 - d.stain_strength * (0.5 * body + 0.5 * rim))
        if d.fold:
            angle = rng.uniform(0, np.pi)
            nx, ny = np.cos(angle), np.sin(angle)
            dist = (xx - rng.uniform(0.3, 0.7) * w) * nx + (yy - rng.uniform(0.3, 0.7) * h) * ny
            crease = np.exp(-(dist / 1.5) ** 2)
            shade = np.where(dist > 0, 1.0 - d.fold_strength * np.exp(-dist / (0.3 * max(h, w))), 1.0)
            sheet = sheet * shade * (1.0 - 0.5 * crease)
        return sheet

    def capture(self, sheet: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The uint8 grey photo of a printed `sheet` (from `print_sheet`) taken with `device`."""
        from scipy.ndimage import gaussian_filter, map_coordinates

        dev = self.device
        k = self.printer.oversample
        side_dots = sheet.shape[1] / k, sheet.shape[0] / k
        big = max(side_dots) * dev.px_per_dot
        out = int(np.ceil(big * (1.25 + 2 * dev.perspective))) + 8
        theta = np.deg2rad(rng.uniform(-dev.rotation_deg, dev.rotation_deg))
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        src = np.array([[0, 0], [side_dots[0], 0], [side_dots[0], side_dots[1]], [0, side_dots[1]]], dtype=float)
        centred = (src - np.array(side_dots) / 2) * dev.px_per_dot
        dst = centred @ rot.T + out / 2 + rng.uniform(-3, 3, 2)
        dst = dst + rng.normal(0.0, dev.perspective * big, dst.shape)
        h_inv = fit_homography(dst, src)  # capture pixel -> printer dots
        yy, xx = np.mgrid[0:out, 0:out].astype(float) + 0.5
        u, v = apply_homography(h_inv, xx, yy)
        pre = gaussian_filter(sheet, max(0.5 * k / dev.px_per_dot - 0.3, 0.0))  # anti-alias before resampling
        img = map_coordinates(pre, [v * k - 0.5, u * k - 0.5], order=1, mode="constant", cval=_BACKGROUND)
        img = gaussian_filter(img, dev.blur_sigma)
        gx, gy = rng.normal(0.0, dev.lighting, 2)
        cx, cy = (xx - out / 2) / out, (yy - out / 2) / out
        light = dev.exposure * (1.0 + gx * cx + gy * cy) * (1.0 - dev.vignetting * 2 * (cx ** 2 + cy ** 2))
        val = 255.0 * np.clip(img * light, 0.0, 1.0)
        val = val + rng.standard_normal(val.shape) * dev.noise * np.sqrt(0.3 + val / 255.0)
        return _jpeg(np.clip(np.rint(val), 0, 255).astype(np.uint8), dev.jpeg_quality)

    def transmit(self, ink: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Print `ink` then capture it: the whole channel in one call, deterministic given `seed`."""
        rng = rng_for(seed)
        return self.capture(self.print_sheet(ink, rng), rng)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through Pillow's JPEG encoder at `quality` (100 or more: no compression)."""
    if quality >= 100:
        return img
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"), dtype=np.uint8)
