"""What the console shows of one run, and of several side by side, read from the run store only.

Why a module of its own: the live run page polls this every few seconds while a run writes to the same
store, so it reads what the runner already persists (run row, per-round metrics, the write-ahead privacy
ledger, the signed audit events) and never recomputes anything a workflow or the receipt owns. Epsilon
per party and per level is the ledger's own `Ledger.summary()`: the finished run's copy in
``info["privacy"]`` (exactly what the privacy receipt prints, `sampan.runtime.receipt`), or, while the run
is still going, the same summary of the durable ledger (`Store.ledger`), replayed by `Ledger.from_json`
and cached per ledger text, so a page that polls does not replay the accountant each time.

Nothing here writes: a reader of the view (analyst, auditor) cannot change a run by reading it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sampan.privacy.ledger import LEVELS, Ledger
from sampan.runtime.store import EventRow, RunRow, Store

__all__ = ["EventView", "PartyEpsilon", "RoundView", "RunComparison", "RunView", "compare_runs", "read_run_view"]

# Audit entries whose detail is bulky bookkeeping (per-message traffic, checkpoint digests): the live page
# lists them by kind and round only; the full detail stays in the signed log (`sampan audit-log show`).
_SUMMARISED = {"traffic": ("round", "parties"), "round_saved": ("round",)}


@dataclass(frozen=True)
class RoundView:
    """One finished round (or stage): its metrics overall and per party, as the workflow recorded them."""

    round: int
    seconds: float
    parties: list[str]
    train_loss: float | None
    global_metrics: dict[str, Any]
    party_metrics: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PartyEpsilon:
    """Epsilon a party spent in this run, all levels composed (what its budget binds) and per level alone."""

    party: str
    epsilon_spent: float
    epsilon_budget: float | None
    delta: float | None
    by_level: dict[str, float]


@dataclass(frozen=True)
class EventView:
    seq: int | None
    at: str
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class RunView:
    """A run as the live page shows it: status, progress, rounds, epsilon per party and level, events."""

    run_id: str
    name: str
    workflow: str
    status: str
    round: int
    total_rounds: int
    error: str | None
    created_at: str
    updated_at: str
    parties: list[str]
    rounds: list[RoundView]
    epsilon: dict[str, PartyEpsilon]
    differential_privacy: bool
    accountant: str | None
    events: list[EventView]
    events_total: int
    final_metrics: dict[str, Any]
    models: list[dict[str, Any]]
    report_path: str | None
    receipt_path: str | None
    budget_stop: Any = None

    @property
    def finished(self) -> bool:
        return self.status in {"completed", "failed", "cancelled"}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finished": self.finished}


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side: each metric (and each config key that differs) as one row of values per run."""

    run_ids: list[str]
    runs: list[RunView]
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    epsilon_spent: dict[str, list[float | None]] = field(default_factory=dict)
    config_differences: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run_ids": self.run_ids, "runs": [r.to_dict() for r in self.runs], "metrics": self.metrics,
                "epsilon_spent": self.epsilon_spent, "config_differences": self.config_differences}


class _SummaryCache:
    """`Ledger.summary()` per ledger text (sha256): replaying the events is the only costly part of a view."""

    def __init__(self, size: int = 64) -> None:
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def summary(self, ledger_json: str) -> dict[str, Any]:
        key = hashlib.sha256(ledger_json.encode()).hexdigest()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        summary = Ledger.from_json(ledger_json).summary()
        with self._lock:
            self._items[key] = summary
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return summary


_CACHE = _SummaryCache()


def _privacy_summary(store: Store, row: RunRow) -> dict[str, Any] | None:
    """The ledger summary the receipt uses once the run is done; the durable ledger's while it runs."""
    stored = (row.info or {}).get("privacy")
    if isinstance(stored, Mapping) and stored.get("parties"):
        return dict(stored)
    text = store.ledger(row.run_id)
    if text is None:
        return None
    try:
        return _CACHE.summary(text)
    except (ValueError, KeyError):  # a workflow that keeps a ledger of another shape: nothing to show
        return None


def _epsilon(summary: Mapping[str, Any] | None) -> dict[str, PartyEpsilon]:
    out: dict[str, PartyEpsilon] = {}
    for party, entry in dict((summary or {}).get("parties") or {}).items():
        budget = dict(entry.get("budget") or {})
        levels = dict(entry.get("epsilon_by_level") or {})
        out[party] = PartyEpsilon(
            party=party,
            epsilon_spent=float(entry.get("epsilon_spent") or 0.0),
            epsilon_budget=float(budget["epsilon"]) if budget.get("epsilon") is not None else None,
            delta=float(budget["delta"]) if budget.get("delta") is not None else None,
            by_level={lvl: float(levels.get(lvl) or 0.0) for lvl in LEVELS},
        )
    return out


def _event(row: EventRow) -> EventView:
    detail = dict(row.detail or {})
    if row.kind in _SUMMARISED:
        detail = {k: detail[k] for k in _SUMMARISED[row.kind] if k in detail}
    return EventView(seq=row.seq, at=row.at.isoformat(timespec="seconds"), kind=row.kind, detail=detail)


def _round(number: int, seconds: float, metrics: Mapping[str, Any]) -> RoundView:
    loss = metrics.get("train_loss")
    return RoundView(
        round=number,
        seconds=float(seconds),
        parties=[str(p) for p in metrics.get("parties") or []],
        train_loss=float(loss) if isinstance(loss, (int, float)) else None,
        global_metrics=dict(metrics.get("global") or {}),
        party_metrics={str(p): dict(m or {}) for p, m in dict(metrics.get("party") or {}).items()},
    )


def _report_files(row: RunRow, default_dir: str | Path | None) -> tuple[str | None, str | None]:
    """Where the runner wrote the report and receipt (`write_run_report`: report_dir/<run id>.html|.receipt.json);
    `default_dir` when the stored config names no folder (a coordinator's report folder)."""
    report_dir = ((row.config or {}).get("run") or {}).get("report_dir") or default_dir
    if not report_dir:
        return None, None
    report, receipt = Path(report_dir) / f"{row.run_id}.html", Path(report_dir) / f"{row.run_id}.receipt.json"
    return (str(report) if report.is_file() else None), (str(receipt) if receipt.is_file() else None)


def _parties(row: RunRow, rounds: Sequence[RoundView], epsilon: Mapping[str, PartyEpsilon]) -> list[str]:
    config = row.config or {}
    named = ((config.get("deploy") or {}).get("parties")) or [p.get("name") for p in config.get("parties") or []]
    found = [str(p) for p in named if p] or sorted({p for r in rounds for p in r.parties} | set(epsilon))
    joined = (row.info or {}).get("parties")
    if not found and isinstance(joined, Mapping):
        found = sorted(joined)
    return found


def read_run_view(store: Store, run_id: str, *, events_limit: int = 200,
                  report_dir: str | Path | None = None) -> RunView:
    """The run's view now. `events_limit` keeps the newest entries (the total is in `events_total`);
    `report_dir`: where reports are when the run's config names no folder (the coordinator's).

    Raises `StoreError` (naming the run) when the store has no such run."""
    row = store.get_run(run_id)
    info = row.info or {}
    rounds = [_round(r.round, r.seconds, r.metrics or {}) for r in store.rounds(run_id)]
    summary = _privacy_summary(store, row)
    epsilon = _epsilon(summary)
    events = store.events(run_id)
    report, receipt = _report_files(row, report_dir)
    models = list(info.get("models") or ([info["model"]] if info.get("model") else []))
    return RunView(
        run_id=row.run_id,
        name=row.name,
        workflow=row.workflow,
        status=row.status,
        round=int(row.current_round or 0),
        total_rounds=int(row.total_rounds or 0),
        error=row.error,
        created_at=row.created_at.isoformat(timespec="seconds"),
        updated_at=row.updated_at.isoformat(timespec="seconds"),
        parties=_parties(row, rounds, epsilon),
        rounds=rounds,
        epsilon=epsilon,
        differential_privacy=bool(summary) or bool((row.config or {}).get("privacy")),
        accountant=(summary or {}).get("accountant"),
        events=[_event(e) for e in events[-events_limit:]] if events_limit > 0 else [],
        events_total=len(events),
        final_metrics=dict(info.get("final_metrics") or {}),
        models=[dict(m) for m in models],
        report_path=report,
        receipt_path=receipt,
        budget_stop=info.get("budget_stop"),
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def compare_runs(store: Store, run_ids: Sequence[str], *, report_dir: str | Path | None = None) -> RunComparison:
    """Runs side by side (MLflow's compare view): final metrics, epsilon spent per party, and every run-config
    key whose value differs between them (the reason two runs differ is usually one of those)."""
    ids = list(dict.fromkeys(run_ids))
    views = [read_run_view(store, rid, events_limit=0, report_dir=report_dir) for rid in ids]
    metric_names = sorted({k for v in views for k in v.final_metrics})
    metrics = {m: [v.final_metrics.get(m) for v in views] for m in metric_names}
    party_names = sorted({p for v in views for p in v.epsilon})
    spent = {p: [v.epsilon[p].epsilon_spent if p in v.epsilon else None for v in views] for p in party_names}
    configs = [_flatten({k: c for k, c in (store.get_run(rid).config or {}).items() if k != "deploy"}) for rid in ids]
    keys = sorted({k for c in configs for k in c})
    differences = {k: [c.get(k) for c in configs] for k in keys
                   if len({repr(c.get(k)) for c in configs}) > 1 and not k.startswith("run.name")}
    return RunComparison(run_ids=ids, runs=views, metrics=metrics, epsilon_spent=spent, config_differences=differences)
