"""Train a horizontal model on per-party arrays held in one process: write, run, read back, and the pooled baseline.

Why a module of its own, and why in the runtime: `sampan.fraud.federated` (banks' image patches) and
`sampan.qr.federated` (verification sites' captures) both turn in-memory per-party arrays into an ordinary
horizontal run, and both compare it with the same model trained on pooled rows. fraud and qr are one layer and
may not import each other, so the shared plumbing sits below them, here. It is only plumbing: each caller keeps
its own checks, its own train / holdout split, its own model class and its own privacy statement.

What it does, in the order a caller uses it:

* `party_rng` -- a party's own generator: from (seed, party name) when a seed is given, so the party's split is
  the same in the federated run and in its baselines; else from the OS CSPRNG.
* `table_csv` / `write_private_table` -- a party's rows as a CSV inside that party's own folder (0700, file 0600),
  named by a hash of its content: a stored run names its files, so a later training in the same folder never
  changes the rows an interrupted run reads when it resumes. There is no pooled file.
* `horizontal_config` -- the run's raw config: in-process parties, one ``[[parties]]`` entry per party with its
  training and held-out file.
* `run_horizontal` -- parse, open the SQLite store (0600), `start_run`, and read back the registered artifact's
  arrays (``params``, ``scaler.mean`` / ``scaler.scale``) and meta, with the per-round metrics.
* `fit_pooled` -- the same model class, optimiser and epochs on rows already in one place (the central and
  local-only baselines; simulation only, never possible between real parties).
"""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sampan.errors import DataError, StoreError
from sampan.files import atomic_write_bytes

__all__ = ["ArrayRun", "PartyFiles", "TableSchema", "TrainingKnobs", "fit_pooled", "horizontal_config",
           "party_rng", "run_horizontal", "table_csv", "write_private_table"]

Progress = Callable[[str, Mapping[str, Any]], None]
_PRIVATE_FILE = 0o600


class TrainingKnobs(Protocol):
    """What the run and the baselines share (both fraud's and qr's settings have these)."""

    @property
    def rounds(self) -> int: ...
    @property
    def local_epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...
    @property
    def epochs(self) -> int: ...


@dataclass(frozen=True)
class TableSchema:
    """The columns of every party's table: row id, features (in order), label."""

    id_column: str
    columns: tuple[str, ...]
    label_column: str


@dataclass(frozen=True)
class PartyFiles:
    """One party's training and held-out tables, as written in its own folder."""

    name: str
    train_path: Path
    holdout_path: Path


@dataclass(frozen=True)
class ArrayRun:
    """A finished horizontal run and its registered model's arrays."""

    run_id: str
    model_name: str
    model_version: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    info: dict[str, Any]                                          # the workflow result's info (e.g. "privacy")
    rounds: list[dict[str, Any]] = field(default_factory=list)    # per round: train loss, global metrics
    final_metrics: dict[str, Any] = field(default_factory=dict)


def party_rng(seed: int | None, party: str) -> np.random.Generator:
    """The party's own generator: from (seed, sha256(party name)) when a seed is given, else from the OS CSPRNG."""
    if seed is None:
        return np.random.default_rng(secrets.randbits(128))
    digest = hashlib.sha256(party.encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "big")])


def table_csv(schema: TableSchema, ids: Sequence[str], X: np.ndarray, y: np.ndarray) -> bytes:
    """The rows as CSV bytes: id, features at full float precision (``repr``), the integer label."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape != (len(ids), len(schema.columns)) or y.shape != (len(ids),):
        raise DataError(f"table_csv: {len(ids)} ids, features {X.shape} and labels {y.shape} do not match the "
                         f"{len(schema.columns)} columns")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([schema.id_column, *schema.columns, schema.label_column])
    for i, row, label in zip(ids, X.tolist(), y.tolist(), strict=True):
        writer.writerow([i, *map(repr, row), int(label)])
    return out.getvalue().encode("utf-8")


def write_private_table(folder: Path, stem: str, data: bytes) -> Path:
    """Write ``folder/<stem>-<sha256 prefix>.csv`` (0600) unless that exact content is already there. ``folder``
    is the party's own, made private by the caller (`sampan.files.private_directory`)."""
    path = Path(folder) / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}.csv"
    if not path.exists():
        atomic_write_bytes(path, data, mode=_PRIVATE_FILE)
    return path


def horizontal_config(*, name: str, parties: Sequence[PartyFiles], schema: TableSchema, model: Mapping[str, Any],
                      knobs: TrainingKnobs, work_dir: Path, seed: int | None,
                      privacy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The raw horizontal run config (in-process parties; the report goes to ``work_dir/reports``)."""
    config: dict[str, Any] = {
        "run": {"name": name, "workflow": "horizontal", "rounds": knobs.rounds,
                "report_dir": str(Path(work_dir) / "reports"), **({"seed": seed} if seed is not None else {})},
        "model": dict(model),
        "training": {"local_epochs": knobs.local_epochs, "batch_size": knobs.batch_size,
                     "learning_rate": knobs.learning_rate},
        "schema": {"id": schema.id_column, "label": schema.label_column, "features": list(schema.columns)},
        "parties": [{"name": p.name, "path": str(p.train_path), "test_path": str(p.holdout_path)} for p in parties],
    }
    if privacy is not None:
        config["privacy"] = dict(privacy)
    return config


def run_horizontal(raw: Mapping[str, Any], *, store_path: Path, source: str, progress: Progress | None = None,
                   receipt_extra: Mapping[str, Any] | None = None) -> ArrayRun:
    """Parse ``raw``, run it to its end in the SQLite store at ``store_path`` and read the registered model back.

    ``progress(stage, info)`` receives the runner's stages; ``receipt_extra`` is merged into the registered model's
    privacy receipt (when it has one), so the caller's own statement is where the receipt is read."""
    from sampan.config import parse_config
    from sampan.files import private_sqlite
    from sampan.runtime.runner import start_run
    from sampan.runtime.store import Store

    config = parse_config(dict(raw), source=source)
    url = f"sqlite:///{Path(store_path).resolve()}"
    private_sqlite(url)
    store = Store.open(url)
    rounds: list[dict[str, Any]] = []

    def forward(stage: str, info: Mapping[str, Any]) -> None:
        if stage == "round":
            rounds.append({"round": int(info["round"]), "train_loss": info.get("train_loss"),
                           "global": dict(info.get("global") or {})})
        if progress is not None:
            progress(stage, info)

    finished = start_run(config, store, forward)
    if finished.model_name is None or finished.model_version is None:
        raise StoreError(f"run {finished.run_id} ({source}) registered no model")
    registered = store.get_model(finished.model_name, finished.model_version)
    if receipt_extra is not None and registered.receipt is not None:
        store.attach_receipt(finished.model_name, finished.model_version, {**registered.receipt, **receipt_extra})
    return ArrayRun(finished.run_id, finished.model_name, finished.model_version, dict(registered.arrays),
                    dict(registered.meta), dict(finished.result.info), rounds, dict(finished.final_metrics))


def fit_pooled(X: np.ndarray, y: np.ndarray, model: Mapping[str, Any], knobs: TrainingKnobs,
               seed: int | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train ``model`` (a model config without ``n_features``) on rows already in one place, standardised by their
    own mean / std, for ``knobs.epochs`` epochs: the artifact's arrays (``params``, ``scaler.*``) and model config.
    ``seed`` fixes initialisation and minibatch order (else the OS CSPRNG)."""
    from sampan.models.local_training import TrainConfig, train
    from sampan.models.registry import model_from_config

    X = np.asarray(X, dtype=np.float64)
    built = model_from_config({**model, "n_features": X.shape[1]})
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(128))
    result = train(built, built.init_params(rng), (X - mean) / scale, y,
                   TrainConfig(epochs=knobs.epochs, batch_size=knobs.batch_size,
                               learning_rate=knobs.learning_rate), rng)
    return {"params": result.params, "scaler.mean": mean, "scaler.scale": scale}, built.config()
