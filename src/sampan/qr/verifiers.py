"""Verifiers that tell an original print from a copy, and the figures that rate them.

Two verifiers, each scoring "higher = more like an original":

- `CorrelationVerifier`, held by the verification sites (they hold the issuer's CDP key): normalised
  correlation of the device's standardised cells with the keyed template (paper +1, ink -1), and the
  Hamming distance after binarising the cells at their local mean. A copy's estimate of the pattern is
  wrong in some cells and its extra print blurs the rest, so its correlation is lower.
- `OneClassModel`, trained on ORIGINALS only (no copies needed): a Gaussian model of the key-free
  statistics with a shrunk covariance; the score is minus the Mahalanobis distance.

Conventions (copy detection as the detector's task): P_fa = share of originals flagged as copies (the
threshold is set on original scores), P_miss = share of copies accepted as originals. Thresholds at a
P_fa below 1 / (number of original scores) cannot be read from the data; `threshold_at` then extrapolates
from a Gaussian fit of the original scores and says so (`method="gaussian"`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sampan.qr.cdp import CdpConfigError, CdpError, cdp_pattern
from sampan.qr.features import N_STATS, STAT_NAMES, split_features

_SHARPNESS = STAT_NAMES.index("edge_sharpness")

__all__ = ["CorrelationVerifier", "CalibratedCorrelation", "OneClassModel", "keyed_scores", "template_vector", "auc",
           "threshold_at", "p_miss_at", "rates"]


def template_vector(key: bytes, serial: str, n_cells: int) -> np.ndarray:
    """The standardised keyed template (paper +1, ink -1, then zero mean, unit variance), flattened.

    The correlation is `template_vector(...) @ cells / n_cells` for the device's standardised cells: linear
    in the cells, so sites holding additive shares of the cells can each compute their share of it.
    """
    size = int(round(math.sqrt(n_cells)))
    if size * size != n_cells:
        raise CdpError(f"field 'cells' must hold a square number of values, got {n_cells}")
    template = np.where(cdp_pattern(key, serial, size).ravel(), -1.0, 1.0)
    return (template - template.mean()) / max(float(template.std()), 1e-9)


def keyed_scores(cells: np.ndarray, key: bytes, serial: str) -> tuple[float, float]:
    """(normalised correlation, Hamming distance) of standardised `cells` with the keyed template of `serial`."""
    t = template_vector(key, serial, cells.size)
    x = (cells - cells.mean()) / max(float(cells.std()), 1e-9)
    corr = float((x * t).mean())
    hamming = float(((cells < 0) != (t < 0)).mean())
    return corr, hamming


@dataclass(frozen=True)
class CorrelationVerifier:
    """The keyed verifier of a site holding the issuer's CDP `key` (never given to devices)."""

    key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) < 16:
            raise CdpConfigError("field 'key' must be at least 16 bytes (the issuer's CDP key)")

    def score(self, features: np.ndarray, serial: str) -> float:
        """Normalised correlation of the capture's cells with `serial`'s template (about 0 for a wrong key)."""
        return keyed_scores(split_features(features)[1], self.key, serial)[0]

    def hamming(self, features: np.ndarray, serial: str) -> float:
        """Share of cells whose binarised value disagrees with the template (0.5 = unrelated)."""
        return keyed_scores(split_features(features)[1], self.key, serial)[1]


@dataclass
class CalibratedCorrelation:
    """The keyed correlation corrected for how sharp the capture is, fitted on originals only.

    A blurrier phone lowers every correlation, originals' included, so one threshold for all phones either
    rejects originals from blurry phones or accepts copies seen by sharp ones. The sharpness of the QR's
    own module edges (a fresh print in a copy too, so it measures the capture, not the copying) predicts
    the originals' correlation; the score is the standardised residual. A capture less sharp than any
    original seen in fitting (minus `margin`) is outside the calibration: `quality_ok` says "take it again"
    rather than "copy".
    """

    key: bytes
    margin: float = 0.03
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    resid_std: float = 1.0
    min_sharpness: float = 0.0

    def fit(self, originals: list[np.ndarray], serials: list[str]) -> CalibratedCorrelation:
        """Least-squares line corr ~ a + b * sharpness through the originals' captures."""
        if len(originals) < 3 or len(originals) != len(serials):
            raise CdpError("fields 'originals' and 'serials' need at least 3 captures of equal count")
        corr = np.array([CorrelationVerifier(self.key).score(f, s) for f, s in zip(originals, serials, strict=True)])
        sharp = np.array([f[_SHARPNESS] for f in originals])
        design = np.column_stack([np.ones_like(sharp), sharp])
        self.coef = np.linalg.lstsq(design, corr, rcond=None)[0]
        self.resid_std = max(float((corr - design @ self.coef).std(ddof=2 if len(corr) > 2 else 0)), 1e-6)
        self.min_sharpness = float(sharp.min())
        return self

    def quality_ok(self, features: np.ndarray) -> bool:
        """False when the capture is blurrier than the calibration covers (ask for another capture)."""
        return bool(features[_SHARPNESS] >= self.min_sharpness - self.margin)

    def score(self, features: np.ndarray, serial: str) -> float:
        """(correlation - expected correlation of an original this sharp) / residual spread of originals."""
        if self.coef.size == 0:
            raise CdpError("CalibratedCorrelation: call fit() on originals before score()")
        corr = CorrelationVerifier(self.key).score(features, serial)
        return float((corr - self.coef[0] - self.coef[1] * features[_SHARPNESS]) / self.resid_std)


@dataclass
class OneClassModel:
    """Gaussian one-class model of the key-free statistics, fitted on originals only."""

    shrinkage: float = 0.1
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    precision: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def fit(self, originals: np.ndarray) -> OneClassModel:
        """Fit on an (n, N_STATS) array of originals' statistics (or full feature vectors)."""
        x = self._stats(originals)
        if x.shape[0] < N_STATS + 2:
            raise CdpError(f"field 'originals': need at least {N_STATS + 2} originals, got {x.shape[0]}")
        self.mean = x.mean(axis=0)
        self.scale = np.maximum(x.std(axis=0), 1e-9)
        z = (x - self.mean) / self.scale
        cov = np.cov(z, rowvar=False)
        cov = (1 - self.shrinkage) * cov + self.shrinkage * np.eye(cov.shape[0])
        self.precision = np.linalg.inv(cov)
        return self

    @staticmethod
    def _stats(x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] < N_STATS:
            raise CdpError(f"field 'features' must have at least {N_STATS} columns ({', '.join(STAT_NAMES)})")
        return x[:, :N_STATS]

    def score(self, features: np.ndarray) -> np.ndarray:
        """Minus the Mahalanobis distance of each row (higher = more like the originals)."""
        if self.precision.size == 0:
            raise CdpError("OneClassModel: call fit() on originals before score()")
        z = (self._stats(features) - self.mean) / self.scale
        return -np.sqrt(np.einsum("ij,jk,ik->i", z, self.precision, z))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form (no pickle)."""
        return {"shrinkage": self.shrinkage, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "precision": self.precision.tolist(), "stats": list(STAT_NAMES)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> OneClassModel:
        """Rebuild from `to_dict`'s output; refuses a model made for other statistics."""
        if data.get("stats") != list(STAT_NAMES):
            raise CdpError("field 'stats': the one-class model was fitted on other features")
        return cls(shrinkage=float(data["shrinkage"]),  # type: ignore[arg-type]
                   mean=np.asarray(data["mean"], dtype=float), scale=np.asarray(data["scale"], dtype=float),
                   precision=np.asarray(data["precision"], dtype=float))


def auc(originals: np.ndarray, copies: np.ndarray) -> float:
    """P(score of a random original > score of a random copy), ties counted half (Mann-Whitney)."""
    from scipy.stats import rankdata

    o, c = np.asarray(originals, dtype=float), np.asarray(copies, dtype=float)
    ranks = rankdata(np.concatenate([o, c]))
    return float((ranks[: o.size].sum() - o.size * (o.size + 1) / 2) / (o.size * c.size))


def threshold_at(originals: np.ndarray, p_fa: float, method: str = "auto") -> tuple[float, str]:
    """(threshold, method): scores below it are flagged as copies, so a share `p_fa` of originals is.

    "empirical" reads the `p_fa` quantile of the original scores; "gaussian" extrapolates from their
    mean and standard deviation; "auto" uses empirical when n * p_fa >= 1, else gaussian.
    """
    from scipy.stats import norm

    o = np.asarray(originals, dtype=float)
    if not 0.0 < p_fa < 1.0 or o.size < 2:
        raise CdpError("fields 'p_fa' in (0, 1) and at least two original scores are needed")
    if method == "auto":
        method = "empirical" if o.size * p_fa >= 1.0 else "gaussian"
    if method == "empirical":
        return float(np.quantile(o, p_fa)), method
    if method == "gaussian":
        return float(o.mean() + norm.ppf(p_fa) * o.std(ddof=1)), method
    raise CdpError(f"field 'method' must be 'auto', 'empirical' or 'gaussian', got {method!r}")


def p_miss_at(originals: np.ndarray, copies: np.ndarray, p_fa: float, method: str = "auto") -> float:
    """Share of copies accepted (score >= the threshold that flags `p_fa` of originals)."""
    thr, _ = threshold_at(originals, p_fa, method)
    return float((np.asarray(copies, dtype=float) >= thr).mean())


def rates(originals: np.ndarray, copies: np.ndarray, p_fas: tuple[float, ...] = (0.01, 0.001)) -> dict[str, float]:
    """AUC and P_miss at each P_fa, as a flat dict for reports."""
    out = {"auc": auc(originals, copies)}
    for p in p_fas:
        out[f"p_miss@{p:g}"] = p_miss_at(originals, copies, p)
    return out
