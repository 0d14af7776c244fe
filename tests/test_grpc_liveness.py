"""Liveness and fan-out of the gRPC transport (issue 12, item 8): a hung or vanished party is named within
seconds, a busy one is not, and one exchange reaches every party at once (one round trip for N parties)."""

from __future__ import annotations

import threading
import time

import _grpc_loopback
import numpy as np
import pytest
from _grpc_loopback import echo

from sampan.transport import PartyError
from sampan.wire import Message

loopback = _grpc_loopback.loopback  # the fixture, registered here: only these gRPC modules load grpc
pytestmark = pytest.mark.slow


def test_one_exchange_reaches_every_party_concurrently(loopback) -> None:  # type: ignore[no-untyped-def]
    names = [f"p{i}" for i in range(8)]
    lb = loopback({n: echo(n, 0.5) for n in names})
    transport = lb.transport()
    started = time.monotonic()
    replies = list(transport.exchange(Message("r", 1, "coordinator", n, "k", {"x": np.ones(2)}) for n in names))
    took = time.monotonic() - started
    assert [r.sender for r in replies] == names
    assert took < 2.0, f"8 parties x 0.5 s took {took:.2f} s: requests were not in flight together"


def test_a_busy_party_keeps_beating_and_is_not_named(loopback) -> None:  # type: ignore[no-untyped-def]
    lb = loopback({"a": echo("a", 2.0), "b": echo("b")}, heartbeat_s=0.2, silent_after_s=1.0)
    replies = list(lb.transport().exchange(Message("r", 1, "coordinator", p, "k") for p in "ab"))
    assert [r.sender for r in replies] == ["a", "b"]
    assert {h["party"]: h["state"] for h in lb.hub.health()} == {"a": "connected", "b": "connected"}


def test_a_hung_party_is_named_within_seconds_and_its_request_fails(loopback, caplog) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()

    def hung(message: Message) -> Message:
        gate.wait(30)
        return message.reply("late")

    lb = loopback({"a": echo("a"), "stuck": hung}, heartbeat_s=0.2, silent_after_s=1.0)
    # a hung agent: its stream stays open but nothing comes from it any more (as under SIGSTOP)
    lb.links["stuck"]._start_heartbeats = lambda *args: None  # type: ignore[method-assign]
    lb.links["stuck"].close()  # reconnect without heartbeats
    time.sleep(0.5)
    assert lb.hub.wait_for(["stuck"], 10) == []
    started = time.monotonic()
    try:
        with pytest.raises(PartyError, match="party 'stuck' failed on 'k': Unresponsive"):
            list(lb.transport().exchange(Message("r", 1, "coordinator", p, "k") for p in ["a", "stuck"]))
        took = time.monotonic() - started
        assert took < 5.0, f"the hung party was named after {took:.1f} s"
        assert {h["party"]: h["state"] for h in lb.hub.health()}["stuck"] == "silent"
        deadline = time.monotonic() + 3
        while not any("party stuck is silent" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the hub's log never named the silent party"
            time.sleep(0.1)
    finally:
        gate.set()


def test_a_killed_party_fails_the_exchange_naming_it_after_the_rejoin_grace(loopback) -> None:  # type: ignore[no-untyped-def]
    lb = loopback({"a": echo("a"), "gone": echo("gone", 5.0)}, rejoin_timeout_s=1.0)
    transport = lb.transport()
    source = transport.exchange(Message("r", 1, "coordinator", p, "k") for p in ["gone", "a"])
    lb.links["gone"]._start_heartbeats = lambda *args: None  # type: ignore[method-assign]
    stopper = threading.Timer(0.3, lambda: (lb.stop.set(), lb.links["gone"].close()))
    stopper.start()
    started = time.monotonic()
    with pytest.raises(PartyError, match="party 'gone' failed on 'k': Disconnected"):
        list(source)
    assert time.monotonic() - started < 5.0
    assert {h["party"]: h["state"] for h in lb.hub.health()}["gone"] == "disconnected"
