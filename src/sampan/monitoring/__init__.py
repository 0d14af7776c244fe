"""Monitoring a served model (issue 13, item 9): the public API `sampan serve` and Python callers use.

Drift (PSI at each party, bins fixed at training; `sampan.runtime.monitoring`), backtesting when outcomes arrive
and a challenger side by side (`sampan.runtime.backtest`). `service_report(model)` is what the scoring
service's /v1/monitoring shows: the latest results recorded for the model in the bank's store (aggregates only).

May import: anything below it (sampan.runtime and the layers under it).
"""

from __future__ import annotations

import os
from typing import Any

from sampan.runtime.backtest import backtest, challenge, monitoring_summary, score_monitor
from sampan.runtime.monitoring import DriftReference, DriftRelease, ScoreMonitor, drift_release, psi, psi_status

__all__ = ["DriftReference", "DriftRelease", "ScoreMonitor", "backtest", "challenge", "drift_release",
           "monitoring_summary", "psi", "psi_status", "score_monitor", "service_report"]


def service_report(model: str, store: Any = None) -> dict[str, Any]:
    """The latest drift, backtest and challenger results for ``model`` (NAME[@VERSION]) in the bank's store
    (``store``, else $SAMPAN_STORE, else the default store)."""
    from sampan.runtime.store import DEFAULT_STORE_URL, Store

    return monitoring_summary(store or Store.open(os.environ.get("SAMPAN_STORE") or DEFAULT_STORE_URL), model)
