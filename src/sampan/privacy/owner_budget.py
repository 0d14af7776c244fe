"""One lifetime privacy budget per data owner and dataset, across every job (the owner's budget book).

Why: each run keeps its own ledger, so repeated runs on the same customers would compose without any stop. The book
holds, per (party, dataset), a lifetime total (epsilon, delta) the owner set, optionally with a period cap (at most
`period_epsilon` spent in any `period_days`, counting each charge by the time it was made plus every open
reservation's unspent rest, checked at reservation AND at each charge: it slows spending, never refills the total;
review R14-CONSENT-2). A job's planned (epsilon, delta) is RESERVED when the owner approves it (refused, with
party, dataset, remaining and requested, when it exceeds the unreserved remainder or the period cap), it is CHARGED
as the job runs (the running total the job's own ledger composed; never above the reservation: the step that would
pass it is refused before anything is released), and SETTLED at the end: what was spent stays spent, the unspent
rest of the reservation is released. An interrupted or cancelled job keeps what it spent. A job approved but never
started may be RELEASED (`release`: the whole reservation returns; the job id may then reserve again, since nothing
was spent). Across jobs the book composes by basic composition (epsilons add, deltas add): never smaller than the
truth. Within a job the job's own RDP/PLD ledger composes more tightly, and the book records its total.

Crash safety: every change is written (atomically: temporary file, fsync, rename) before the call returns, and
calls are idempotent per job id, so a job resumed after a crash never reserves or charges twice, and a crash
between the write and the reply leaves exactly one reservation. A job id reserves for ONE dataset and ONE planned
spend: asked again for another dataset or another spend, the book refuses rather than hand back the first
reservation (review R14-CONSENT-1), and a settled job id never reserves again. Calls from several threads (and
processes: an advisory file lock) are serialised and each re-reads the file first.

A job without DP reserves (0, 0) and is listed as exact: the book makes no DP claim for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.errors import BudgetError
from sampan.files import atomic_write_bytes

__all__ = ["BookEntry", "BudgetRefused", "DatasetBudget", "OwnerBudgetBook"]

_DAY_S = 86400.0
RELEASED = "released"  # the outcome of a reservation withdrawn before its job started (nothing spent)
_SLACK = 1e-12  # float addition slack only
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class BudgetRefused(BudgetError, PermissionError):
    """The book refuses a reservation or a charge; the message names party, dataset, remaining and requested."""


@dataclass(frozen=True)
class DatasetBudget:
    """`[data.<name>.budget]` of party.toml. `epsilon=None`: no lifetime total (spending is still recorded)."""

    epsilon: float | None = None
    delta: float | None = None
    period_days: float | None = None
    period_epsilon: float | None = None


@dataclass(frozen=True)
class BookEntry:
    job_id: str
    dataset: str
    reserved_epsilon: float
    reserved_delta: float
    spent_epsilon: float
    spent_delta: float
    open_ended: bool
    state: str        # "reserved" (running or not started) or "settled"
    reserved_at: float
    settled_at: float | None
    outcome: str | None


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path.resolve()), threading.Lock())


class OwnerBudgetBook:
    """The budget book of one party (all its datasets), persisted at `path` (JSON, 0600)."""

    def __init__(self, path: str | Path, party: str, limits: Mapping[str, DatasetBudget | None],
                 *, clock: Callable[[], float] = time.time) -> None:
        self.path, self.party, self.clock = Path(path), party, clock
        self.limits = {k: v or DatasetBudget() for k, v in limits.items()}
        self._lock = _lock_for(self.path)

    # --- persistence ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _open(self) -> Iterator[dict[str, Any]]:
        """The book's content, under the thread and file locks; written back (atomically) if changed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_suffix(".lock"), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                text = self.path.read_text() if self.path.exists() else ""
                data: dict[str, Any] = json.loads(text) if text else {"party": self.party, "jobs": {}, "history": []}
                before = json.dumps(data, sort_keys=True)
                yield data
                after = json.dumps(data, sort_keys=True)
                if after != before:
                    atomic_write_bytes(self.path, after.encode(), mode=0o600)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _limit(self, dataset: str) -> DatasetBudget:
        if dataset not in self.limits:
            raise BudgetRefused(f"party {self.party!r} has no dataset {dataset!r} in its budget book "
                                f"(has {sorted(self.limits)})")
        return self.limits[dataset]

    @staticmethod
    def _entry(raw: Mapping[str, Any]) -> BookEntry:
        return BookEntry(**raw)

    # --- what is used -------------------------------------------------------------------------------
    @staticmethod
    def _used(entry: Mapping[str, Any]) -> tuple[float, float]:
        """What a job holds of the total: its reservation while it is open, its spend once settled (an
        open-ended job holds what it spent so far)."""
        if entry["state"] == "settled" or entry["open_ended"]:
            return float(entry["spent_epsilon"]), float(entry["spent_delta"])
        return (max(float(entry["reserved_epsilon"]), float(entry["spent_epsilon"])),
                max(float(entry["reserved_delta"]), float(entry["spent_delta"])))

    def _totals(self, data: Mapping[str, Any], dataset: str, *, skip: str | None = None) -> tuple[float, float]:
        eps = delta = 0.0
        for job_id, entry in data["jobs"].items():
            if entry["dataset"] != dataset or job_id == skip:
                continue
            e, d = self._used(entry)
            eps, delta = eps + e, delta + d
        return eps, delta

    def _refuse_over(self, data: Mapping[str, Any], dataset: str, epsilon: float, delta: float,
                     what: str, skip: str | None = None, *, period: bool = True) -> None:
        limit = self._limit(dataset)
        used_eps, used_delta = self._totals(data, dataset, skip=skip)
        where = f"party {self.party!r}, dataset {dataset!r}"
        if limit.epsilon is not None and used_eps + epsilon > limit.epsilon + _SLACK:
            raise BudgetRefused(f"{where}: {what} epsilon {epsilon:g} exceeds the remaining lifetime budget "
                                f"{max(limit.epsilon - used_eps, 0.0):g} (total {limit.epsilon:g}, used or "
                                f"reserved {used_eps:g})")
        if limit.delta is not None and used_delta + delta > limit.delta + _SLACK:
            raise BudgetRefused(f"{where}: {what} delta {delta:g} exceeds the remaining lifetime delta "
                                f"{max(limit.delta - used_delta, 0.0):g} (total {limit.delta:g})")
        if period and limit.period_days is not None and limit.period_epsilon is not None:
            period_eps = self._period_used(data, dataset, self.clock() - limit.period_days * _DAY_S, skip=skip)
            if period_eps + epsilon > limit.period_epsilon + _SLACK:
                raise BudgetRefused(f"{where}: {what} epsilon {epsilon:g} exceeds the period cap: "
                                    f"{max(limit.period_epsilon - period_eps, 0.0):g} left of {limit.period_epsilon:g}"
                                    f" per {limit.period_days:g} days")

    def _period_used(self, data: Mapping[str, Any], dataset: str, since: float, *, skip: str | None = None,
                     only: str | None = None) -> float:
        """What the period window holds of `dataset`: every charge made since `since` (by the time it was
        charged: a job reserved before the window and spent inside it counts, review R14-CONSENT-2) plus the
        unspent rest of every open reservation (it may be spent at any moment)."""
        charged = 0.0
        last: dict[str, float] = {}
        for h in data["history"]:
            job = h["job_id"]
            if h["dataset"] != dataset or job == skip or (only is not None and job != only):
                continue
            if h["event"] == "reserve":
                last[job] = 0.0
            elif h["event"] == "charge":
                step = float(h["job_epsilon"]) - last.get(job, 0.0)
                last[job] = float(h["job_epsilon"])
                if h["at"] >= since and step > 0:
                    charged += step
        held = sum(max(float(e["reserved_epsilon"]) - float(e["spent_epsilon"]), 0.0)
                   for j, e in data["jobs"].items()
                   if e["dataset"] == dataset and j != skip and (only is None or j == only)
                   and e["state"] == "reserved" and not e["open_ended"])
        return charged + held

    def _refuse_period_at_charge(self, data: Mapping[str, Any], entry: Mapping[str, Any], epsilon: float) -> None:
        """The period cap, checked again at each charge: the window with this charge made (the job's own
        unspent rest still counted) must stay within `period_epsilon`."""
        dataset, job_id = entry["dataset"], entry["job_id"]
        limit = self._limit(dataset)
        if limit.period_days is None or limit.period_epsilon is None:
            return
        since = self.clock() - limit.period_days * _DAY_S
        others = self._period_used(data, dataset, since, skip=job_id)
        own = self._period_used(data, dataset, since, only=job_id)  # its charges in the window, its open rest
        step = max(epsilon - float(entry["spent_epsilon"]), 0.0)
        rest_now = 0.0 if entry["open_ended"] else max(float(entry["reserved_epsilon"]) - float(entry["spent_epsilon"]),
                                                       0.0)
        rest_after = 0.0 if entry["open_ended"] else max(float(entry["reserved_epsilon"]) - epsilon, 0.0)
        window = others + own - rest_now + step + rest_after
        if window > limit.period_epsilon + _SLACK:
            raise BudgetRefused(f"party {self.party!r}, dataset {dataset!r}, job {job_id!r}: this step (epsilon "
                                f"{step:g}) exceeds the period cap: {max(limit.period_epsilon - window + step, 0.0):g}"
                                f" left of {limit.period_epsilon:g} per {limit.period_days:g} days")

    # --- reserve / charge / settle --------------------------------------------------------------------
    def reserve(self, job_id: str, dataset: str, epsilon: float, delta: float, *,
                open_ended: bool = False) -> BookEntry:
        """Reserve a job's planned spend. Idempotent per job id: a second call asking the same returns the first
        reservation; one asking for another dataset or another spend, or for a settled job, is refused (a job
        id stands for one reservation; a released one, which spent nothing, may reserve afresh).
        `open_ended`: DP without a stated budget, reserving nothing and charged against the remainder as it runs."""
        for name, value in (("epsilon", epsilon), ("delta", delta)):
            if not (math.isfinite(value) and value >= 0):
                raise BudgetRefused(f"party {self.party!r}, dataset {dataset!r}: requested {name} {value!r} is "
                                    "not a finite number >= 0")
        with self._open() as data:
            existing = data["jobs"].get(job_id)
            if existing is not None and not self._released(existing):
                self._same_reservation(existing, job_id, dataset, epsilon, delta, open_ended)
                return self._entry(existing)
            self._refuse_over(data, dataset, 0.0 if open_ended else epsilon, 0.0 if open_ended else delta,
                              "the job's planned", skip=job_id)
            now = self.clock()
            entry = {"job_id": job_id, "dataset": dataset, "reserved_epsilon": 0.0 if open_ended else float(epsilon),
                     "reserved_delta": 0.0 if open_ended else float(delta), "spent_epsilon": 0.0,
                     "spent_delta": 0.0, "open_ended": open_ended, "state": "reserved", "reserved_at": now,
                     "settled_at": None, "outcome": None}
            data["jobs"][job_id] = entry
            self._history(data, "reserve", entry)
            return self._entry(entry)

    @staticmethod
    def _released(entry: Mapping[str, Any]) -> bool:
        return (entry["state"] == "settled" and entry.get("outcome") == RELEASED
                and float(entry["spent_epsilon"]) == 0.0 and float(entry["spent_delta"]) == 0.0)

    def _same_reservation(self, existing: Mapping[str, Any], job_id: str, dataset: str, epsilon: float,
                          delta: float, open_ended: bool) -> None:
        """A second reserve of a job id must ask exactly what the first did (review R14-CONSENT-1: a job id
        reused on another dataset must not borrow the first dataset's reservation)."""
        where = f"party {self.party!r}, job {job_id!r}"
        asked = (0.0, 0.0) if open_ended else (float(epsilon), float(delta))
        held = (float(existing["reserved_epsilon"]), float(existing["reserved_delta"]))
        if existing["dataset"] != dataset or bool(existing["open_ended"]) != open_ended or any(
                abs(a - h) > _SLACK for a, h in zip(asked, held, strict=True)):
            raise BudgetRefused(
                f"{where}: the job id already holds a reservation on dataset {existing['dataset']!r} (epsilon "
                f"{held[0]:g}, delta {held[1]:g}{', open-ended' if existing['open_ended'] else ''}); asked for dataset "
                f"{dataset!r} (epsilon {asked[0]:g}, delta {asked[1]:g}{', open-ended' if open_ended else ''}). "
                "A job id reserves once: another dataset or another planned spend needs a new job id")
        if existing["state"] == "settled":
            raise BudgetRefused(f"{where}: the job was settled ({existing['outcome']}); a settled job id reserves "
                                "nothing again")

    def admit(self, job_id: str, epsilon: float, delta: float) -> BookEntry:
        """Charge a job's running total (epsilon, delta spent so far, as its own ledger composed it), BEFORE
        the release it covers leaves. Refused when above the reservation (or, open-ended, above the
        remainder) or for a settled or unknown job. Idempotent: a total not above the recorded one is a no-op."""
        with self._open() as data:
            entry = data["jobs"].get(job_id)
            if entry is None:
                raise BudgetRefused(f"party {self.party!r}: job {job_id!r} has no reservation in the budget book")
            where = f"party {self.party!r}, dataset {entry['dataset']!r}, job {job_id!r}"
            if entry["state"] == "settled":
                raise BudgetRefused(f"{where}: the job was settled ({entry['outcome']}); it spends nothing more")
            if epsilon <= entry["spent_epsilon"] + _SLACK and delta <= entry["spent_delta"] + _SLACK:
                return self._entry(entry)
            if not entry["open_ended"] and (epsilon > entry["reserved_epsilon"] + _SLACK
                                            or delta > entry["reserved_delta"] + _SLACK):
                raise BudgetRefused(f"{where}: this step would take the job to epsilon {epsilon:g} (delta "
                                    f"{delta:g}), beyond its reservation of epsilon {entry['reserved_epsilon']:g} "
                                    f"(delta {entry['reserved_delta']:g}); remaining "
                                    f"{max(entry['reserved_epsilon'] - entry['spent_epsilon'], 0.0):g}")
            if entry["open_ended"]:
                self._refuse_over(data, entry["dataset"], epsilon, delta, "this step would take the job to",
                                  skip=job_id, period=False)
            self._refuse_period_at_charge(data, entry, float(epsilon))
            entry["spent_epsilon"] = max(float(epsilon), entry["spent_epsilon"])
            entry["spent_delta"] = max(float(delta), entry["spent_delta"])
            self._history(data, "charge", entry)
            return self._entry(entry)

    def settle(self, job_id: str, outcome: str = "completed") -> BookEntry | None:
        """The job ended (any outcome): its spend stays, the rest of its reservation is released. Idempotent."""
        with self._open() as data:
            entry = data["jobs"].get(job_id)
            if entry is None or entry["state"] == "settled":
                return self._entry(entry) if entry else None
            entry.update(state="settled", settled_at=self.clock(), outcome=outcome)
            self._history(data, "settle", entry)
            return self._entry(entry)

    def release(self, job_id: str) -> BookEntry | None:
        """Withdraw the reservation of a job approved but never started: all of it returns to the dataset
        (outcome "released"). Refused for a job that spent anything (it ran: `settle` it). Idempotent; None for
        a job the book does not hold."""
        with self._open() as data:
            entry = data["jobs"].get(job_id)
            if entry is None or self._released(entry):
                return self._entry(entry) if entry else None
            where = f"party {self.party!r}, dataset {entry['dataset']!r}, job {job_id!r}"
            if entry["state"] == "settled":
                raise BudgetRefused(f"{where}: the job was already settled ({entry['outcome']})")
            if float(entry["spent_epsilon"]) > 0 or float(entry["spent_delta"]) > 0:
                raise BudgetRefused(f"{where}: the job already spent epsilon {entry['spent_epsilon']:g}; what a job "
                                    "spent stays spent (it is settled when it closes)")
            entry.update(state="settled", settled_at=self.clock(), outcome=RELEASED)
            self._history(data, "settle", entry)
            return self._entry(entry)

    # --- reading ----------------------------------------------------------------------------------------
    def entry(self, job_id: str) -> BookEntry | None:
        with self._open() as data:
            raw = data["jobs"].get(job_id)
            return self._entry(raw) if raw else None

    def status(self, dataset: str) -> dict[str, Any]:
        """total, spent, reserved (not yet spent), remaining; per epsilon (and the delta totals)."""
        limit = self._limit(dataset)
        with self._open() as data:
            jobs = [e for e in data["jobs"].values() if e["dataset"] == dataset]
            spent = sum(float(e["spent_epsilon"]) for e in jobs)
            held = sum(self._used(e)[0] for e in jobs)
            spent_delta = sum(float(e["spent_delta"]) for e in jobs)
            held_delta = sum(self._used(e)[1] for e in jobs)
            return {"dataset": dataset, "total_epsilon": limit.epsilon, "total_delta": limit.delta,
                    "spent_epsilon": spent, "reserved_epsilon": held - spent,
                    "remaining_epsilon": None if limit.epsilon is None else max(limit.epsilon - held, 0.0),
                    "spent_delta": spent_delta, "reserved_delta": held_delta - spent_delta,
                    "remaining_delta": None if limit.delta is None else max(limit.delta - held_delta, 0.0),
                    "period_days": limit.period_days, "period_epsilon": limit.period_epsilon,
                    "jobs": len(jobs), "exact_jobs": sum(1 for e in jobs if not e["open_ended"]
                                                         and e["reserved_epsilon"] == 0 and e["spent_epsilon"] == 0)}

    def history(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Every reserve/charge/settle, oldest first, with the dataset's spent and held totals after it: the
        console's spending-over-time chart."""
        with self._open() as data:
            return [h for h in data["history"] if dataset is None or h["dataset"] == dataset]

    def _history(self, data: dict[str, Any], event: str, entry: Mapping[str, Any]) -> None:
        dataset = entry["dataset"]
        held_eps, _ = self._totals(data, dataset)
        spent = sum(float(e["spent_epsilon"]) for e in data["jobs"].values() if e["dataset"] == dataset)
        data["history"].append({"at": self.clock(), "event": event, "job_id": entry["job_id"], "dataset": dataset,
                                "job_epsilon": entry["spent_epsilon"] if event != "reserve"
                                else entry["reserved_epsilon"], "spent_epsilon": spent, "held_epsilon": held_eps,
                                "outcome": entry.get("outcome")})
