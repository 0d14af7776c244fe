"""A registered model, by name, as an applicant scorer (`sampan score`, `sampan serve`).

Why here: the registry lives in the run store, and the applicant's id column in the training run's
config; the scorer itself (`sampan.models.scorer.Scorer`) knows neither. Horizontal models score at
the bank. A vertical model's parts stay with their parties: ``sampan score --run RUN`` scores jointly.
"""

from __future__ import annotations

from typing import Any

from sampan.errors import ConfigError
from sampan.models.scorer import Scorer
from sampan.runtime.store import Store

__all__ = ["load_scorer", "parse_model_ref", "scoring_document", "training_id_column", "training_markers",
           "training_missing"]


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` -> (name, version or None for the latest)."""
    name, sep, version = ref.rpartition("@")
    if not sep:
        return ref, None
    if not name or not version.isdigit() or int(version) < 1:
        raise ConfigError(f"--model {ref!r}: write NAME or NAME@VERSION (a version number from `sampan models list`)")
    return name, int(version)


def _training_config(store: Store, run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {}
    try:
        return dict(store.get_run(run_id).config or {})
    except Exception:  # a model copied into another store: no run record (ids fall back to row numbers)
        return {}


def training_markers(store: Store, run_id: str | None) -> list[str]:
    """The training schema's table-wide missing-value markers (`schema.missing`); a column's own markers stay with
    that column (`training_missing`, review R13-SCO-19: "0" missing in one column is a value in the others)."""
    schema = _training_config(store, run_id).get("schema") or {}
    return [str(m) for m in schema.get("missing") or []] if isinstance(schema, dict) else []


def training_missing(store: Store, run_id: str | None) -> dict[str, tuple[tuple[str, ...], str]]:
    """Per feature column of the training schema: its missing markers (its own, else the table's) and its policy
    (its own ``impute``, else the table's, else "error"); empty when the store no longer has the training run."""
    schema = _training_config(store, run_id).get("schema") or {}
    if not isinstance(schema, dict):
        return {}
    markers = tuple(str(m) for m in schema.get("missing") or ())
    policy = str(schema.get("impute") or "error")
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for column in schema.get("features") or []:
        if isinstance(column, dict) and column.get("name"):
            own = column.get("missing")
            out[str(column["name"])] = (tuple(str(m) for m in own) if own is not None else markers,
                                        str(column.get("impute") or policy))
    return out


def training_id_column(store: Store, run_id: str | None) -> str | None:
    """The id column of the run that trained the model (its ``[schema] id``), if the store still has it."""
    config = _training_config(store, run_id)
    for section in ("schema", "vertical"):
        spec = config.get(section)
        value = (spec.get("id") or spec.get("id_column")) if isinstance(spec, dict) else None
        if value:
            return str(value)
    return None


def scoring_document(store: Store, entry: Any) -> dict[str, Any] | None:
    """The `sampan-model` export document of a registered horizontal model; None for anything else."""
    from sampan.models.export import export_document
    from sampan.models.scorer import model_threshold

    meta = entry.meta or {}
    if (meta.get("model") or {}).get("kind") not in ("logistic", "mlp", "gbdt") or "feature_names" not in meta:
        return None
    return export_document(entry.arrays, meta, name=entry.name, version=entry.version, run_id=entry.run_id,
                           threshold=model_threshold(meta), extra_markers=training_markers(store, entry.run_id),
                           column_markers={c: m for c, (m, _) in training_missing(store, entry.run_id).items()})


def load_scorer(store: Store, ref: str, *, id_column: str | None = None, reasons: int = 4) -> Scorer:
    """The registered horizontal model ``NAME[@VERSION]`` as a `Scorer` (ids from ``id_column``, else the
    training run's id column, else row numbers)."""
    name, version = parse_model_ref(ref)
    entry = store.get_model(name, version)
    if "model" not in (entry.meta or {}):
        raise ConfigError(f"model {entry.name!r} v{entry.version} is a party's part of a vertical model (its other "
                          "parts stay with their owners): score it jointly with `sampan score --run RUN_ID --model "
                          "lr|scorecard|gbdt --data FILE`")
    return Scorer.from_registered(entry.arrays, entry.meta, name=entry.name, version=entry.version,
                                  run_id=entry.run_id, id_column=id_column or training_id_column(store, entry.run_id),
                                  top=reasons, markers=training_markers(store, entry.run_id),
                                  columns=training_missing(store, entry.run_id))
