"""Monitoring a served model (issue 13, item 9): score and feature drift (PSI), computed AT THE PARTY.

Bins are fixed at training and read from the registered artifact, never chosen by whoever asks: the score
bins are the training run's score bands (pooled holdout, released at training), else a fixed PD grid; a
feature's bins are the federation's scaler (`scaler.mean` + `scaler.scale` × a fixed z grid). The party bins
its own training rows (the reference) and its current population at those edges; PSI compares them.

What leaves the party is a `DriftRelease`: the binned counts of both populations and the PSI values computed
from them, nothing per row. Without DP it is revealed as it is (`DriftRelease.receipt` says so, field by
field). With ``noise_multiplier`` the counts [reference | current] are released through ONE Gaussian mechanism
(adding or removing one row, training or current, changes one count per histogram: L2 sensitivity
sqrt(number of histograms)), charged write-ahead to the party's own ledger before anything is computed from the
rows; PSI is post-processing of the noised counts. Holdout and current rows are inside the DP unit here.

What each role learns: whoever receives the release (the consortium's coordinator, a monitoring dashboard)
learns the counts and PSI values above, noised and charged under DP, exact and receipted otherwise; the party
learns nothing from anyone. `ScoreMonitor` is the serving-side version (`sampan serve`'s /v1/monitoring): the
bank observes the PDs it served and compares their distribution with the training reference.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import ConfigError
from sampan.files import atomic_write_bytes
from sampan.privacy.ledger import Budget, Ledger, PrivacyEvent
from sampan.privacy.mechanisms import GaussianMechanism

__all__ = ["DriftReference", "DriftRelease", "PD_GRID", "ScoreMonitor", "Z_GRID", "drift_release", "psi",
           "psi_status"]

Z_GRID = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)  # feature bins: scaler mean + scale x these (fixed at training)
PD_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # score bins when the training run recorded no score bands
PSI_FLOOR = 1e-4  # an empty bin counts as this proportion (PSI is infinite otherwise)
MIN_NOISE = 0.5


def psi(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two binned counts: sum (c - r) ln(c / r) over proportions."""
    r, c = np.maximum(np.asarray(reference, float), 0.0), np.maximum(np.asarray(current, float), 0.0)
    if r.sum() <= 0 or c.sum() <= 0:
        return math.nan
    r, c = np.maximum(r / r.sum(), PSI_FLOOR), np.maximum(c / c.sum(), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_status(value: float) -> str:
    """The usual credit-risk reading: < 0.1 stable, 0.1-0.25 watch, > 0.25 investigate."""
    if not math.isfinite(value):
        return "not measurable"
    return "stable" if value < 0.1 else "watch" if value <= 0.25 else "investigate"


def _bin(values: np.ndarray, inner_edges: Sequence[float]) -> np.ndarray:
    """Counts per bin; bins are (-inf, e0), [e0, e1), ..., [ek, inf); missing values get their own last bin."""
    values = np.asarray(values, float)
    finite = np.isfinite(values)
    counts = np.bincount(np.searchsorted(np.asarray(inner_edges, float), values[finite], side="right"),
                         minlength=len(inner_edges) + 1).astype(float)
    return np.append(counts, float((~finite).sum()))


@dataclass(frozen=True)
class DriftReference:
    """The bins fixed at training: score edges and per-feature edges (from the artifact and the run's info)."""

    score_edges: tuple[float, ...]
    feature_edges: dict[str, tuple[float, ...]]
    training_score_counts: tuple[float, ...] | None = None  # pooled holdout per score bin, released at training

    @classmethod
    def from_model(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                   run_info: Mapping[str, Any] | None = None) -> DriftReference:
        names = [str(n) for n in meta.get("feature_names") or []]
        mean, scale = arrays.get("scaler.mean"), arrays.get("scaler.scale")
        features: dict[str, tuple[float, ...]] = {}
        if mean is not None and scale is not None and len(mean) == len(names):
            features = {n: tuple(float(m + s * z) for z in Z_GRID) for n, m, s in zip(names, mean, scale, strict=True)}
        bands = [b for b in (run_info or {}).get("score_bands") or [] if isinstance(b, Mapping)]
        if bands:  # riskiest first in the run info; edges ascending here, counts in the same order
            ordered = sorted(bands, key=lambda b: float(b["score_low"]))
            edges = tuple(float(b["score_low"]) for b in ordered[1:])
            counts = (*(float(b["count"]) for b in ordered), 0.0)  # one count per band, then missing PDs
            if all(b > a for a, b in zip(edges, edges[1:], strict=False)):
                return cls(edges, features, counts)
        return cls(PD_GRID, features, None)


@dataclass
class DriftRelease:
    """What leaves the party: counts per bin (reference | current) and the PSI values computed from them."""

    party: str
    score_counts: dict[str, list[float]]
    feature_counts: dict[str, dict[str, list[float]]]
    score_psi: float
    feature_psi: dict[str, float]
    noise_multiplier: float | None = None
    receipt: list[dict[str, str]] = field(default_factory=list)
    charged: dict[str, Any] | None = None  # under DP: the ledger charged, its epsilon spent after this release

    @property
    def status(self) -> str:
        return psi_status(max([self.score_psi, *self.feature_psi.values()], default=math.nan))

    def as_dict(self) -> dict[str, Any]:
        return {"party": self.party, "score_psi": _finite(self.score_psi), "status": self.status,
                "feature_psi": {k: _finite(v) for k, v in self.feature_psi.items()},
                "score_counts": self.score_counts, "feature_counts": self.feature_counts,
                "noise_multiplier": self.noise_multiplier, "receipt": self.receipt, "charged": self.charged}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _receipt(private: bool) -> list[dict[str, str]]:
    protection = ("charged: one Gaussian release of [reference | current] counts (DP1, party ledger)" if private
                  else "revealed exactly (no DP): counts of the party's rows per fixed bin")
    return [{"field": "score_counts.*", "protection": protection},
            {"field": "feature_counts.*", "protection": protection},
            {"field": "score_psi, feature_psi", "protection": "computed from the counts above (post-processing)"}]


@contextmanager
def _locked(ledger_path: Path) -> Iterator[None]:
    """An exclusive lock (`<ledger>.lock`, flock) from reading the ledger to writing it back: two releases that
    overlap (a scheduler, one per served model) take turns, so neither charge is lost (review R13-DR-2)."""
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(ledger_path.with_name(ledger_path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_ledger(ledger_path: Path) -> Ledger:
    try:
        return Ledger.from_json(ledger_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"ledger {str(ledger_path)!r} is unreadable ({type(exc).__name__}: {exc}); nothing was "
                          "released (restore it from a backup: it holds the party's spent budget)") from None


def charge_party(ledger_path: Path, party: str, event: PrivacyEvent, budget: Budget | None = None) -> Ledger:
    """Write-ahead, under the ledger's lock: read the party's own ledger (a file it keeps), check, record,
    persist; BudgetExceeded otherwise (nothing recorded, nothing released)."""
    with _locked(ledger_path):
        ledger = _read_ledger(ledger_path) if ledger_path.exists() else Ledger({party: budget or Budget(10.0, 1e-5)})
        if party not in ledger.parties:
            raise ConfigError(f"ledger {str(ledger_path)!r} belongs to {list(ledger.parties)}, not party {party!r}")
        ledger.check([event])
        ledger.record(event)
        atomic_write_bytes(ledger_path, ledger.to_json().encode(), mode=0o600)
    return ledger


def drift_release(party: str, reference: DriftReference, *, reference_scores: Sequence[float] | np.ndarray,
                  current_scores: Sequence[float] | np.ndarray, reference_X: Mapping[str, np.ndarray] | None = None,
                  current_X: Mapping[str, np.ndarray] | None = None, noise_multiplier: float | None = None,
                  ledger_path: Path | None = None, budget: Budget | None = None) -> DriftRelease:
    """Bin both populations at the party; under DP, charge first, then release the noised counts."""
    features = sorted(set(reference.feature_edges) & set(reference_X or {}) & set(current_X or {}))
    histograms = [(_bin(np.asarray(reference_scores, float), reference.score_edges),
                   _bin(np.asarray(current_scores, float), reference.score_edges))]
    histograms += [(_bin(np.asarray((reference_X or {})[f], float), reference.feature_edges[f]),
                    _bin(np.asarray((current_X or {})[f], float), reference.feature_edges[f])) for f in features]
    sizes = [len(r) for r, _ in histograms]
    vector = np.concatenate([np.concatenate([r for r, _ in histograms]), np.concatenate([c for _, c in histograms])])
    charged: dict[str, Any] | None = None
    if noise_multiplier is not None:
        if not math.isfinite(noise_multiplier) or noise_multiplier < MIN_NOISE:
            raise ConfigError(f"party {party!r}: drift noise multiplier must be >= {MIN_NOISE}, got {noise_multiplier}")
        if ledger_path is None:
            raise ConfigError(f"party {party!r}: a DP drift release needs the party's ledger file (--ledger)")
        event = PrivacyEvent(party=party, level="DP1", mechanism="gaussian", noise_multiplier=float(noise_multiplier),
                             note="monitoring: drift counts (score and features, reference and current)")
        ledger = charge_party(Path(ledger_path), party, event, budget)  # before anything from the rows leaves
        charged = {"ledger": str(ledger_path), "level": "DP1", "epsilon_spent": float(ledger.spent(party)),
                   "epsilon_budget": float(ledger.budget(party).epsilon)}
        mechanism = GaussianMechanism.from_noise_multiplier(math.sqrt(len(histograms)), float(noise_multiplier))
        vector = np.asarray(mechanism.release(vector), float)
    half = len(vector) // 2
    cuts = np.cumsum(sizes)[:-1]
    ref_parts, cur_parts = np.split(vector[:half], cuts), np.split(vector[half:], cuts)
    names = ["score", *features]
    counts = {n: {"reference": [float(v) for v in r], "current": [float(v) for v in c]}
              for n, r, c in zip(names, ref_parts, cur_parts, strict=True)}
    return DriftRelease(party, counts.pop("score"), counts, psi(ref_parts[0], cur_parts[0]),
                        {f: psi(r, c) for f, r, c in zip(features, ref_parts[1:], cur_parts[1:], strict=True)},
                        noise_multiplier, _receipt(noise_multiplier is not None), charged)


class ScoreMonitor:
    """The PDs a serving bank answered, binned at the training edges (thread-safe); PSI vs the training reference.

    Only counts are kept, never an applicant's PD or id; `snapshot()` is what /v1/monitoring returns."""

    def __init__(self, reference: DriftReference) -> None:
        self.reference = reference
        self._counts = np.zeros(len(reference.score_edges) + 2)
        self._lock = threading.Lock()

    def observe(self, pds: Sequence[float] | np.ndarray) -> None:
        counts = _bin(np.asarray(pds, float), self.reference.score_edges)
        with self._lock:
            self._counts += counts

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = self._counts.copy()
        training = self.reference.training_score_counts
        value = psi(training, counts) if training is not None else math.nan
        return {"scored": int(counts.sum()), "score_psi": _finite(value), "status": psi_status(value),
                "reference": "training holdout score bands" if training is not None else "none recorded",
                "bins": [float(e) for e in self.reference.score_edges], "counts": [float(c) for c in counts]}
