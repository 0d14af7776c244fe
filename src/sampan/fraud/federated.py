"""Federated training of the patch model across banks, through the ordinary horizontal workflow.

Why through the runner and not a loop of our own: the run is then a normal Sampan run. It is stored (SQLite), it
checkpoints every round and resumes after a crash without charging the privacy ledger twice, its model is
registered with lineage and a privacy receipt, and under DP its DP-SGD steps (DP2) and its standardisation
statistics (DP1, public bounds) are charged to each bank's ledger. `train_federated` only writes each bank's
patch table inside that bank's folder (`sampan.fraud.bank_tables`), builds the `RunConfig` (in-process parties,
one `[[parties]]` entry per bank with its own training and held-out file), starts the run, and converts the
registered artifact (``params`` + ``scaler.mean``/``scaler.scale``, meta ``model``) into a patch model.

**Unit of privacy.** The DP unit of the workflow is one ROW, and here a row is one image patch. A document gives
up to k patches (k = ``max_patches_per_doc``, a cap applied to the training and the holdout rows, default 16; the
holdout rows are outside the DP unit, their count and the end-of-run evaluation released exactly), so the guarantee
for a whole document is only group privacy over k rows: with (epsilon, delta) per row, at most
(k * epsilon, k * e^((k-1) * epsilon) * delta) per document. At epsilon = 1 and k = 16 that is epsilon 16: weak.
The receipt of the model and `TrainResult.privacy_unit` say so; nothing here claims document-level DP.

`train_central` (all banks' training rows pooled: a simulation baseline, never possible between real banks) and
`train_local_only` (one bank alone) train the same model class with the same optimiser for the same number of
epochs (rounds x local epochs), on the same capped, document-split rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sampan.errors import ConfigError
from sampan.fraud.bank_tables import (
    ID_COLUMN,
    LABEL_COLUMN,
    BankData,
    BankDataError,
    BankTables,
    bank_rng,
    check_banks,
    feature_columns,
    split_bank,
    write_bank_tables,
)
from sampan.fraud.scorer import PatchModel, patch_model_from_arrays
from sampan.runtime.array_runs import PartyFiles, TableSchema, fit_pooled, horizontal_config, run_horizontal

__all__ = ["BankData", "DpSettings", "BankDataError", "TrainResult", "TrainSettings", "document_privacy",
           "public_bounds", "train_central", "train_federated", "train_local_only"]

ModelKind = Literal["logistic", "mlp"]
Progress = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class DpSettings:
    """DP-SGD at every bank (DP2) plus DP standardisation (DP1) from PUBLIC feature bounds.

    ``bounds``: a public clipping range per feature column (``f000``...; ``"*"`` for all others). They must not be
    read off any bank's patches: `public_bounds` derives them from a public reference corpus (documents anyone can
    render with the shipped generators)."""

    epsilon: float
    bounds: Mapping[str, tuple[float, float]]
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    noise_multiplier: float | Literal["auto"] = "auto"
    dp1_noise_multiplier: float | Literal["auto"] = "auto"

    def section(self) -> dict[str, Any]:
        """The run's [privacy] table."""
        return {"epsilon": self.epsilon, "delta": self.delta,
                "dp1": {"noise_multiplier": self.dp1_noise_multiplier,
                        "bounds": {k: [float(lo), float(hi)] for k, (lo, hi) in self.bounds.items()}},
                "dp2": {"noise_multiplier": self.noise_multiplier, "max_grad_norm": self.max_grad_norm}}


@dataclass(frozen=True)
class TrainSettings:
    """The training knobs shared by the federated run and both baselines (same model, same epochs)."""

    model: ModelKind = "logistic"
    rounds: int = 10
    local_epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.1
    hidden: tuple[int, ...] = (32,)
    max_patches_per_doc: int = 16
    holdout_fraction: float = 0.25

    @property
    def epochs(self) -> int:
        """Epochs of a baseline: what one federated party trains over the whole run."""
        return self.rounds * self.local_epochs


@dataclass(frozen=True)
class TrainResult:
    """A trained patch model and where it came from."""

    model: PatchModel
    run_id: str | None                 # None for the baselines (no run)
    banks: tuple[str, ...]
    settings: TrainSettings
    dp: DpSettings | None
    privacy: dict[str, Any] | None     # the ledger summary (epsilon spent per bank and level) under DP
    privacy_unit: str
    rounds: list[dict[str, Any]] = field(default_factory=list)   # per round: train loss, global metrics
    final_metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, BankTables] = field(default_factory=dict)
    model_name: str | None = None
    model_version: int | None = None

    def provenance(self) -> dict[str, Any]:
        """JSON-able provenance for a detector file or a report."""
        return {"run_id": self.run_id, "banks": list(self.banks), "model": self.settings.model,
                "rounds": self.settings.rounds, "max_patches_per_doc": self.settings.max_patches_per_doc,
                "dp": None if self.dp is None else {"epsilon": self.dp.epsilon, "delta": self.dp.delta,
                                                    "max_grad_norm": self.dp.max_grad_norm},
                "privacy_unit": self.privacy_unit, "registered_model": self.model_name,
                "registered_version": self.model_version}


def document_privacy(dp: DpSettings | None, k: int) -> str:
    """The plain statement of what the run protects: rows (patches), and documents only through group privacy; and
    what is outside the DP unit (held-out and validation documents)."""
    outside = (f" Outside the DP unit: each bank's held-out documents (the run's holdout, at most {k} patches per "
               "document too) -- the coordinator learns their row count and the end-of-run evaluation on them "
               "exactly; and each bank's validation documents, scored at the bank for its own threshold, which "
               "(threshold scope 'bank') goes to the bank's own detector copy only. A document is one image file.")
    if dp is None:
        return (f"no differential privacy: the banks' patches stay in their folders and only model updates travel, "
                f"but the updates are not noised (at most {k} training patches per document)." + outside)
    eps_doc = k * dp.epsilon
    delta_doc = k * math.exp(min((k - 1) * dp.epsilon, 700.0)) * dp.delta
    delta_text = f"delta {delta_doc:.3g}" if delta_doc < 1 else "a delta above 1, i.e. no meaningful guarantee"
    return (f"record-level DP per bank where one record = one image patch (epsilon {dp.epsilon:g}, delta "
            f"{dp.delta:g}); a document contributes at most k = {k} training patches, so a whole document is "
            f"protected only by group privacy over k rows: at most epsilon {eps_doc:g} with {delta_text} per "
            "document (weak; not document-level DP)." + outside)


def public_bounds(reference: np.ndarray, margin: float = 0.1) -> dict[str, tuple[float, float]]:
    """Per-feature clipping bounds from a PUBLIC reference feature matrix (never a bank's rows): the 0.5-99.5%
    range widened by ``margin`` of its width on each side (a constant feature gets +-1)."""
    X = np.asarray(reference, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise BankDataError("public_bounds needs a reference matrix of at least two rows")
    lo, hi = np.quantile(X, 0.005, axis=0), np.quantile(X, 0.995, axis=0)
    width = np.where(hi > lo, hi - lo, 2.0)
    lo, hi = lo - margin * width, hi + margin * width
    return {name: (float(a), float(b)) for name, a, b in zip(feature_columns(X.shape[1]), lo, hi, strict=True)}


def _model_config(settings: TrainSettings) -> dict[str, Any]:
    """The model section of the run and of the baselines (without ``n_features``)."""
    return {"kind": settings.model, **({"hidden": list(settings.hidden)} if settings.model == "mlp" else {})}


def run_config(tables: Mapping[str, BankTables], n_features: int, settings: TrainSettings, dp: DpSettings | None,
               *, seed: int | None, work_dir: Path, name: str = "fraud-patch-detector") -> dict[str, Any]:
    """The horizontal run's config: one [[parties]] entry per bank, its own train and held-out file."""
    columns = feature_columns(n_features)
    parties = [PartyFiles(t.name, t.train_path, t.holdout_path) for t in tables.values()]
    config = horizontal_config(name=name, parties=parties, schema=TableSchema(ID_COLUMN, tuple(columns), LABEL_COLUMN),
                               model=_model_config(settings), knobs=settings, work_dir=work_dir, seed=seed)
    if dp is not None:
        unknown = sorted(set(dp.bounds) - set(columns) - {"*"})
        if unknown:
            raise ConfigError(f"dp.bounds names columns {unknown[:5]} that are not features "
                              f"(f000..f{n_features - 1:03d})")
        config["privacy"] = dp.section()
    return config


def train_federated(banks: Sequence[BankData], *, settings: TrainSettings | None = None, dp: DpSettings | None = None,
                    store_path: Path, work_dir: Path, seed: int | None = None,
                    progress: Progress | None = None) -> TrainResult:
    """Train the patch model across ``banks`` through the horizontal workflow (see the module docstring).

    ``store_path``: the SQLite run store; ``work_dir``: the banks' folders (``work_dir/<bank>/``) and the run
    report; ``seed``: fixes the document split, initialisation and minibatch order (DP noise always comes from the
    OS CSPRNG); ``progress(stage, info)`` receives the runner's stages (``round`` carries the metrics)."""
    settings = settings or TrainSettings()
    n_features = check_banks(banks)
    tables = write_bank_tables(banks, Path(work_dir), max_patches_per_doc=settings.max_patches_per_doc,
                               holdout_fraction=settings.holdout_fraction, seed=seed)
    unit = document_privacy(dp, settings.max_patches_per_doc)
    run = run_horizontal(run_config(tables, n_features, settings, dp, seed=seed, work_dir=Path(work_dir)),
                         store_path=store_path, source="fraud federated training", progress=progress,
                         # say the patch/document unit where the model's receipt is read
                         receipt_extra={"unit_of_privacy": unit,
                                        "max_patches_per_doc": settings.max_patches_per_doc})
    model = _patch_model(run.arrays, run.meta)
    return TrainResult(model, run.run_id, tuple(tables), settings, dp, run.info.get("privacy"), unit, run.rounds,
                       run.final_metrics, tables, run.model_name, run.model_version)


def _train_rows(banks: Sequence[BankData], settings: TrainSettings,
                seed: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The capped, document-split TRAINING rows of each bank, the same rows the federated run writes (same seed)."""
    check_banks(banks)
    rows = []
    for bank in banks:
        train, _, _ = split_bank(bank, settings.max_patches_per_doc, settings.holdout_fraction,
                                 bank_rng(seed, bank.name))
        rows.append((np.asarray(bank.features, dtype=np.float64)[train], np.asarray(bank.labels).astype(int)[train]))
    return rows


def _fit(X: np.ndarray, y: np.ndarray, settings: TrainSettings, seed: int | None) -> PatchModel:
    arrays, config = fit_pooled(X, y, _model_config(settings), settings, seed)
    return _patch_model(arrays, {"model": config})


def _patch_model(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> PatchModel:
    """The registered artifact (``params``, ``scaler.*``; meta ``model``) as a patch model. A run without
    standardisation registers no scaler: identity then."""
    config = meta.get("model")
    if not isinstance(config, Mapping):
        raise ConfigError("the registered model has no model config (meta 'model'); not a logistic/mlp artifact")
    n = int(config.get("n_features", 0))
    full = {"scaler.mean": np.zeros(n), "scaler.scale": np.ones(n), **arrays}
    return patch_model_from_arrays(config, full)


def train_central(banks: Sequence[BankData], *, settings: TrainSettings | None = None,
                  seed: int | None = None) -> TrainResult:
    """Baseline: every bank's training rows pooled in one place (simulation only; no DP)."""
    settings = settings or TrainSettings()
    rows = _train_rows(banks, settings, seed)
    X, y = np.vstack([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    model = _fit(X, y, settings, seed)
    return TrainResult(model, None, tuple(b.name for b in banks), settings, None, None,
                       "central baseline: all banks' patches pooled in one place (not possible between real banks)")


def train_local_only(bank: BankData, *, settings: TrainSettings | None = None, seed: int | None = None) -> TrainResult:
    """Baseline: one bank alone, on its own training rows (no DP)."""
    settings = settings or TrainSettings()
    rows = _train_rows([bank], settings, seed)
    model = _fit(rows[0][0], rows[0][1], settings, seed)
    return TrainResult(model, None, (bank.name,), settings, None, None, f"local-only baseline: bank {bank.name!r}")
