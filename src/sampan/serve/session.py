"""The long-lived vertical scoring session behind `sampan serve`: one joint-scoring exchange per batch.

Why this shape: parties only dial out, so the bank's service cannot call its partners; whoever holds the
`Transport` (the coordinator's hub, whose streams the parties opened) drives the waves. The session is
opened once (signed run keys, each party loads its own registered part, like a scoring job) and then
loops; each turn is one relay exchange of the existing joint-scoring protocol (`sampan.vertical.scoring`,
GBDT: `sampan.vertical.gbdt_scoring`), wrapped by the bank's queue:

1. ``serve.next`` (to the bank) — the bank's service waits briefly for HTTP requests and answers the
   number of applicants in the next batch (0: nothing to do) and a batch token; the ids stay at the bank.
2. ``serve.start`` (bank) — the bank runs ``score.start`` on that batch: its own partial logits, and the
   ids sealed to each partner.
3. ``score.partial`` / ``vgb.score_partial`` (partners) — unchanged: each partner answers from its current
   feature table, an unknown applicant alike (neutral value and a sealed flag), masked, sealed to the bank.
4. ``serve.finish`` (bank) — ``score.finish``: the bank adds the masked sum; the results answer the HTTP
   requests of the batch and never leave the bank.

What each role learns: the coordinator, the batch sizes and timings (as in a scoring job: how many
applicants each exchange carried; never who applied, whether they are customers, or any score); a
partner, the registration numbers queried (as any credit-reference query); the bank, what the scoring
protocol gives it. Batching several HTTP requests into one exchange shows the partners which ids were
asked about in the same few milliseconds, nothing more.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from sampan.core.transport import Transport
from sampan.errors import DataError
from sampan.vertical.applicants import id_problem
from sampan.vertical.party import VerticalParty
from sampan.vertical.session import VerticalSession
from sampan.wire import Message

__all__ = ["BankQueue", "ServingDriver", "SessionError", "VerticalScoringSession", "REVEALS", "check_ids"]

REVEALS = ("Scoring service: the coordinator learns each exchange's batch size and timing; partners learn the "
           "registration numbers queried; scores and ids stay at the bank (`sampan.serve.session`).")

Results = list[dict[str, Any]]
MAX_OPEN_BATCHES = 4  # a driver works one batch at a time; more open tokens are refused (``serve.next`` without start)
BATCH_TTL_S = 120.0  # a batch not finished by then is failed and its token forgotten
log = logging.getLogger("sampan.serve.session")


class SessionError(RuntimeError):
    """A scoring exchange with the partners failed (the service answers 503; the session goes on)."""


def _settle(future: Future[Results], result: Results | None = None, error: BaseException | None = None) -> None:
    """Answer a waiting request, unless its HTTP caller already gave up (timed out, disconnected)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])
    except InvalidStateError:  # cancelled meanwhile: nobody waits for it
        pass


@dataclass
class _Batch:
    token: str
    applicants: list[str]
    futures: list[tuple[Future[Results], int, int]]  # (future, start, end) in applicants
    created: float = field(default_factory=time.monotonic)
    request_id: str | None = None  # bound by ``serve.start``: ``serve.finish`` must name the same (R13-SRV-1)


def check_ids(applicants: list[str]) -> None:
    """One request's ids, checked before they join a batch (R13-SRV-3: a bad id fails its own request only, and
    the error names positions in that request, never in the shared batch)."""
    bad = [k + 1 for k, a in enumerate(applicants) if id_problem(a)]
    if bad:
        raise DataError(f"applicants {bad[:10]}: an id must be non-blank, hold no control character (line break, "
                        "tab) and be at most 64 bytes")


def _gather(parts: list[Future[Results]], whole: Future[Results]) -> None:
    """``whole`` gets the parts' rows in order once all are done (the first error otherwise)."""
    def done(_: Future[Results]) -> None:
        if not all(p.done() for p in parts):
            return
        errors = [p.exception() for p in parts if not p.cancelled() and p.exception() is not None]
        if errors:
            _settle(whole, error=errors[0])
        else:
            _settle(whole, [row for p in parts for row in p.result()])
    for part in parts:
        part.add_done_callback(done)


@dataclass
class BankQueue:
    """The bank's side of the session: HTTP requests wait here, and the bank's handlers serve them in batches."""

    party: VerticalParty
    kind: str = "lr"
    max_batch: int = 256
    wait_s: float = 0.5  # an idle long-poll returns after this; a request wakes it at once
    closing: bool = False  # set by the bank's service when it stops: the next idle ``serve.next`` ends the session
    last_poll: float = 0.0  # when the driver last asked ``serve.next`` (a deployed session is live while recent)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _waiting: list[tuple[list[str], Future[Results]]] = field(default_factory=list)
    _batches: dict[str, _Batch] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._score_kinds = ("vgb.score_start", "vgb.score_finish") if self.kind == "gbdt" else (
            "score.start", "score.finish")
        for kind, handler in (("serve.next", self.next), ("serve.start", self.start), ("serve.finish", self.finish),
                              ("serve.abort", self.abort)):
            self.party.app.register(kind, handler)

    def submit(self, applicants: list[str]) -> Future[Results]:
        """Queue one HTTP request's applicants; the future gets the bank's result per applicant, in order. A request
        longer than ``max_batch`` is split into exchanges of at most ``max_batch`` (R13-SRV-4)."""
        ids = [str(a) for a in applicants]
        check_ids(ids)
        future: Future[Results] = Future()
        if not ids:
            future.set_result([])
            return future
        chunks = [ids[k:k + self.max_batch] for k in range(0, len(ids), self.max_batch)]
        parts: list[Future[Results]] = [Future() for _ in chunks]
        _gather(parts, future)
        with self._cond:
            self._waiting.extend(zip(chunks, parts, strict=True))
            self._cond.notify()
        return future

    def wake(self) -> None:
        """End a waiting ``serve.next`` now (the session is closing)."""
        with self._cond:
            self._cond.notify_all()

    def fail_all(self, exc: BaseException) -> None:
        """The session broke: every waiting request gets the error (the HTTP layer answers 503)."""
        exc = exc if isinstance(exc, SessionError) else SessionError(f"the scoring exchange failed: {exc}")
        with self._cond:
            waiting, self._waiting = self._waiting, []
            batches, self._batches = list(self._batches.values()), {}
        for _, future in waiting:
            _settle(future, error=exc)
        for batch in batches:
            for future, _, _ in batch.futures:
                _settle(future, error=exc)

    # --- handlers (the driver's requests to the bank) ------------------------------------------------------
    def next(self, msg: Message) -> Message:
        """Wait up to ``wait_s`` for requests; answer the batch size and a token (the ids stay here)."""
        with self._cond:
            self.last_poll = time.monotonic()
            self._expire()
            if len(self._batches) >= MAX_OPEN_BATCHES:
                raise ValueError(f"party {self.party.name!r}: {len(self._batches)} serving batches are open; start "
                                 "and finish them first")
            if not self._waiting:
                self._cond.wait(self.wait_s)
            applicants: list[str] = []
            futures: list[tuple[Future[Results], int, int]] = []
            while self._waiting and (not applicants or len(applicants) + len(self._waiting[0][0]) <= self.max_batch):
                ids, future = self._waiting.pop(0)
                futures.append((future, len(applicants), len(applicants) + len(ids)))
                applicants += ids
            if not applicants:
                return msg.reply("serve.batch", meta={"n": 0, **({"closed": True} if self.closing else {})})
            token = secrets.token_hex(8)
            self._batches[token] = _Batch(token, applicants, futures)
        return msg.reply("serve.batch", meta={"n": len(applicants), "batch": token})

    def _expire(self) -> None:
        """Forget batches not finished in `BATCH_TTL_S` (their requests fail now, not at their HTTP timeout)."""
        now = time.monotonic()
        for token in [t for t, b in self._batches.items() if now - b.created > BATCH_TTL_S]:
            for future, _, _ in self._batches.pop(token).futures:
                _settle(future, error=SessionError("the scoring exchange did not complete in time"))

    def start(self, msg: Message) -> Message:
        """``score.start`` on the batch's applicants (looked up here, by token), binding the token to the request
        id: each token starts once, and no two open batches share a request id (R13-SRV-1)."""
        request = str(msg.meta.get("request_id"))
        with self._cond:
            batch = self._batches.get(str(msg.meta.get("batch")))
            if batch is None or batch.request_id is not None:
                raise ValueError(f"party {self.party.name!r}: no serving batch {msg.meta.get('batch')!r} waits to "
                                 "start (a token serves one exchange)")
            if any(b.request_id == request for b in self._batches.values()):
                raise ValueError(f"party {self.party.name!r}: request id {request!r} is already in use by a batch")
            batch.request_id = request
        reply = self._delegate(msg, self._score_kinds[0], {"applicants": batch.applicants})
        return msg.reply("serve.started", reply.arrays, reply.meta)

    def finish(self, msg: Message) -> Message:
        """``score.finish`` on the batch started with this request id, then each waiting request gets its rows
        (checked to be this batch's applicants); only the count leaves."""
        request = str(msg.meta.get("request_id"))
        with self._cond:
            batch = self._batches.get(str(msg.meta.get("batch")))
            if batch is None or batch.request_id != request:
                raise ValueError(f"party {self.party.name!r}: no serving batch {msg.meta.get('batch')!r} was started "
                                 f"with request id {request!r}")
            del self._batches[batch.token]
        try:
            self._delegate(msg, self._score_kinds[1], {})
            if self.kind == "gbdt":
                results = self.party.gbdt.results.pop(request)
            else:
                results = [r.as_dict() for r in self.party.scoring.results.pop(request)]
            if [str(r["applicant"]) for r in results] != batch.applicants:
                raise ValueError("the results are not this batch's applicants")
        except Exception as exc:
            for future, _, _ in batch.futures:
                _settle(future, error=SessionError(f"the scoring exchange failed: {exc}"))
            raise
        for future, begin, end in batch.futures:
            _settle(future, results[begin:end])
        return msg.reply("serve.done", meta={"n": len(results)})

    def abort(self, msg: Message) -> Message:
        """The driver could not finish this batch (a partner failed): its requests get the error now, not at
        their HTTP timeout."""
        with self._cond:
            batch = self._batches.pop(str(msg.meta.get("batch")), None)
        if batch is not None:  # the coordinator's text goes to the bank's log, never to the HTTP clients
            log.warning("serving batch aborted by the driver: %s", str(msg.meta.get("error", "?"))[:300])
        for future, _, _ in batch.futures if batch is not None else []:
            _settle(future, error=SessionError("the scoring exchange with the partners failed"))
        return msg.reply("serve.aborted", meta={})

    def _delegate(self, msg: Message, kind: str, extra: dict[str, Any]) -> Message:
        """The scoring handler on this batch: only relayed mail passes (no ``aligned`` rows: a serving batch
        is never a held-out evaluation), and the meta is built here from the batch: of the coordinator's, only
        the request id, partners and bank pass (never ``applicants_file`` or ``applicants``: R13-SRV-2)."""
        mail = {k: v for k, v in msg.arrays.items() if k.startswith("from:")}
        meta = {k: msg.meta[k] for k in ("request_id", "partners", "bank") if k in msg.meta}
        inner = Message(msg.run_id, msg.step, msg.sender, msg.recipient, kind, mail, {**meta, **extra})
        reply = self.party.app.handle(inner)
        if reply.is_error:
            raise ValueError(str(reply.meta.get("error", "scoring failed")))
        return reply


class ServingDriver:
    """The driver of the session (the coordinator's side, over the parties' own streams): opened once, then
    one exchange per batch until stopped."""

    def __init__(self, transport: Transport, *, bank: str, partners: list[str], model_run: str, kind: str = "lr",
                 run_id: str | None = None) -> None:
        if kind not in ("lr", "scorecard", "gbdt"):
            raise ValueError(f"a vertical scoring session scores with lr, scorecard or gbdt, not {kind!r}")
        self.session = VerticalSession(transport, label_holder=bank, partners=partners,
                                       run_id=run_id or f"serve-{secrets.token_hex(6)}")
        self.transport, self.bank, self.partners = transport, bank, list(partners)
        self.model_run, self.kind = model_run, kind
        self.exchanges = 0
        self.closed = False  # the bank's service said it stopped (``serve.next`` answered ``closed``)

    def open(self) -> None:
        """Signed run keys, then every party loads its own part of the model (what a scoring job does)."""
        self.session.connect()
        relay = self.session.relay
        relay.wave(self.transport, (relay.request(p, "vertical.load_model", meta={
            "model_run": self.model_run, "kind": self.kind}) for p in self.session.parties))

    def step(self) -> int:
        """One turn: ask the bank for a batch and score it. Returns the batch size (0: none was waiting)."""
        relay = self.session.relay
        batch = relay.wave(self.transport, [relay.request(self.bank, "serve.next")])[0]
        n = int(batch.meta["n"])
        if n == 0:
            self.closed = bool(batch.meta.get("closed"))
            return 0
        self.exchanges += 1
        request = f"{self.session.run_id}/{self.exchanges}"
        base = {"request_id": request, "partners": self.partners, "bank": self.bank, "batch": batch.meta["batch"]}
        relay.wave(self.transport, [relay.request(self.bank, "serve.start", meta=base)])
        partial = "vgb.score_partial" if self.kind == "gbdt" else "score.partial"
        try:
            relay.wave(self.transport, (relay.request(p, partial, meta=base) for p in self.partners))
        except Exception as exc:  # the bank's waiting requests get the error now (best effort: it may be gone)
            try:
                relay.wave(self.transport, [relay.request(self.bank, "serve.abort", meta={
                    "batch": base["batch"], "error": str(exc)[:300]})])
            except Exception:  # noqa: BLE001 - the original failure is what the caller reports
                pass
            raise
        relay.wave(self.transport, [relay.request(self.bank, "serve.finish", meta=base)])
        return n

    def run(self, stop: threading.Event, on_error: Callable[[BaseException], None],
            on_ok: Callable[[], None] | None = None) -> None:
        """Loop until ``stop``; a failed exchange is reported (its requests fail) and the loop goes on;
        ``on_ok`` hears of each exchange that scored (the service's health recovers)."""
        while not stop.is_set():
            try:
                if self.step() and on_ok is not None:
                    on_ok()
            except Exception as exc:  # one batch failed: its waiting requests get the error, later ones go on
                on_error(exc)
                time.sleep(0.01)


class VerticalScoringSession:
    """Bank queue + driver on a thread: what `sampan serve` holds for a vertical model.

    ``bank`` is the bank's own `VerticalParty` (its results are read here, at the bank); ``transport``
    reaches every party, the bank included, as the coordinator's hub does."""

    def __init__(self, bank: VerticalParty, transport: Transport, *, partners: list[str], model_run: str,
                 kind: str = "lr", max_batch: int = 256, wait_s: float = 0.5) -> None:
        self.queue = BankQueue(bank, kind, max_batch, wait_s)
        self.driver = ServingDriver(transport, bank=bank.name, partners=partners, model_run=model_run, kind=kind)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    def open(self) -> VerticalScoringSession:
        self.driver.open()
        self._thread = threading.Thread(target=self.driver.run, args=(self._stop, self._failed, self._ok),
                                        name="sampan-serve-session", daemon=True)
        self._thread.start()
        return self

    def _ok(self) -> None:
        self.last_error = None

    def _failed(self, exc: BaseException) -> None:
        self.last_error = exc
        self.queue.fail_all(exc)

    def score(self, applicants: list[str], timeout_s: float = 30.0) -> Results:
        return self.queue.submit(applicants).result(timeout_s)

    def close(self) -> None:
        self._stop.set()
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(5)
