"""What answers /v1/score: a horizontal model scored here at the bank, or the vertical scoring session.

Both give, per applicant: the probability of default (float64, unrounded), the points score
(`sampan.vertical.scoring.ScoreCard`), the decision at the model's threshold and reason codes (the
features that raise this applicant's risk most, on the logit scale; never all zero: at least the
largest effect is named).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sampan.errors import DataError
from sampan.models.predictor import Predictor
from sampan.serve.session import VerticalScoringSession
from sampan.vertical.scoring import ScoreCard

__all__ = ["ModelInfo", "ScoringBackend", "HorizontalBackend", "VerticalBackend", "decide"]

_TOP = 4


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int | None
    format: str
    kind: str
    topology: str  # "horizontal" (scored at the bank) or "vertical" (with the partners)
    threshold: float
    inputs: list[str] = field(default_factory=list)


class ScoringBackend(Protocol):
    info: ModelInfo

    def score(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def decide(pd: float, threshold: float) -> str:
    """The decision at the model's threshold: decline when P(default) is at or above it."""
    return "decline" if pd >= threshold else "approve"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _top_reasons(names: list[str], effects: np.ndarray) -> list[dict[str, Any]]:
    """Features raising the risk most; if none does, the largest effect (reasons are never empty or all zero)."""
    order = np.argsort(-effects)
    chosen = [k for k in order[:_TOP] if effects[k] > 0] or [int(np.argmax(np.abs(effects)))]
    return [{"source": "bank", "feature": names[k], "logit_contribution": float(effects[k])} for k in chosen]


@dataclass
class HorizontalBackend:
    """A registered horizontal model scored in this process (no party is contacted)."""

    predictor: Predictor
    info: ModelInfo
    card: ScoreCard = field(default_factory=ScoreCard)

    @classmethod
    def from_predictor(cls, predictor: Predictor, threshold: float | None = None) -> HorizontalBackend:
        meta = predictor.meta
        model = dict(meta.get("model") or {})
        chosen = threshold if threshold is not None else float(meta.get("threshold", 0.5))
        info = ModelInfo(predictor.name, predictor.version, str(meta.get("format", "sampan-registry")),
                         str(model.get("kind", "logistic")), "horizontal", chosen, predictor.columns)
        return cls(predictor, info)

    def score(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        columns = self.predictor.columns
        frame = {c: np.array([a.get("features", {}).get(c) for a in applicants], dtype=object) for c in columns}
        X = self.predictor.encode(frame)
        pd = np.asarray(self.predictor.scorer(X), dtype=np.float64)
        points = self.card.points(pd)
        effects = self._occlusion(X, pd)
        return [{"applicant": str(a.get("id") or i), "probability_of_default": float(pd[i]),
                 "score": float(points[i]), "decision": decide(float(pd[i]), self.info.threshold),
                 "reasons": _top_reasons(columns, effects[i]), "missing_at": [], "unknown_at_bank": False}
                for i, a in enumerate(applicants)]

    def _occlusion(self, X: np.ndarray, pd: np.ndarray) -> np.ndarray:
        """Per input column: logit(PD) minus logit(PD with that column at the federation's mean (0 after
        standardisation)); model-agnostic (LR, MLP, GBDT), one batched call per column."""
        groups: dict[str, list[int]] = {}
        for j, name in enumerate(self.predictor.feature_names):
            groups.setdefault(name.partition("=")[0], []).append(j)
        base = _logit(pd)
        effects = np.zeros((len(X), len(self.predictor.columns)))
        for k, column in enumerate(self.predictor.columns):
            held = X.copy()
            held[:, groups.get(column, [])] = 0.0
            effects[:, k] = base - _logit(np.asarray(self.predictor.scorer(held), dtype=np.float64))
        return effects

    def close(self) -> None:
        return None


@dataclass
class VerticalBackend:
    """The vertical model through the long-lived scoring session; the bank's results, read at the bank."""

    session: VerticalScoringSession
    info: ModelInfo
    timeout_s: float = 30.0

    def score(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        ids = [str(a.get("id") or "") for a in applicants]
        empty = [i for i, a in enumerate(ids) if not a]
        if empty:
            raise DataError(f"applicants {empty[:10]}: a vertical model scores by registration number ('id')")
        out = []
        for r in self.session.score(ids, self.timeout_s):
            pd = float(r["probability_of_default"])
            reasons = list(r.get("reasons") or [])
            out.append({"applicant": r["applicant"], "probability_of_default": pd, "score": float(r["score"]),
                        "decision": decide(pd, self.info.threshold), "reasons": reasons[:_TOP + 1],
                        "missing_at": list(r.get("missing_at") or []),
                        "unknown_at_bank": bool(r.get("unknown_at_bank", False))})
        return out

    def close(self) -> None:
        self.session.close()
