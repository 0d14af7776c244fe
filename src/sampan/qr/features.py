"""Device-side features of a capture: computed on the scanning phone, with no key.

The device decodes and rectifies the code (`align`) and sends one vector: `N_STATS` key-free statistics
of the CDP square (ink coverage, contrast, fine-detail energy, blur, grey-level shape, QR edge sharpness),
which a one-class model trained on originals scores, followed by the CDP cells, high-passed and
standardised (zero mean, unit variance), which the holders of the issuer's CDP key (the verification sites,
never the device) correlate with the keyed template. The correlation is linear in the cell vector, so the
sites can compute it on additive shares of the vector without any one of them seeing the capture.
"""

from __future__ import annotations

import numpy as np

from sampan.qr.align import Aligned, align
from sampan.qr.cdp import CdpError, CdpLayout

__all__ = ["N_STATS", "STAT_NAMES", "extract_features", "features_of", "split_features", "standard_cells"]

STAT_NAMES = ("coverage", "contrast", "detail", "lag1", "lag2", "hf_energy", "mid_grey", "kurtosis",
              "edge_sharpness", "black_ratio")
N_STATS = len(STAT_NAMES)


def standard_cells(cells: np.ndarray) -> np.ndarray:
    """Cells high-passed (lighting and stains removed) and standardised, flattened."""
    from scipy.ndimage import gaussian_filter

    hp = cells - gaussian_filter(cells, 3.0)
    return ((hp - hp.mean()) / max(float(hp.std()), 1e-9)).ravel()


def _lag_corr(hp: np.ndarray, lag: int) -> float:
    """Mean horizontal and vertical autocorrelation at `lag` dots (higher = blurrier)."""
    v = float((hp * hp).mean()) + 1e-12
    return float(((hp[:, lag:] * hp[:, :-lag]).mean() + (hp[lag:, :] * hp[:-lag, :]).mean()) / (2 * v))


def _edge_sharpness(a: Aligned) -> float:
    """Steepest step across module boundaries outside the CDP, per unit of contrast (blur of the print+capture)."""
    lay = a.layout
    dpm, b0 = lay.dots_per_module, lay.border * lay.dots_per_module
    sym = a.image[b0:b0 + lay.modules * dpm, b0:b0 + lay.modules * dpm]
    grad = np.abs(np.diff(sym, axis=1))
    at_edges = grad[:, dpm - 1::dpm]  # differences straddling a module boundary
    strong = at_edges[at_edges > 0.3]
    return float(strong.mean()) if strong.size else 0.0


def features_of(a: Aligned) -> np.ndarray:
    """The feature vector of an already rectified capture: N_STATS statistics, then the standardised cells."""
    from scipy.ndimage import gaussian_filter

    cdp = a.cdp
    hp = cdp - gaussian_filter(cdp, 2.0)
    spec = np.abs(np.fft.fft2(hp)) ** 2
    f = np.fft.fftfreq(cdp.shape[0])
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    z = (cdp - cdp.mean()) / max(float(cdp.std()), 1e-9)
    stats = np.array([
        float(cdp.mean()),
        float(cdp.std()),
        float(hp.std()),
        _lag_corr(hp, 1),
        _lag_corr(hp, 2),
        float(spec[radius > 0.25].sum() / max(spec.sum(), 1e-12)),
        float(((cdp > 0.3) & (cdp < 0.7)).mean()),
        float((z ** 4).mean()),
        _edge_sharpness(a),
        a.black / max(a.white, 1.0),
    ])
    return np.concatenate([stats, standard_cells(a.cells)])


def extract_features(capture: np.ndarray, layout: CdpLayout | None = None) -> np.ndarray:
    """Decode, rectify and describe `capture` on the device; raises CdpError if no code is readable."""
    return features_of(align(capture, layout))


def split_features(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(key-free statistics, standardised cells) of a feature vector."""
    if features.ndim != 1 or features.size <= N_STATS:
        raise CdpError(f"field 'features' must be a 1-D vector longer than {N_STATS}")
    return features[:N_STATS], features[N_STATS:]
