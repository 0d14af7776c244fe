"""What a horizontal run reports: the typed outcome, metrics from merged histograms, report curves, traffic.

Shared by the horizontal workflows (training, GBDT, evaluation); no protocol here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.metrics import ScoreHistogram
from sampan.models import Model

__all__ = ["RunOutcome", "TrafficMeter", "histogram_metrics", "result_info"]


@dataclass(frozen=True)
class RunOutcome:
    """The typed outcome for Python callers (`WorkflowResult.outcome`)."""

    run_id: str
    rounds: int
    final_metrics: dict[str, float]
    params: np.ndarray
    scaler: dict[str, np.ndarray]
    model: Model
    histogram: ScoreHistogram | None
    privacy: dict[str, Any] | None = None
    budget_stop: str | None = None


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _downsample(xs: np.ndarray, ys: np.ndarray, limit: int = 400) -> tuple[list[float], list[float]]:
    if len(xs) > limit:
        idx = np.unique(np.linspace(0, len(xs) - 1, limit).round().astype(int))
        xs, ys = xs[idx], ys[idx]
    return [round(float(x), 6) for x in xs], [round(float(y), 6) for y in ys]


def result_info(histogram: ScoreHistogram | None) -> dict[str, Any]:
    """The report's ROC curve and calibration table from merged score histograms (when both labels occur)."""
    info: dict[str, Any] = {}
    if histogram is not None and 0 < histogram.positive_rate < 1:
        fpr, tpr, _ = histogram.roc_curve()
        info["roc"] = _downsample(np.asarray(fpr), np.asarray(tpr))
        cal = histogram.calibration(10)
        info["calibration"] = [list(map(float, cal.mean_predicted)), list(map(float, cal.fraction_positive)),
                               list(map(int, cal.counts))]
    return info


def histogram_metrics(histogram: ScoreHistogram, loss_sum: float, brier_sum: float, n: int) -> dict[str, Any]:
    """Global metrics from merged holdout histograms and sums (what a federated evaluation reports)."""
    metrics: dict[str, Any] = {"log_loss": loss_sum / max(n, 1), "brier": brier_sum / max(n, 1), "n": n,
                               "positive_rate": histogram.positive_rate}
    if 0 < histogram.positive_rate < 1:
        metrics.update(auc=histogram.auc(), pr_auc=histogram.pr_auc(), ks=histogram.ks(),
                       ece=histogram.expected_calibration_error())
    return {k: _finite(v) for k, v in metrics.items()}


class TrafficMeter:
    """Per-round traffic from a transport's cumulative `TrafficLog` (what is new since the last call)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], tuple[int, int]] = {}

    def delta(self, transport: Any) -> dict[str, Any] | None:
        """What crossed the wire since the last call, per message kind and direction (sizes in bytes).

        `messages_bytes` sums over parties; `by_party` keeps each party's rows, so the receipt can be
        rebuilt from the store alone, across resumes (a resumed coordinator has a fresh transport)."""
        traffic = getattr(transport, "traffic", None)
        if traffic is None:
            return None
        delta: dict[str, dict[str, list[int]]] = {}
        by_party: list[dict[str, Any]] = []
        parties: set[str] = set()
        for row in traffic.summary():
            key = (str(row["party"]), str(row["direction"]), str(row["kind"]))
            msgs, size = int(row["messages"]), int(row["bytes"])
            seen = self._seen.get(key, (0, 0))
            if (msgs, size) == seen:
                continue
            self._seen[key] = (msgs, size)
            parties.add(key[0])
            entry = delta.setdefault(key[1], {}).setdefault(key[2], [0, 0])
            entry[0] += msgs - seen[0]
            entry[1] += size - seen[1]
            by_party.append({"party": key[0], "direction": key[1], "kind": key[2], "messages": msgs - seen[0],
                             "bytes": size - seen[1]})
        return {"parties": len(parties), "messages_bytes": delta, "by_party": by_party}
