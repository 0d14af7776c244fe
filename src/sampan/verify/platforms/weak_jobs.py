"""The weak platform's training jobs: plain FedAvg (horizontal) and plain split LR (vertical), nothing protected.

Horizontal: every party sends its row count, column sums and sums of squares in the clear; the aggregator pools
them into one standardisation; each round it publishes the global model, each party runs local SGD epochs and
sends its weights in the clear, and the aggregator takes the row-weighted mean of *every* update it got for the
round (duplicates and unknown party names included). Dropout: the dropped party is skipped from the next round on
and the mean is over whoever answered.
Vertical: the parties' ids are joined in the clear (no PSI); each round every feature party sends its partial
logits X_k w_k for all joined rows, the label holder (platform-operated) adds them, and publishes the residuals
p - y of the training rows in the clear; each party takes one full-batch gradient step on its own weights. At the
end a verifier-operated party posts its final weights, standardisation and partial logits (so the platform can
export, score and predict). Vertical dropout is refused at submit time.
Rows: by default every row a party holds trains (what the task asks; the verifier's references assume it) and
the "auc" metric is in-sample on the platform-held (vertical: joined) rows; the verifier has its own holdout through
/evaluate. `WeakBackend(holdout=0.2)` instead keeps a random 20% out of training, drawn with the task seed.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.errors import PartyError
from sampan.verify.api import ApiError, AuditEntry, ModelExport, RoundResult, Standardisation, TableData, TaskSpec
from sampan.verify.platforms import weak_learn as learn
from sampan.verify.platforms.weak_wire import Room


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WeakJobError(PartyError):
    """A job the weak platform could not finish: a party that did not answer, or a message it could not use."""


@dataclass
class PartyRecord:
    name: str
    role: str
    operated_by: str
    data: TableData | None = None


@dataclass
class JobRecord:
    job_id: str
    project_id: str
    spec: TaskSpec
    parties: dict[str, PartyRecord]
    room: Room
    state: str = "queued"
    round: int = 0
    error: ApiError | None = None
    created_at: dt.datetime = field(default_factory=now)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    rounds_done: list[RoundResult] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    model: ModelExport | None = None
    audit: list[AuditEntry] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    holdout: float = 0.0  # fraction of platform-held (vertical: joined) rows kept out of training for "auc"

    def log(self, actor: str, action: str, detail: str = "") -> None:
        self.audit.append(AuditEntry(time=now(), actor=actor, action=action, detail=detail))


def _rng(spec: TaskSpec, salt: int) -> np.random.Generator:
    """Seeded when the task gives a seed (reproducible evaluations), cryptographically seeded otherwise."""
    seed = spec.seed if spec.seed is not None else secrets.randbits(128)
    return np.random.default_rng([seed, salt])


def _dropped(spec: TaskSpec, party: str, round_: int) -> bool:
    return spec.dropout is not None and spec.dropout.party == party and round_ > spec.dropout.after_round


def run_job(job: JobRecord) -> None:
    """The job thread: run, then record success, failure (with a message naming the party) or cancellation."""
    job.state, job.started_at = "running", now()
    job.room.publish(state="running")
    job.log("platform", "job.start", job.spec.kind)
    try:
        if job.spec.kind == "horizontal":
            _horizontal(job)
        else:
            _vertical(job)
    except _Cancelled:
        job.state = "cancelled"
    except Exception as exc:  # the job fails; its message goes to the API (never a traceback)
        job.state = "failed"
        job.error = ApiError(code="invalid" if isinstance(exc, learn.WeakDataError) else "internal",
                             message=str(exc) or type(exc).__name__)
    else:
        job.state = "succeeded"
    job.finished_at = now()
    job.log("platform", f"job.{job.state}", job.error.message if job.error else "")
    job.room.publish(state=job.state, error=job.error.message if job.error else None)


class _Cancelled(Exception):
    pass


def _wait(job: JobRecord, ready: Any, deadline: float, what: str) -> None:
    if not job.room.wait(ready, deadline, job.stop):
        if job.stop.is_set():
            raise _Cancelled()
        raise WeakJobError(f"timed out waiting for {what}")


def _horizontal(job: JobRecord) -> None:
    spec, room = job.spec, job.room
    deadline = time.monotonic() + spec.timeout_s
    features = next(iter(spec.features.values()))
    names = list(spec.features)
    local: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, name in enumerate(names):
        party = job.parties[name]
        if party.operated_by == "platform" and party.data is not None:
            X = learn.numeric_matrix(party.data, features, party=name)
            y = learn.labels(party.data, spec.label, party=name)
            train, hold = learn.holdout_split(len(y), _rng(spec, 1000 + i), job.holdout)
            local[name] = (X[train], y[train], X[hold], y[hold])
    remote = [n for n in names if job.parties[n].operated_by == "verifier"]
    _wait(job, lambda: all(n in room.stats for n in remote), deadline, f"statistics from {', '.join(remote)}")
    stats = [learn.clear_stats(v[0]) for v in local.values()]
    with room.cond:
        posted_stats = list(room.stats.values())
    for body in posted_stats:  # whatever anyone sent under any name counts
        stats.append((int(body["n"]), np.asarray(body["sum"], float), np.asarray(body["sumsq"], float)))
    mean, scale = learn.pooled_standardisation(stats)
    d = len(features)
    vec = np.zeros(d + 1)
    hold_X = np.vstack([(v[2] - mean) / scale for v in local.values()]) if local else np.empty((0, d))
    hold_y = np.concatenate([v[3] for v in local.values()]) if local else np.empty(0, np.int64)
    for r in range(1, spec.rounds + 1):
        started = time.monotonic()
        room.publish(model={"round": r, "weights": vec.tolist(), "mean": mean.tolist(), "scale": scale.tolist()})
        updates: list[tuple[np.ndarray, int]] = []
        answered: list[str] = []
        for i, (name, (X, y, _, _)) in enumerate(local.items()):
            if _dropped(spec, name, r):
                continue
            w, b = learn.local_sgd((X - mean) / scale, y, vec[:-1], float(vec[-1]), epochs=spec.local_epochs,
                                   lr=spec.learning_rate, batch_size=spec.batch_size, l2=spec.l2,
                                   rng=_rng(spec, r * 1000 + i))
            updates.append((np.append(w, b), X.shape[0]))
            answered.append(name)
        waiting = [n for n in remote if not _dropped(spec, n, r)]
        _wait(job, lambda r=r, waiting=waiting: all(
            any(u.get("party") == n for u in room.updates.get(r, [])) for n in waiting),
              deadline, f"round {r} updates from {', '.join(waiting)}")
        with room.cond:
            posted = list(room.updates.get(r, []))
        for body in posted:
            sender = str(body.get("party"))
            if _dropped(spec, sender, r):
                continue
            weights = np.asarray(body.get("weights"), dtype=np.float64).ravel()
            if weights.size != d + 1:
                raise WeakJobError(f"round {r}: the update of party {sender!r} has {weights.size} values, "
                                   f"the model has {d + 1}")
            updates.append((weights, int(body.get("n", 0))))
            answered.append(sender)
        vec = learn.fedavg(updates)
        with room.cond:  # a late or replayed update for a past round is accepted, then never read
            room.updates = {k: v for k, v in room.updates.items() if k > r}
        job.rounds_done.append(_round_result(r, started, hold_X, hold_y, vec, answered))
        job.round = r
        job.log("aggregator", "round.done", f"round {r}: {len(updates)} updates")
        if job.stop.is_set():
            raise _Cancelled()
    job.metrics = _final_metrics(hold_X, hold_y, vec)
    job.model = ModelExport(features=list(features), coefficients=vec[:-1].tolist(), intercept=float(vec[-1]),
                            standardisation=Standardisation(mean=mean.tolist(), scale=scale.tolist()))
    room.publish(model={"round": spec.rounds + 1, "weights": vec.tolist(), "mean": mean.tolist(),
                        "scale": scale.tolist()})


def _round_result(r: int, started: float, hold_X: np.ndarray, hold_y: np.ndarray, vec: np.ndarray,
                  parties: list[str]) -> RoundResult:
    metrics = _final_metrics(hold_X, hold_y, vec)
    return RoundResult(round=r, seconds=time.monotonic() - started, auc=metrics.get("auc"),
                       loss=metrics.get("logloss"), parties=sorted(set(parties)))


def _final_metrics(hold_X: np.ndarray, hold_y: np.ndarray, vec: np.ndarray) -> dict[str, float]:
    if hold_y.size == 0 or not np.all(np.isfinite(vec)):
        return {}
    return learn.score_metrics(hold_y, learn.sigmoid(hold_X @ vec[:-1] + vec[-1]))


def _vertical(job: JobRecord) -> None:
    spec, room = job.spec, job.room
    deadline = time.monotonic() + spec.timeout_s
    assert spec.id_column is not None
    names = list(spec.features)
    holder = next(n for n in names if job.parties[n].role == "label_holder")
    remote = [n for n in names if job.parties[n].operated_by == "verifier"]
    ids: dict[str, list[str]] = {}
    for name in names:
        party = job.parties[name]
        if party.data is not None:
            ids[name] = learn.string_ids(party.data, spec.id_column, party=name)
    _wait(job, lambda: all(n in room.ids for n in remote), deadline, f"ids from {', '.join(remote)}")
    with room.cond:
        ids.update({n: room.ids[n] for n in remote})
    others = [set(ids[n]) for n in names if n != holder]
    joined = [i for i in ids[holder] if all(i in s for s in others)]  # the join, in the clear
    if len(joined) < 2:
        raise WeakJobError(f"only {len(joined)} ids are common to all parties")
    train, hold = learn.holdout_split(len(joined), _rng(spec, 7), job.holdout)
    room.publish(plan={"ids": joined, "train": train.tolist(), "holdout": hold.tolist()})
    holder_data = job.parties[holder].data
    assert holder_data is not None
    position = {v: k for k, v in enumerate(ids[holder])}
    y = learn.labels(holder_data, spec.label, party=holder)[[position[i] for i in joined]]
    local: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # standardised X, mean, scale
    for name in names:
        party = job.parties[name]
        if party.data is None:
            continue
        where = {v: k for k, v in enumerate(ids[name])}
        X = learn.numeric_matrix(party.data, spec.features[name], party=name)[[where[i] for i in joined]]
        mean, scale = learn.pooled_standardisation([learn.clear_stats(X[train])])
        local[name] = ((X - mean) / scale, mean, scale)
    weights = {n: np.zeros(len(spec.features[n])) for n in local}
    b = 0.0
    for r in range(1, spec.rounds + 1):
        started = time.monotonic()
        job.round = r - 1
        room.publish(model={"round": r})
        z = np.full(len(joined), b)
        for name, (Z, _, _) in local.items():
            z += Z @ weights[name]
        _wait(job, lambda r=r: all(n in room.logits.get(r, {}) for n in remote), deadline,
              f"round {r} partial logits from {', '.join(remote)}")
        with room.cond:
            posted = dict(room.logits.get(r, {}))
        for sender, values in posted.items():
            part = np.asarray(values, dtype=np.float64).ravel()
            if part.size != len(joined):
                raise WeakJobError(f"round {r}: party {sender!r} sent {part.size} partial logits for "
                                   f"{len(joined)} rows")
            z += part
        p = learn.sigmoid(z)
        residual = p[train] - y[train]
        with room.cond:  # keep the last two rounds: a party fetches round r's residual before sending r + 1
            room.residuals = {k: v for k, v in room.residuals.items() if k >= r - 1}
            room.residuals[r] = residual.tolist()
            room.logits = {k: v for k, v in room.logits.items() if k > r}
            room.cond.notify_all()
        metrics = learn.score_metrics(y[hold], p[hold]) if hold.size else {}
        job.rounds_done.append(RoundResult(round=r, seconds=time.monotonic() - started, auc=metrics.get("auc"),
                                           loss=metrics.get("logloss"), parties=sorted(set(local) | set(posted))))
        for name, (Z, _, _) in local.items():
            w = weights[name]
            weights[name] = w - spec.learning_rate * (Z[train].T @ residual / train.size + spec.l2 * w)
        b -= spec.learning_rate * float(residual.mean())
        job.round = r
        if job.stop.is_set():
            raise _Cancelled()
    _wait(job, lambda: all(n in room.finals for n in remote), deadline, f"final weights from {', '.join(remote)}")
    z = np.full(len(joined), b)
    features: list[str] = []
    coefficients: list[float] = []
    means: list[float] = []
    scales: list[float] = []
    for name in names:
        if name in local:
            Z, mean, scale = local[name]
            z += Z @ weights[name]
            coef = weights[name]
        else:
            final = room.finals[name]
            z += np.asarray(final["logits"], dtype=np.float64)
            coef, mean, scale = (np.asarray(final[k], dtype=np.float64) for k in ("weights", "mean", "scale"))
        features += [f"{name}:{c}" for c in spec.features[name]]
        coefficients += coef.tolist()
        means += mean.tolist()
        scales += scale.tolist()
    if hold.size:
        job.metrics = learn.score_metrics(y[hold], learn.sigmoid(z[hold]))
    job.model = ModelExport(features=features, coefficients=coefficients, intercept=b,
                            standardisation=Standardisation(mean=means, scale=scales))
