"""The linear verification model trained across verification sites through the horizontal workflow.

Each verification site holds labelled captures (originals and copies, 1 = copy) from its OWN capture devices
(non-IID: another phone model, another mix of counterfeits). It turns each capture's feature vector into the
model features (`sampan.qr.linear.model_features`: the key-free statistics and the keyed correlation, which
needs the CDP key the sites hold) and writes them inside its own folder (0700, files 0600). `train_federated`
starts an ordinary horizontal run (in-process parties, one `[[parties]]` entry per site): the run is stored,
checkpointed and its model registered with lineage, like every Sampan run. The registered logistic model
(`params` = [w..., b], `scaler.mean`/`scaler.scale`) is folded back to raw feature units and negated, giving
the `LinearVerifierModel` the sites then run on secret shares (`sampan.qr.distributed.ModelVerifier`).

`train_central` is the simulation baseline (every site's training rows pooled: not possible between real
sites), `train_local_only` one site alone; both train the same model with the same optimiser for the same
number of epochs on the same rows.

The plumbing shared with `sampan.fraud.federated` (private per-party CSV named by content hash, run config,
`start_run`, registered artifact, pooled baseline) is `sampan.runtime.array_runs`: fraud and qr are one layer and
may not import each other. What stays here is qr's own: the site checks, the split by serial, the folding of the
logistic artifact into a `LinearVerifierModel`.

No differential privacy here: only model updates leave a site, but they are not noised. One row = one capture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import DataError
from sampan.files import private_directory
from sampan.qr.linear import MODEL_FEATURES, LinearVerifierModel, model_features
from sampan.runtime.array_runs import (
    PartyFiles,
    TableSchema,
    fit_pooled,
    horizontal_config,
    party_rng,
    run_horizontal,
    table_csv,
    write_private_table,
)

__all__ = ["SiteCaptures", "SiteDataError", "FlSettings", "TrainedVerifier", "site_model_rows", "train_federated",
           "train_central", "train_local_only"]

ID_COLUMN, LABEL_COLUMN = "capture_id", "copy"
COLUMNS = [f"m{j:02d}" for j in range(len(MODEL_FEATURES))]
_SCHEMA = TableSchema(ID_COLUMN, tuple(COLUMNS), LABEL_COLUMN)
Progress = Callable[[str, Mapping[str, Any]], None]


class SiteDataError(DataError):
    """A site's captures that cannot be trained on; the message names the site."""


@dataclass(frozen=True)
class SiteCaptures:
    """One site's labelled captures: device feature vectors (n, F), the serial of each, labels (1 = copy)."""

    name: str
    features: np.ndarray
    serials: Sequence[str]
    labels: np.ndarray
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlSettings:
    """Training knobs shared by the federated run and the baselines (same model, same epochs)."""

    rounds: int = 20
    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.2
    holdout_fraction: float = 0.25

    @property
    def epochs(self) -> int:
        return self.rounds * self.local_epochs


@dataclass(frozen=True)
class TrainedVerifier:
    """A trained linear verification model and where it came from."""

    model: LinearVerifierModel
    how: str
    sites: tuple[str, ...]
    run_id: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    final_metrics: dict[str, Any] = field(default_factory=dict)


def site_model_rows(site: SiteCaptures, key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(model features (n, len(MODEL_FEATURES)), labels) of a site's captures; checks what a run would refuse."""
    X = np.asarray(site.features, dtype=np.float64)
    y = np.asarray(site.labels)
    if not site.name or any(c in site.name for c in "/\\\0") or site.name in (".", ".."):
        raise SiteDataError(f"site name {site.name!r} cannot name a folder")
    if X.ndim != 2 or X.shape[0] == 0 or len(site.serials) != X.shape[0] or y.shape != (X.shape[0],):
        raise SiteDataError(f"site {site.name!r}: features {X.shape}, {len(site.serials)} serials and labels "
                            f"{y.shape} must describe the same captures")
    if not np.isin(y, (0, 1)).all() or not ((y == 0).any() and (y == 1).any()):
        raise SiteDataError(f"site {site.name!r}: labels must be 0 (original) / 1 (copy), with both present")
    rows = np.array([model_features(x, key, s) for x, s in zip(X, site.serials, strict=True)])
    if not np.isfinite(rows).all():
        raise SiteDataError(f"site {site.name!r}: non-finite features")
    return rows, y.astype(int)


def _split(site: SiteCaptures, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) row indices, split by SERIAL: an item's original and its copies stay on one side."""
    rng = party_rng(seed, site.name)
    serials = np.asarray(site.serials).astype(str)
    items = np.unique(serials)
    n_out = min(max(1, int(round(fraction * items.size))), items.size - 1)
    held = np.isin(serials, rng.permutation(items)[:n_out])
    return np.flatnonzero(~held), np.flatnonzero(held)


def _from_artifact(arrays: Mapping[str, np.ndarray]) -> LinearVerifierModel:
    """Registered logistic artifact (P(copy) = sigmoid(((x - mean) / scale) . w + b)) -> raw-unit original score."""
    params = np.asarray(arrays["params"], dtype=np.float64)
    n = len(MODEL_FEATURES)
    mean = np.asarray(arrays.get("scaler.mean", np.zeros(n)), dtype=np.float64)
    scale = np.asarray(arrays.get("scaler.scale", np.ones(n)), dtype=np.float64)
    if params.shape != (n + 1,) or mean.shape != (n,) or scale.shape != (n,):
        raise SiteDataError(f"the registered model is not a logistic model over the {n} verification features")
    w = params[:-1] / scale
    return LinearVerifierModel(-w, -float(params[-1] - w @ mean))


def train_federated(sites: Sequence[SiteCaptures], key: bytes, *, store_path: Path, work_dir: Path,
                    settings: FlSettings | None = None, seed: int | None = None,
                    progress: Progress | None = None) -> TrainedVerifier:
    """Train across `sites` through the horizontal workflow (see the module docstring)."""
    settings = settings or FlSettings()
    names = [s.name for s in sites]
    if not sites or len(set(names)) != len(names):
        raise SiteDataError(f"need at least one site, with unique names: {names}")
    private_directory(work_dir)
    parties = []
    for site in sites:
        X, y = site_model_rows(site, key)
        train, held = _split(site, settings.holdout_fraction, seed)
        folder = private_directory(Path(work_dir) / site.name)
        ids = [f"{site.name}-{i}" for i in range(X.shape[0])]
        paths = [write_private_table(folder, stem, table_csv(_SCHEMA, [ids[i] for i in rows], X[rows], y[rows]))
                 for stem, rows in (("captures-train", train), ("captures-holdout", held))]
        parties.append(PartyFiles(site.name, paths[0], paths[1]))
    raw = horizontal_config(name="qr-verification-model", parties=parties, schema=_SCHEMA, model={"kind": "logistic"},
                            knobs=settings, work_dir=Path(work_dir), seed=seed)
    run = run_horizontal(raw, store_path=store_path, source="qr federated verification model", progress=progress)
    return TrainedVerifier(_from_artifact(run.arrays), "federated (horizontal run)", tuple(names), run.run_id,
                           run.model_name, run.model_version, run.rounds, run.final_metrics)


def _fit(X: np.ndarray, y: np.ndarray, settings: FlSettings, seed: int | None) -> LinearVerifierModel:
    arrays, _ = fit_pooled(X, y, {"kind": "logistic"}, settings, seed)
    return _from_artifact(arrays)


def _train_rows(sites: Sequence[SiteCaptures], key: bytes, settings: FlSettings,
                seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for site in sites:
        X, y = site_model_rows(site, key)
        train, _ = _split(site, settings.holdout_fraction, seed)
        rows.append((X[train], y[train]))
    return np.vstack([r[0] for r in rows]), np.concatenate([r[1] for r in rows])


def train_central(sites: Sequence[SiteCaptures], key: bytes, *, settings: FlSettings | None = None,
                  seed: int | None = None) -> TrainedVerifier:
    """Baseline: every site's training captures pooled (simulation only)."""
    settings = settings or FlSettings()
    X, y = _train_rows(sites, key, settings, seed)
    return TrainedVerifier(_fit(X, y, settings, seed), "central (pooled; not possible between real sites)",
                           tuple(s.name for s in sites))


def train_local_only(site: SiteCaptures, key: bytes, *, settings: FlSettings | None = None,
                     seed: int | None = None) -> TrainedVerifier:
    """Baseline: one site alone on its own training captures."""
    settings = settings or FlSettings()
    X, y = _train_rows([site], key, settings, seed)
    return TrainedVerifier(_fit(X, y, settings, seed), f"local only ({site.name})", (site.name,))
