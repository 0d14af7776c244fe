"""The scoring service's long-lived vertical session against a curious coordinator (`sampan.serve.session`).

The coordinator relays every message of every batch. It must find no applicant id in anything it handles
(the bank keeps the ids behind a batch token; they travel sealed bank -> partner), and a batch holding an
applicant nobody knows must look exactly like one holding a customer everybody knows: the same kinds, the
same meta keys and values (but the per-session token and request ids), the same array names and sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.serve.session import BankQueue, ServingDriver
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.wire import Message


class CuriousCoordinator:
    """The coordinator's view: every request it sends and every reply it relays."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seen = inner, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        sent = list(messages)
        self.seen += sent
        for reply in self.inner.exchange(sent):
            self.seen.append(reply)
            yield reply


def _session(seed: int) -> tuple[CuriousCoordinator, BankQueue, ServingDriver, list[str]]:
    tables = make_sme_consortium(900, seed=seed).vertical
    inner, parties = build_inprocess_vertical(tables)
    rng = np.random.default_rng(seed)
    for name, party in parties.items():  # parts as if loaded from each party's registry
        d = party.data.X.shape[1]
        party.loaded_part = LocalLinearPart(name, list(party.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                            rng.normal(size=d))
    coordinator = CuriousCoordinator(inner)
    queue = BankQueue(parties["bank"])
    driver = ServingDriver(coordinator, bank="bank", partners=["payments", "delivery"], model_run="r",  # type: ignore[arg-type]
                           run_id="serve-attack")
    driver.session.connect()
    known = sorted(set(map(str, tables["bank"].ids)) & set(map(str, tables["payments"].ids))
                   & set(map(str, tables["delivery"].ids)))
    return coordinator, queue, driver, known


def _view(messages: list[Message]) -> list[tuple[Any, ...]]:
    """What the coordinator could compare between batches (the random batch token and counters left out)."""
    out = []
    for m in messages:
        meta = {k: v for k, v in m.meta.items() if k not in ("batch", "request_id")}
        out.append((m.sender, m.recipient, m.kind, repr(sorted(meta.items())),
                    sorted((k, a.dtype.str, a.shape) for k, a in m.arrays.items())))
    return out


def _blob(m: Message) -> bytes:
    return repr(m.meta).encode() + b"".join(np.ascontiguousarray(a).tobytes() for a in m.arrays.values())


def test_coordinator_holds_no_id_and_cannot_tell_an_unknown_applicant() -> None:
    coordinator, queue, driver, known = _session(seed=5)
    views, results = [], []
    for applicants in (known[:3], [known[0], known[1][:2] + "7" * (len(known[1]) - 2), known[2]]):
        coordinator.seen.clear()
        future = queue.submit(applicants)
        assert driver.step() == 3
        results.append(future.result(5))
        seen = b"".join(_blob(m) for m in coordinator.seen)
        assert not [a for a in applicants if a.encode() in seen], "an applicant id crossed the coordinator"
        (batch,) = [m for m in coordinator.seen if m.kind == "serve.batch"]
        assert set(batch.meta) == {"n", "batch"} and not batch.arrays
        views.append(_view(coordinator.seen))
    assert views[0] == views[1]  # the unknown applicant's batch is indistinguishable to the coordinator
    assert results[1][1]["unknown_at_bank"] and sorted(results[1][1]["missing_at"]) == ["delivery", "payments"]
    assert not any(r["unknown_at_bank"] for r in results[0])
    assert results[0][0]["probability_of_default"] == results[1][0]["probability_of_default"]


def test_a_driver_cannot_name_applicants_or_replay_a_batch() -> None:
    """The driver (coordinator) has no way to make the bank score ids of its choosing: the bank's score
    handlers take applicants only from its own queue, by a one-time token."""
    coordinator, queue, driver, known = _session(seed=6)
    future = queue.submit(known[:1])
    relay = driver.session.relay
    token = relay.wave(coordinator, [relay.request("bank", "serve.next")])[0].meta["batch"]
    base = {"request_id": "x/1", "partners": ["payments", "delivery"], "bank": "bank", "batch": token,
            "applicants": ["CHOSEN-BY-COORDINATOR"]}
    aligned = {"aligned": np.arange(3, dtype=np.int64)}  # an attempt to turn the batch into a held-out evaluation
    started = relay.wave(coordinator, [relay.request("bank", "serve.start", aligned, meta=base)])[0]
    relay.wave(coordinator, (relay.request(p, "score.partial", meta=base) for p in ("payments", "delivery")))
    relay.wave(coordinator, [relay.request("bank", "serve.finish", meta=base)])
    assert started.kind == "serve.started"
    (result,) = future.result(5)
    assert result["applicant"] == known[0]  # the coordinator's 'applicants' meta and 'aligned' rows were ignored
    replay = coordinator.inner.exchange([relay.request("bank", "serve.start", meta=base)])
    try:
        list(replay)
        raise AssertionError("a used batch token was accepted again")
    except Exception as exc:  # the bank refuses: the token was spent at serve.finish
        assert "failed on 'serve.start'" in str(exc)
