"""Score new applicants with a registered horizontal model: PD, points, decision and reason codes.

Why: a bank scores applicants who have no outcome yet, one at a time (an HTTP request) or by the file;
both need the training's exact encoding (`Predictor`: columns by name, imputation, one-hot,
standardisation) and an explanation a lender can give the applicant (`sampan.models.explain`).

    scorer = Scorer.from_registered(entry.arrays, entry.meta, name=entry.name, version=entry.version)
    scorer.score([{"id": "A1", "age": 4, "sector": "retail"}])   # -> [ScoreResult(id, pd, score, ...)]

Horizontal models (logistic, MLP, GBDT) score entirely at the bank. A vertical model's parts stay with
their owners: it scores jointly, through a scoring run (`sampan score --run RUN --data FILE`) or the bank's
long-lived scoring session (`sampan serve`, `sampan.serve.session`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.errors import ConfigError, DataError
from sampan.models.base import sigmoid
from sampan.models.explain import DEFAULT_REASONS, ScoreCard, occlusion_contributions, reason_codes_batch
from sampan.models.predictor import MISSING_MARKERS, Predictor, input_blocks
from sampan.models.registry import model_from_config
from sampan.models.tree_scoring import TreeEnsemble

__all__ = ["ScoreResult", "Scorer", "model_threshold", "rows_to_columns"]

Explain = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ScoreResult:
    """One applicant's result: ``pd`` full float64, ``score`` in points (higher = safer), ``decision``
    ("decline" when pd >= the model's threshold, else "approve"; None without a threshold), ``reasons``
    (top adverse contributions, `sampan.models.explain.reason_codes`)."""

    id: str
    pd: float
    score: float
    decision: str | None
    reasons: list[dict[str, Any]]
    logit: float
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (shallow: the reasons list is shared, not copied)."""
        return {"id": self.id, "pd": self.pd, "score": self.score, "decision": self.decision, "reasons": self.reasons,
                "logit": self.logit, "notes": self.notes}


def model_threshold(meta: Mapping[str, Any]) -> float | None:
    """The model's decision threshold on the PD, if training chose one (a number or ``{"value": t}``)."""
    spec = meta.get("threshold")
    if isinstance(spec, Mapping):
        spec = spec.get("value", spec.get("pd"))
    return None if spec is None else float(spec)


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """JSON-like rows -> columns (object arrays); a key a row lacks is a missing value there."""
    names: dict[str, None] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            raise DataError(f"each applicant must be an object of column -> value, got {type(row).__name__}")
        names.update(dict.fromkeys(str(k) for k in row))
    return {n: np.array([row.get(n) for row in rows], dtype=object) for n in names}


def _blocks_sum(per_column: np.ndarray, blocks: list[list[int]]) -> np.ndarray:
    return np.column_stack([per_column[:, cols].sum(axis=1) for cols in blocks]) if blocks else per_column[:, :0]


def _explainer(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], blocks: list[list[int]]
               ) -> tuple[Explain, str]:
    """(X -> (logits, per-input contributions)) for the model kind, and the method's name."""
    spec = dict(meta.get("model") or {})
    kind = spec.get("kind")
    if kind == "gbdt":
        ensemble = TreeEnsemble.from_payload(spec, arrays)

        def trees(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logits, contributions = ensemble.logits_and_contributions(X)
            return logits, _blocks_sum(contributions, blocks)
        return trees, "gbdt path contributions (Saabas)"
    model = model_from_config(spec)
    params = model.check_params(arrays["params"])
    if kind == "logistic":
        weights = params[:-1]

        def linear(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return model.logits(params, X), _blocks_sum(X * weights, blocks)
        return linear, "logistic: weight x standardised value (reference: training mean)"

    def occlusion(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return model.logits(params, X), occlusion_contributions(lambda Z: model.logits(params, Z), X, blocks)
    return occlusion, "mlp: occlusion against the training mean"


class Scorer:
    """A registered horizontal model as an applicant scorer (see the module docstring)."""

    def __init__(self, predictor: Predictor, explain: Explain, *, method: str, threshold: float | None = None,
                 card: ScoreCard | None = None, id_column: str | None = None, top: int = DEFAULT_REASONS) -> None:
        self.predictor = predictor
        self.explain = explain
        self.method = method
        self.threshold = threshold
        self.card = card or ScoreCard()
        self.id_column = id_column
        self.top = top
        self.inputs = [name for name, _ in predictor.input_blocks()]

    @classmethod
    def from_registered(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], *, name: str = "",
                        version: int | None = None, run_id: str | None = None, id_column: str | None = None,
                        top: int = DEFAULT_REASONS, markers: Sequence[str] = (),
                        columns: Mapping[str, tuple[Sequence[str], str]] | None = None) -> Scorer:
        """Build from a registry entry's arrays and meta (horizontal LR, MLP or GBDT); ``markers``: cell texts
        that mean missing beyond the usual ones (the training schema's ``missing``)."""
        label = f"model {name!r}" + (f" v{version}" if version is not None else "")
        kind = (meta.get("model") or {}).get("kind")
        if kind not in ("logistic", "mlp", "gbdt"):
            raise ConfigError(f"{label} is not a horizontal logistic, MLP or GBDT model (kind {kind!r}); a vertical "
                              "model scores with its partners: `sampan score --run RUN --data FILE`")
        try:
            blocks = [cols for _, cols in input_blocks([str(n) for n in meta.get("feature_names", [])])]
            explain, method = _explainer(meta, arrays, blocks)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{label}: cannot be scored ({exc})") from None

        def trees(X: np.ndarray) -> np.ndarray:
            return sigmoid(explain(X)[0])
        predictor = Predictor.from_registered(arrays, meta, name=name, version=version, run_id=run_id,
                                              scorer=trees if kind == "gbdt" else None)
        predictor.markers = predictor.markers | {str(m).strip().lower() for m in markers}
        if columns:  # review R13-SCO-19/SCO-4: each column's own markers; trees route NaN only where trained to
            predictor.column_markers = {c: MISSING_MARKERS | {str(m).strip().lower() for m in own}
                                        for c, (own, _) in columns.items() if own}
            if kind == "gbdt":
                predictor.native_columns = frozenset(c for c, (_, policy) in columns.items() if policy != "error")
        return cls(predictor, explain, method=method, threshold=model_threshold(meta), id_column=id_column, top=top)

    def describe(self) -> dict[str, Any]:
        """What a client needs to know: model, version, inputs, threshold, points scale, reason method."""
        p = self.predictor
        kind = (p.meta.get("model") or {}).get("kind")
        return {"name": p.name, "version": p.version, "run_id": p.run_id, "kind": kind,
                "columns": self.inputs, "id_column": self.id_column, "threshold": self.threshold,
                "points": self.card.as_dict(), "reasons": self.method}

    def score(self, rows: Sequence[Mapping[str, Any]]) -> list[ScoreResult]:
        """Score JSON-like rows (column -> value); ids from ``id_column`` when a row has it, else the position.

        A field no row carries is a missing value in every row (imputed as training did, or refused naming the
        column), not a missing column: a JSON client omits what it does not know."""
        if not rows:
            return []
        columns = rows_to_columns(rows)
        for name in self.inputs:
            indicator_of = name.removesuffix("_missing") if name.endswith("_missing") else None
            if name not in columns and not (indicator_of and indicator_of in columns):
                columns[name] = np.full(len(rows), None, dtype=object)
        return self.score_columns(columns)

    def score_columns(self, columns: Mapping[str, Any], *, ids: Sequence[str] | None = None, where: str = "",
                      first_row: int = 0) -> list[ScoreResult]:
        """Score a batch given as columns; ``where``/``first_row`` place errors in their file."""
        X = self.predictor.encode(columns, where=where, first_row=first_row)
        logits, contributions = self.explain(X)
        pd = sigmoid(logits)
        points = self.card.points(pd)
        if ids is None:
            ids = self._ids(columns, len(pd), first_row)
        reasons = reason_codes_batch(self.inputs, contributions, self.top)
        return [ScoreResult(str(ids[i]), p, s, self._decision(p), reasons[i], z)
                for i, (p, s, z) in enumerate(zip(pd.tolist(), points.tolist(), logits.tolist(), strict=True))]

    def _ids(self, columns: Mapping[str, Any], n: int, first_row: int) -> list[str]:
        if self.id_column is not None and self.id_column in columns:
            return [str(v) for v in np.asarray(columns[self.id_column])]
        return [str(first_row + i) for i in range(n)]

    def _decision(self, pd: float) -> str | None:
        if self.threshold is None:
            return None
        return "decline" if pd >= self.threshold else "approve"
