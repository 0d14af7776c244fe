"""Copies of a printed original, as a counterfeiter would make them (for testing the verifiers).

Each attack starts from the printed original sheet (the counterfeiter holds the item), scans it, estimates
what was printed and prints that again; the verifier's phone then captures the copy through the same
channel as an original. Three attacks, from weakest to strongest:

- `photocopy`: scan at the printer's resolution with an unaligned sampling grid, binarise globally,
  print the binary image again (one more dot-gain blur);
- `hq_reprint`: scan at high resolution, decode and rectify the QR like a verifier does, estimate each
  CDP cell by a local threshold at cell resolution, re-render the code with the estimate, print;
- `ml_reprint`: like `hq_reprint`, with a `TemplateEstimator` (logistic regression on a window of cells)
  trained on pairs (scan, true pattern) that the counterfeiter makes with their OWN key and printer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sampan.qr.align import Aligned, align
from sampan.qr.cdp import CdpError, CdpLayout, cdp_pattern, render_digital
from sampan.qr.channel import DEVICES, PRINTERS, PrintCaptureChannel, PrinterProfile

__all__ = ["COPY_KINDS", "attacker_channel", "photocopy", "hq_reprint", "ml_reprint", "TemplateEstimator",
           "train_estimator", "make_copy"]

COPY_KINDS = ("photocopy", "hq_reprint", "ml_reprint")


def attacker_channel(printer: PrinterProfile | None = None) -> PrintCaptureChannel:
    """The counterfeiter's own printer and flatbed scanner."""
    return PrintCaptureChannel(printer=printer or PRINTERS["attacker-laser"], device=DEVICES["scanner"])


def photocopy(sheet: np.ndarray, rng: np.random.Generator, *, printer: PrinterProfile | None = None,
              scan_blur: float = 0.6, noise: float = 0.02) -> np.ndarray:
    """A photocopy of `sheet`: blurred scan sampled once per dot at a random offset, Otsu-binarised, printed."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    prn = printer or PRINTERS["attacker-laser"]
    k = prn.oversample
    side = sheet.shape[0] // k
    blurred = gaussian_filter(sheet, scan_blur * k)
    off = rng.uniform(0.0, 1.0, 2)
    grid = np.arange(side) + 0.5
    yy, xx = np.meshgrid(grid + off[1] - 0.5, grid + off[0] - 0.5, indexing="ij")
    scan = map_coordinates(blurred, [yy * k - 0.5, xx * k - 0.5], order=1, mode="nearest")
    scan = scan + noise * rng.standard_normal(scan.shape)
    ink = scan < _otsu(scan)
    return PrintCaptureChannel(printer=prn).print_sheet(ink, rng)


def _otsu(values: np.ndarray) -> float:
    """Otsu's global threshold of `values`."""
    hist, edges = np.histogram(values, bins=128)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
    m1 = ((hist * mids).sum() - np.cumsum(hist * mids)) / np.maximum(w1, 1)
    return float(mids[int(np.argmax(w0 * w1 * (m0 - m1) ** 2))])


def _scan_aligned(sheet: np.ndarray, rng: np.random.Generator, scan: PrintCaptureChannel,
                  layout: CdpLayout | None) -> Aligned:
    """The counterfeiter's rectified scan of `sheet` (they decode and align like any verifier)."""
    return align(scan.capture(sheet, rng), layout)


def _reprint(aligned: Aligned, estimate: np.ndarray, rng: np.random.Generator,
             scan: PrintCaptureChannel) -> np.ndarray:
    """Re-render the decoded code with the estimated pattern and print it on the counterfeiter's printer."""
    return PrintCaptureChannel(printer=scan.printer).print_sheet(
        render_digital(aligned.text, aligned.layout, estimate), rng)


def hq_reprint(sheet: np.ndarray, rng: np.random.Generator, *, scan: PrintCaptureChannel | None = None,
               layout: CdpLayout | None = None, window: float = 2.0) -> np.ndarray:
    """Scan, rectify, threshold each cell against its local mean (Gaussian `window` cells), reprint."""
    from scipy.ndimage import gaussian_filter

    scan = scan or attacker_channel()
    aligned = _scan_aligned(sheet, rng, scan, layout)
    cells = aligned.cells
    return _reprint(aligned, cells < gaussian_filter(cells, window), rng, scan)


def _windows(cells: np.ndarray, radius: int) -> np.ndarray:
    """Each cell's (2r+1)^2 neighbourhood (edge-padded), high-passed, one row per cell, plus a bias column."""
    from scipy.ndimage import gaussian_filter

    hp = cells - gaussian_filter(cells, 3.0)
    padded = np.pad(hp, radius, mode="edge")
    n = cells.shape[0]
    cols = [padded[dy:dy + n, dx:dx + n].ravel() for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)]
    return np.column_stack([*cols, np.ones(n * n)])


@dataclass
class TemplateEstimator:
    """Per-cell logistic regression on a neighbourhood window: P(ink | scan) learned from known patterns."""

    radius: int = 2
    l2: float = 1e-3
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, scans: list[Aligned], patterns: list[np.ndarray], iters: int = 15) -> TemplateEstimator:
        """Newton (IRLS) steps on the pooled cells of `scans` with their true `patterns`."""
        if not scans or len(scans) != len(patterns):
            raise CdpError("fields 'scans' and 'patterns' must be non-empty and of equal length")
        x = np.vstack([_windows(s.cells, self.radius) for s in scans])
        y = np.concatenate([p.ravel().astype(float) for p in patterns])
        w = np.zeros(x.shape[1])
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(x @ w)))
            grad = x.T @ (p - y) + self.l2 * w
            hess = (x * (p * (1 - p))[:, None]).T @ x + self.l2 * np.eye(len(w))
            w = w - np.linalg.solve(hess, grad)
        self.weights = w
        return self

    def predict(self, scan: Aligned) -> np.ndarray:
        """The estimated bool pattern (True = ink) of a rectified scan."""
        if self.weights.size == 0:
            raise CdpError("TemplateEstimator: call fit() before predict()")
        n = scan.layout.size
        return (_windows(scan.cells, self.radius) @ self.weights > 0).reshape(n, n)


def train_estimator(text: str, layout: CdpLayout, rng: np.random.Generator, *, codes: int = 8,
                    scan: PrintCaptureChannel | None = None) -> TemplateEstimator:
    """The counterfeiter prints `codes` codes with their own random key, scans them and fits the estimator."""
    scan = scan or attacker_channel()
    own_key = rng.bytes(32)
    scans, patterns = [], []
    for i in range(codes):
        pattern = cdp_pattern(own_key, f"attacker-{i}", layout.size)
        sheet = scan.print_sheet(render_digital(text, layout, pattern), rng)
        scans.append(_scan_aligned(sheet, rng, scan, layout))
        patterns.append(pattern)
    return TemplateEstimator().fit(scans, patterns)


def ml_reprint(sheet: np.ndarray, rng: np.random.Generator, estimator: TemplateEstimator, *,
               scan: PrintCaptureChannel | None = None, layout: CdpLayout | None = None) -> np.ndarray:
    """Scan, rectify, estimate the pattern with the trained `estimator`, reprint."""
    scan = scan or attacker_channel()
    aligned = _scan_aligned(sheet, rng, scan, layout)
    return _reprint(aligned, estimator.predict(aligned), rng, scan)


def make_copy(kind: str, sheet: np.ndarray, rng: np.random.Generator, *,
              estimator: TemplateEstimator | None = None, layout: CdpLayout | None = None,
              printer: PrinterProfile | None = None) -> np.ndarray:
    """One copy of `sheet` of the named `kind` (see COPY_KINDS) on the counterfeiter's `printer`.

    ml_reprint needs an estimator trained on the same printer (`train_estimator(..., scan=attacker_channel(p))`).
    """
    if kind == "photocopy":
        return photocopy(sheet, rng, printer=printer)
    if kind == "hq_reprint":
        return hq_reprint(sheet, rng, scan=attacker_channel(printer), layout=layout)
    if kind == "ml_reprint":
        if estimator is None:
            raise CdpError("field 'estimator': ml_reprint needs a TemplateEstimator (see train_estimator)")
        return ml_reprint(sheet, rng, estimator, scan=attacker_channel(printer), layout=layout)
    raise CdpError(f"field 'kind' must be one of {COPY_KINDS}, got {kind!r}")
