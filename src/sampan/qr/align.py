"""Locate the QR in a capture, rectify it to the printer-dot grid and crop the CDP square (no key needed).

zxing-cpp decodes the code and gives the symbol's four corners; a first homography maps the dot grid onto
the capture. It is then refined against the QR itself: the decoded text is re-rendered (the verifier and the
device both can), and the shift of eight patches around the centre (the CDP square is left out, its
content is secret) is measured by phase correlation with sub-dot precision; a least-squares homography
through the shifted patch centres replaces the first one. Lighting is removed with planes fitted to the
known dark and light modules, so 0 is full ink and 1 is paper everywhere on the symbol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sampan.qr._homography import apply_homography, fit_homography
from sampan.qr.cdp import CdpError, CdpLayout, layout_for, render_digital

__all__ = ["Aligned", "align", "locate"]

_SAMPLES = 2  # rectified samples per printer dot, averaged back to one per dot


@dataclass(frozen=True)
class Aligned:
    """A rectified capture: decoded text, layout, normalised image (one sample per dot), CDP crop, levels."""

    text: str
    layout: CdpLayout
    image: np.ndarray
    cdp: np.ndarray
    black: float
    white: float
    homography: np.ndarray

    @property
    def cells(self) -> np.ndarray:
        """The CDP square averaged to one value per pattern cell (size x size)."""
        c, n = self.layout.cell_dots, self.layout.size
        return self.cdp.reshape(n, c, n, c).mean(axis=(1, 3))


def locate(capture: np.ndarray) -> tuple[str, np.ndarray]:
    """Decode the QR in `capture`: its text and its corners (tl, tr, br, bl) as a 4x2 array of pixels."""
    import zxingcpp

    if not isinstance(capture, np.ndarray) or capture.dtype != np.uint8 or capture.ndim != 2:
        raise CdpError("field 'capture' must be a 2-D uint8 grey image")
    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    found = [r for r in zxingcpp.read_barcodes(capture, formats=qr_only) if r.valid]
    if not found:
        raise CdpError("field 'capture': no readable QR code found")
    pos = found[0].position
    corners = [pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left]
    return found[0].text, np.array([[p.x, p.y] for p in corners], dtype=float)


def _sample(capture: np.ndarray, h: np.ndarray, side: int, samples: int) -> np.ndarray:
    """The capture seen on the dot grid through H (dots -> pixels), `samples` per dot, averaged per dot."""
    from scipy.ndimage import map_coordinates

    grid = (np.arange(side * samples) + 0.5) / samples
    xx, yy = np.meshgrid(grid, grid)
    u, v = apply_homography(h, xx, yy)
    img = map_coordinates(capture.astype(float), [v - 0.5, u - 0.5], order=1, mode="nearest")
    return img.reshape(side, samples, side, samples).mean(axis=(1, 3))


def _shift(moving: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(dx, dy) such that moving(p) ~ ref(p - d): phase correlation with a parabolic sub-pixel peak."""
    win = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1]))
    fa = np.fft.fft2((moving - moving.mean()) * win)
    fb = np.fft.fft2((ref - ref.mean()) * win)
    cross = fa * np.conj(fb)
    corr = np.real(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)))
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    out = []
    for axis, i in ((1, ix), (0, iy)):
        n = corr.shape[axis]
        line = corr[iy, :] if axis == 1 else corr[:, ix]
        a, b, c = line[(i - 1) % n], line[i], line[(i + 1) % n]
        den = a - 2 * b + c
        frac = 0.5 * (a - c) / den if abs(den) > 1e-12 else 0.0
        out.append(((i + frac + n / 2) % n) - n / 2)
    return np.array(out)


def _levels(image: np.ndarray, modules: np.ndarray, layout: CdpLayout) -> tuple[np.ndarray, np.ndarray]:
    """Planes a + b x + c y fitted to the centres of known light and dark modules (the CDP square left out)."""
    dpm, b = layout.dots_per_module, layout.border
    n = layout.modules
    lo = (n - layout.cdp_modules) // 2
    hi = lo + layout.cdp_modules - 1
    idx = np.arange(n)
    my, mx = np.meshgrid(idx, idx, indexing="ij")
    keep = ~((my >= lo) & (my <= hi) & (mx >= lo) & (mx <= hi))
    centre = lambda m: (b + m) * dpm + dpm // 2  # noqa: E731 - dot index of a module's centre
    planes = []
    for want in (True, False):
        sel = keep & (modules == want)
        ys, xs = centre(my[sel]), centre(mx[sel])
        vals = image[ys, xs]
        a = np.stack([np.ones_like(vals), xs / image.shape[1], ys / image.shape[0]], axis=1)
        coef = np.linalg.lstsq(a, vals, rcond=None)[0]
        planes.append(coef)
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    fx, fy = xx / image.shape[1], yy / image.shape[0]
    black = planes[0][0] + planes[0][1] * fx + planes[0][2] * fy
    white = planes[1][0] + planes[1][1] * fx + planes[1][2] * fy
    return black, white


def _orient(capture: np.ndarray, sym: np.ndarray, corners: np.ndarray, ref: np.ndarray,
            layout: CdpLayout) -> np.ndarray:
    """The corner homography, or its mirror image when zxing read a mirrored code (the one matching the QR)."""
    best, best_fit = np.eye(3), -np.inf
    for order in ([0, 1, 2, 3], [0, 3, 2, 1]):  # zxing reports a mirrored code transposed
        h = fit_homography(sym, corners[order])
        rect = _sample(capture, h, layout.side_dots, 1)
        fit = float(np.corrcoef(rect.ravel(), ref.ravel())[0, 1])
        if fit > best_fit:
            best, best_fit = h, fit
        if fit > 0.6:
            break
    return best


def align(capture: np.ndarray, layout: CdpLayout | None = None, *, refine: int = 2) -> Aligned:
    """Decode, rectify and normalise `capture`; `layout=None` derives it from the decoded text (defaults)."""
    from scipy.ndimage import gaussian_filter

    text, corners = locate(capture)
    if layout is None:
        layout = layout_for(text)
    dpm, side = layout.dots_per_module, layout.side_dots
    b0, b1 = layout.border * dpm, (layout.border + layout.modules) * dpm
    sym = np.array([[b0, b0], [b1, b0], [b1, b1], [b0, b1]], dtype=float)
    ink = render_digital(text, layout, None)
    ref = gaussian_filter(1.0 - ink.astype(float), 0.8)
    h = _orient(capture, sym, corners, ref, layout)
    span = layout.modules * dpm
    half = int(span * 0.14)
    centres = [(b0 + fx * span, b0 + fy * span) for fy in (0.17, 0.5, 0.83) for fx in (0.17, 0.5, 0.83)
               if (fx, fy) != (0.5, 0.5)]
    for _ in range(refine):
        rect = _sample(capture, h, side, _SAMPLES)
        src, dst = [], []
        for cx, cy in centres:
            x0, y0 = int(round(cx)) - half, int(round(cy)) - half
            d = _shift(rect[y0:y0 + 2 * half, x0:x0 + 2 * half], ref[y0:y0 + 2 * half, x0:x0 + 2 * half])
            if np.all(np.abs(d) < half / 2):
                u, v = apply_homography(h, np.array(cx + d[0]), np.array(cy + d[1]))
                src.append((cx, cy))
                dst.append((float(u), float(v)))
        if len(src) < 4:
            break
        h = fit_homography(np.array(src), np.array(dst))
    rect = _sample(capture, h, side, _SAMPLES)
    modules = ink[dpm // 2::dpm, dpm // 2::dpm][layout.border:layout.border + layout.modules,
                                                   layout.border:layout.border + layout.modules]
    black, white = _levels(rect, modules, layout)
    norm = (rect - black) / np.maximum(white - black, 1.0)
    o, n = layout.cdp_origin_dots, layout.cdp_dots
    return Aligned(text=text, layout=layout, image=norm, cdp=norm[o:o + n, o:o + n],
                   black=float(black.mean()), white=float(white.mean()), homography=h)
