"""Parties on worker processes: same results as in process, clear failures, no leftover processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from sampan.config import parse_config
from sampan.horizontal.simulation import load_splits
from sampan.runtime.federation import build_party_apps
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.transport import PartyError
from sampan.transport.inprocess import InProcessTransport
from sampan.transport.multiprocess import MultiprocessTransport
from sampan.wire import Message


def _config(tmp_path: Path, workers: int) -> dict:
    return {"run": {"name": "mp", "rounds": 3, "seed": 21, "workers": workers, "report_dir": str(tmp_path)},
            "model": {"kind": "mlp", "hidden": [8]},
            "source": {"kind": "consortium", "n_smes": 3000}}


def test_parallel_run_is_bit_identical_to_sequential(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    sequential = start_run(parse_config(_config(tmp_path, 1)), store)
    parallel = start_run(parse_config(_config(tmp_path, 2)), store)
    np.testing.assert_array_equal(sequential.outcome.params, parallel.outcome.params)
    assert sequential.outcome.final_metrics == parallel.outcome.final_metrics
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("sampan-party-worker")]


def test_replies_come_back_in_request_order_and_errors_name_the_party(tmp_path: Path) -> None:
    splits = load_splits(parse_config(_config(tmp_path, 2)), 21)
    transport = MultiprocessTransport(build_party_apps(splits), workers=2)
    try:
        parties = sorted(transport.parties) * 3
        replies = list(transport.exchange(Message("r", 0, "coordinator", p, "describe") for p in parties))
        assert [r.sender for r in replies] == parties
        reference = list(InProcessTransport(build_party_apps(splits)).exchange(
            Message("r", 0, "coordinator", p, "describe") for p in parties))
        assert [r.meta for r in replies] == [r.meta for r in reference]
        with pytest.raises(PartyError, match=f"party '{parties[0]}' failed on 'fit'"):
            list(transport.exchange([Message("r", 1, "coordinator", parties[0], "fit")]))
        with pytest.raises(KeyError, match="no party named 'ghost'"):
            list(transport.exchange([Message("r", 1, "coordinator", "ghost", "describe")]))
    finally:
        transport.close()


def test_abandoned_exchange_is_drained(tmp_path: Path) -> None:
    """A caller that stops mid-exchange (e.g. on an error) must not leave stale replies in the pipes."""
    splits = load_splits(parse_config(_config(tmp_path, 2)), 21)
    transport = MultiprocessTransport(build_party_apps(splits), workers=2)
    try:
        parties = sorted(transport.parties)
        requests = [Message("r", 0, "coordinator", parties[0], "fit")] + [
            Message("r", 0, "coordinator", p, "describe") for p in parties]
        with pytest.raises(PartyError):
            list(transport.exchange(requests))
        again = list(transport.exchange(Message("r", 1, "coordinator", p, "describe") for p in parties))
        assert [(r.sender, r.step, r.kind) for r in again] == [(p, 1, "describe") for p in parties]
    finally:
        transport.close()


class _Sleeper:
    """A party that takes `delay` seconds per request (stands in for local training)."""

    def __init__(self, name: str, delay: float) -> None:
        self.name, self.delay = name, delay

    def handle(self, message: Message) -> Message:
        import time

        time.sleep(self.delay)
        return message.reply("done", meta={"who": self.name})


def test_pinned_parties_answer_one_exchange_concurrently() -> None:
    """One exchange reaches every party at once (one round trip for N parties), in request order."""
    import time

    names = [f"p{i}" for i in range(4)]
    transport = MultiprocessTransport({n: _Sleeper(n, 0.4) for n in names}, pinned=True)
    try:
        started = time.monotonic()
        replies = list(transport.exchange(Message("r", 1, "coordinator", n, "k") for n in names))
        took = time.monotonic() - started
    finally:
        transport.close()
    assert [r.meta["who"] for r in replies] == names
    assert took < 1.2, f"4 parties x 0.4 s took {took:.2f} s: not concurrent"
