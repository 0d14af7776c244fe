"""Backtesting a served model when outcomes arrive, and a challenger beside it (issue 13, item 9).

Both run at the bank that scored the applicants, on its own files: the outcomes file holds the scored
population's columns and the observed label. `backtest` re-scores it with the registered model and compares
AUC, KS and the bad rate per score band with what the model showed at training (the run's pooled holdout);
`challenge` scores one population with two models and reports both models' metrics and how far they agree.
Each result is appended to the training run's signed audit log (`monitoring_backtest` / `monitoring_challenger`)
so the validation pack shows it. What each role learns: nothing leaves the bank; the audit log holds
aggregates only (metrics, counts per band), never an applicant's row, id or PD.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import DataError
from sampan.metrics import binary_metrics
from sampan.runtime.monitoring import DriftReference, ScoreMonitor
from sampan.runtime.scorers import load_scorer, parse_model_ref
from sampan.runtime.store import Store

__all__ = ["MONITORING_EVENTS", "backtest", "challenge", "monitoring_summary", "read_columns", "read_labels",
           "score_monitor"]

MONITORING_EVENTS = ("monitoring_drift", "monitoring_backtest", "monitoring_challenger")
# the fewest rows an aggregate is logged over: fewer, and a "metric" is one applicant's outcome or PD (R13-MON-1)
MIN_POPULATION = 50


def _check_population(path: Path, rows: int, what: str) -> None:
    if rows < MIN_POPULATION:
        raise DataError(f"{path}: {rows} rows; a {what} needs at least {MIN_POPULATION} (its result is logged on the "
                        "training run and served by /v1/monitoring: over fewer rows it would describe individuals)")


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """A CSV file as text columns (the scorer parses and checks them, naming the file and rows)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = list(reader)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); re-export the file as UTF-8 "
                        "(e.g. `iconv -f latin1 -t utf-8`)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not header:
        raise DataError(f"{path}: empty file (a header row and at least one row are needed)")
    short = [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]
    if short:
        raise DataError(f"{path}: rows {short[:10]} have {len(rows[short[0] - 2])} cells, the header has {len(header)}")
    if not rows:
        raise DataError(f"{path}: no rows")
    return {name: np.array([r[i] for r in rows], dtype=object) for i, name in enumerate(header)}


def read_labels(path: Path, columns: dict[str, np.ndarray], label: str) -> np.ndarray:
    """The outcome column as 0/1; an error names the file, column and rows otherwise."""
    if label not in columns:
        raise DataError(f"{path}: no outcome column {label!r} (columns: {sorted(columns)}); name it with --label")
    values = np.array([str(v).strip() for v in columns[label]])
    bad = np.flatnonzero(~np.isin(values, ["0", "1"]))
    if bad.size:
        raise DataError(f"{path}: column {label!r} must be 0 or 1; rows {[int(i) + 2 for i in bad[:10]]} are not "
                        f"(e.g. {values[bad[0]]!r})")
    return values.astype(int)


def _label_column(store: Store, run_id: str, label: str | None) -> str:
    if label:
        return label
    config = store.get_run(run_id).config or {}
    return str((config.get("schema") or {}).get("label") or "label")


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    if not 0 < int(y.sum()) < len(y):
        return {"n": float(len(y)), "positive_rate": float(y.mean()) if len(y) else None}
    return {k: (float(v) if math.isfinite(v) else None) for k, v in binary_metrics(y, p).items()}


def _bands(y: np.ndarray, p: np.ndarray, reference: DriftReference, training: list[dict[str, Any]]
           ) -> list[dict[str, Any]]:
    """Bad rate per training score band (edges fixed at training), beside the band's training bad rate."""
    edges = np.asarray(reference.score_edges, float)
    index = np.searchsorted(edges, p, side="right")
    ordered = sorted(training, key=lambda b: float(b["score_low"]))
    trained = ordered if len(ordered) == len(edges) + 1 else [None] * (len(edges) + 1)  # bands, lowest PD first
    lows = [None, *edges.tolist()]
    rows = []
    for band in range(len(edges) + 1):
        mask = index == band
        if not mask.any():
            continue
        then = trained[band]
        rows.append({"pd_from": lows[band], "pd_to": float(edges[band]) if band < len(edges) else None,
                     "count": int(mask.sum()), "bads": int(y[mask].sum()), "bad_rate": float(y[mask].mean()),
                     "training_bad_rate": float(then["bad_rate"]) if then else None})
    return rows


def backtest(store: Store, model_ref: str, outcomes: Path, *, label: str | None = None) -> dict[str, Any]:
    """AUC/KS/bad rate by band of the scored population (with its outcomes) vs the model at training."""
    scorer = load_scorer(store, model_ref)
    name, version = parse_model_ref(model_ref)
    entry = store.get_model(name, version)
    columns = read_columns(outcomes)
    y = read_labels(outcomes, columns, _label_column(store, entry.run_id, label))
    _check_population(outcomes, len(y), "backtest")
    p = np.array([r.pd for r in scorer.score_columns(columns, where=str(outcomes))])
    info = store.get_run(entry.run_id).info or {}
    reference = DriftReference.from_model(entry.arrays, entry.meta, info)
    bands = _bands(y, p, reference, list(info.get("score_bands") or []))
    result: dict[str, Any] = {"model": entry.name, "version": entry.version, "rows": len(y),
              "now": _metrics(y, p), "training": dict(entry.meta.get("metrics") or info.get("final_metrics") or {}),
              "bands": bands}
    store.log_event(entry.run_id, "monitoring_backtest", {**result, "bands": len(bands)})
    return result


def challenge(store: Store, champion_ref: str, challenger_ref: str, data: Path, *, label: str | None = None
              ) -> dict[str, Any]:
    """Two models on one population: each one's metrics (when labels are there) and their agreement."""
    champion, challenger = load_scorer(store, champion_ref), load_scorer(store, challenger_ref)
    columns = read_columns(data)
    _check_population(data, len(next(iter(columns.values()))), "challenger comparison")
    p1 = np.array([r.pd for r in champion.score_columns(columns, where=str(data))])
    p2 = np.array([r.pd for r in challenger.score_columns(columns, where=str(data))])
    t1 = champion.threshold if champion.threshold is not None else 0.5
    t2 = challenger.threshold if challenger.threshold is not None else 0.5
    ranks1, ranks2 = np.argsort(np.argsort(p1)), np.argsort(np.argsort(p2))
    rank_corr = float(np.corrcoef(ranks1, ranks2)[0, 1]) if len(p1) > 1 and ranks1.std() and ranks2.std() else None
    result: dict[str, Any] = {
        "champion": champion_ref, "challenger": challenger_ref, "rows": len(p1),
        "agreement": {"rank_correlation": rank_corr, "same_decision": float(np.mean((p1 >= t1) == (p2 >= t2))),
                      "mean_abs_pd_difference": float(np.mean(np.abs(p1 - p2))),
                      "thresholds": [float(t1), float(t2)]}}
    entry = store.get_model(*parse_model_ref(champion_ref))
    label_name = _label_column(store, entry.run_id, label)
    if label_name in columns:
        y = read_labels(data, columns, label_name)
        result["metrics"] = {"champion": _metrics(y, p1), "challenger": _metrics(y, p2)}
    store.log_event(entry.run_id, "monitoring_challenger", result)
    return result


def score_monitor(store: Store, model_ref: str) -> ScoreMonitor:
    """A `ScoreMonitor` for a registered model (its training reference): `sampan serve` feeds it the PDs it serves."""
    entry = store.get_model(*parse_model_ref(model_ref))
    return ScoreMonitor(DriftReference.from_model(entry.arrays, entry.meta, store.get_run(entry.run_id).info or {}))


def monitoring_summary(store: Store, model_ref: str, limit: int = 10) -> dict[str, Any]:
    """The latest drift, backtest and challenger results recorded for a model (for /v1/monitoring)."""
    entry = store.get_model(*parse_model_ref(model_ref))
    out: dict[str, Any] = {"model": entry.name, "version": entry.version}
    events = [e for e in store.events(entry.run_id) if e.kind in MONITORING_EVENTS]
    for kind in MONITORING_EVENTS:
        mine = [{"at": e.at.isoformat(timespec="seconds"), **e.detail} for e in events if e.kind == kind]
        out[kind.removeprefix("monitoring_")] = mine[-limit:]
    return out
