"""Sampan: privacy-preserving federated learning for credit and fraud models.

Parties keep their records; only `sampan.wire` messages cross a party boundary.

The public Python API (what the CLI does, for notebooks and pipelines):

    import sampan
    finished = sampan.run("examples/taiwan_fedavg.toml")      # a path, a dict or a sampan.RunConfig
    model = sampan.load_model(finished.model_name)             # the latest version in the run store
    model.predict_proba(frame)                                 # pandas DataFrame, pyarrow Table or dict

Errors are `sampan.SampanError` subclasses (`ConfigError`, `DataError`, `PartyError`, `BudgetError`,
`ProtocolError`, `StoreError`, `CancelledError`), each naming the party, file, column or field at fault.
Everything else is imported on first use, so `import sampan` stays light (no numpy, pydantic, sqlalchemy).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampan.errors import (
    BudgetError,
    CancelledError,
    ConfigError,
    DataError,
    PartyError,
    ProtocolError,
    SampanError,
    StoreError,
)

if TYPE_CHECKING:
    from sampan.config import RunConfig, load_config
    from sampan.models.predictor import Predictor
    from sampan.runtime.runner import FinishedRun
    from sampan.runtime.store import Store

__version__ = "0.1.0"

__all__ = [
    "__version__", "run", "load_model", "RunConfig", "load_config", "Predictor", "SampanError", "ConfigError",
    "DataError", "PartyError", "BudgetError", "ProtocolError", "StoreError", "CancelledError",
]

_LAZY = {"RunConfig": "sampan.config", "load_config": "sampan.config", "Predictor": "sampan.models.predictor"}


def __getattr__(name: str) -> Any:
    """`sampan.RunConfig`, `sampan.load_config`, `sampan.Predictor` are imported when first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sampan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _open_store(store: str | Store | None, configured: str | None = None) -> Store:
    """A Store object as given, else the URL given, else $SAMPAN_STORE, else the config's, else the default."""
    from sampan.runtime.store import Store

    if isinstance(store, Store):
        return store
    return Store.open(store or os.environ.get("SAMPAN_STORE") or configured)


def run(config: str | os.PathLike[str] | Mapping[str, Any] | RunConfig, *, store: str | Store | None = None,
        progress: Any = None) -> FinishedRun:
    """Run a federated workflow to its end, as `sampan run CONFIG` does, and return the finished run.

    ``config``: a TOML path, a dict in the TOML's shape, or a `RunConfig`. The run store is ``store``,
    else $SAMPAN_STORE, else the config's ``run.store``, else sqlite:///sampan-runs/sampan.db. The
    finished run has ``run_id``, ``final_metrics``, ``model_name`` and ``model_version`` (for
    `load_model`) and ``report_path``. A failure raises a `SampanError` naming what to fix.
    """
    from sampan.config import RunConfig, load_config, parse_config
    from sampan.runtime.runner import start_run

    if isinstance(config, RunConfig):
        parsed = config
    elif isinstance(config, Mapping):
        parsed = parse_config(dict(config), source="<dict>")
    elif isinstance(config, (str, os.PathLike)):
        parsed = load_config(Path(config))
    else:
        raise ConfigError(f"sampan.run takes a TOML path, a dict or a sampan.RunConfig, got {type(config).__name__}")
    return start_run(parsed, _open_store(store, parsed.run.store), progress)


def load_model(name: str, version: int | None = None, store: str | Store | None = None) -> Predictor:
    """A registered model (latest version unless ``version``) as a `Predictor`:
    ``predict_proba(frame)`` takes a pandas DataFrame, a pyarrow Table or a dict of columns, checks the
    columns by name against the model's features and applies the federation's scaler."""
    from functools import partial

    from sampan.models.predictor import Predictor

    registered = _open_store(store).get_model(name, version)
    scorer = None
    if (registered.meta.get("model") or {}).get("kind") == "gbdt":  # horizontal GBDT: bin edges + trees
        from sampan.horizontal.gbdt import predict_gbdt_payload

        scorer = partial(predict_gbdt_payload, registered.meta["model"], registered.arrays)
    return Predictor.from_registered(registered.arrays, registered.meta, name=registered.name,
                                     version=registered.version, run_id=registered.run_id, scorer=scorer)
