"""What answers /v1/score: a horizontal model scored here at the bank, or the vertical scoring session.

Both give, per applicant: the probability of default (float64, unrounded), the points score
(`sampan.models.explain.ScoreCard`), the decision at the threshold (the configured one, else the model's)
and reason codes in one shape (``code``, ``source``, ``feature``, ``logit_contribution``, ``effect``):
horizontal ones from `sampan.models.scorer.Scorer` (its method per model kind), vertical ones from the
joint-scoring protocol (the bank's own features, and the partners' summed effect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sampan.errors import DataError
from sampan.models.scorer import Scorer
from sampan.serve.session import VerticalScoringSession, check_ids

__all__ = ["ModelInfo", "ScoringBackend", "HorizontalBackend", "VerticalBackend", "decide"]

_TOP = 4


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int | None
    format: str
    kind: str
    topology: str  # "horizontal" (scored at the bank) or "vertical" (with the partners)
    threshold: float | None
    inputs: list[str] = field(default_factory=list)
    reasons: str = ""


class ScoringBackend(Protocol):
    info: ModelInfo

    def score(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    async def score_async(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def decide(pd: float, threshold: float | None) -> str | None:
    """The decision at the threshold: decline when P(default) is at or above it; None without one."""
    return None if threshold is None else ("decline" if pd >= threshold else "approve")


def _reason(rank: int, source: str, feature: str, value: float) -> dict[str, Any]:
    return {"code": f"R{rank:02d}", "source": source, "feature": feature, "logit_contribution": value,
            "effect": "raises risk" if value > 0 else "lowers risk" if value < 0 else "neutral"}


@dataclass
class HorizontalBackend:
    """A registered horizontal model scored in this process by `Scorer` (no party is contacted)."""

    scorer: Scorer
    info: ModelInfo
    _pending: list[tuple[Sequence[Mapping[str, Any]], asyncio.Future[list[dict[str, Any]]]]] = field(
        default_factory=list)

    @classmethod
    def from_scorer(cls, scorer: Scorer, threshold: float | None = None) -> HorizontalBackend:
        if threshold is not None:
            scorer.threshold = threshold
        d = scorer.describe()
        info = ModelInfo(str(d["name"]), d["version"], str(scorer.predictor.meta.get("format", "sampan-registry")),
                         str(d["kind"]), "horizontal", scorer.threshold, list(d["columns"]), str(d["reasons"]))
        return cls(scorer, info)

    def score(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        columns = self.scorer.inputs
        frame = {c: [a.get("features", {}).get(c) for a in applicants] for c in columns}
        ids = [str(a.get("id") or i) for i, a in enumerate(applicants)]
        return [{"applicant": r.id, "probability_of_default": r.pd, "score": r.score, "decision": r.decision,
                 "reasons": [_reason(k, "bank", x["feature"], float(x["contribution"]))
                             for k, x in enumerate(r.reasons, start=1)],
                 "missing_at": [], "unknown_at_bank": False}
                for r in self.scorer.score_columns(frame, ids=ids)]

    async def score_async(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Scored on the event loop, batched with the requests that arrived in the same loop turn: one numpy
        pass for all of them costs about what one row does (no thread hop either)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        numbered = [{**a, "id": a.get("id") or str(i)} for i, a in enumerate(applicants)]  # positions in this request
        self._pending.append((numbered, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            results = self.score([a for applicants, _ in pending for a in applicants])
        except Exception:  # one bad request must not fail the others: each alone, with its own error
            for applicants, future in pending:
                try:
                    future.set_result(self.score(applicants))
                except Exception as exc:
                    future.set_exception(exc)
            return
        begin = 0
        for applicants, future in pending:
            future.set_result(results[begin:begin + len(applicants)])
            begin += len(applicants)

    def close(self) -> None:
        return None


@dataclass
class VerticalBackend:
    """The vertical model through the long-lived scoring session; the bank's results, read at the bank."""

    session: VerticalScoringSession
    info: ModelInfo
    timeout_s: float = 30.0

    def _ids(self, applicants: Sequence[Mapping[str, Any]]) -> list[str]:
        ids = [str(a.get("id") or "") for a in applicants]
        empty = [i for i, a in enumerate(ids) if not a]
        if empty:
            raise DataError(f"applicants {empty[:10]}: a vertical model scores by registration number ('id')")
        check_ids(ids)  # the bank's rules, here: a bad id fails its own request only (R13-SRV-3)
        return ids

    def score(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self._shape(self.session.score(self._ids(applicants), self.timeout_s))

    async def score_async(self, applicants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Waits for the session's batch without holding a thread."""
        future = self.session.queue.submit(self._ids(applicants))
        return self._shape(await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s))

    def _shape(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in results:
            pd = float(r["probability_of_default"])
            reasons = [_reason(k, str(x["source"]), str(x["feature"]), float(x["logit_contribution"]))
                       for k, x in enumerate(list(r.get("reasons") or [])[:_TOP + 1], start=1)]
            out.append({"applicant": r["applicant"], "probability_of_default": pd, "score": float(r["score"]),
                        "decision": decide(pd, self.info.threshold), "reasons": reasons,
                        "missing_at": ["partner data"] if r.get("missing_at") else [],  # never which partner
                        "unknown_at_bank": bool(r.get("unknown_at_bank", False))})
        return out

    def close(self) -> None:
        self.session.close()
