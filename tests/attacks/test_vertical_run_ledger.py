"""Vertical noise releases are charged to the run's ledger write-ahead (issue 12, item 4).

Every noised WOE count and GBDT partner histogram is a Gaussian mechanism charged to the one run ledger
*before* the request that makes a party release it leaves the coordinator; a budget the release would
exceed stops the run with nothing released. The parties' own ledgers keep charging as before
(tests/attacks/test_neighbouring_vertical.py and the party-policy tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

import sampan.vertical.psi_party
from sampan.models.gbdt import GBDTParams
from sampan.privacy.ledger import BudgetExceeded, Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.capability import VERTICAL, simulate_vertical
from sampan.vertical.job import VerticalJob
from sampan.vertical.training import VerticalLRConfig
from sampan.wire import Message

RELEASES = {"woe.sum", "woe.finish", "vgb.serve"}  # the requests that make a party release noised sums


@pytest.fixture(autouse=True)
def _seeded_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(7).permutation(n))


class _Timeline(InProcessTransport):
    """The in-process transport, noting every request kind in the order it leaves the coordinator."""

    def __init__(self, apps: dict[str, Any], timeline: list[str]) -> None:
        super().__init__(apps)
        self.timeline = timeline

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        def noted() -> Iterator[Message]:
            for m in messages:
                self.timeline.append(m.kind)
                yield m
        return super().exchange(noted())


def _job(**kw: Any) -> VerticalJob:
    return VerticalJob(name="ledger", label_holder="bank", partners=("payments",), models=("lr", "scorecard", "gbdt"),
                       lr=VerticalLRConfig(epochs=2), gbdt=GBDTParams(n_trees=2, max_depth=2), woe_dp_epsilon=2.0,
                       gbdt_hist_noise=3.0, seed=1, source={"kind": "consortium", "n_smes": 4000, "seed": 4}, **kw)


def _run(job: VerticalJob, store: Store) -> tuple[list[str], Any]:
    timeline: list[str] = []
    setups = simulate_vertical(job, 0, registry=store)
    transport = _Timeline({n: VERTICAL.party_app(s) for n, s in setups.items()}, timeline)
    original = store.charge_ledger

    def charge(run_id: str, ledger_json: str, detail: Any) -> None:
        original(run_id, ledger_json, detail)
        timeline.append(f"charged:{detail['stage']}")

    store.charge_ledger = charge  # type: ignore[method-assign]
    try:
        return timeline, start_run(job, store, transport=transport)
    except BudgetExceeded as exc:
        return timeline, exc


def test_every_vertical_noise_release_is_charged_before_its_request_leaves() -> None:
    store = Store.open("sqlite://")
    timeline, finished = _run(_job(), store)
    first = {k: timeline.index(k) for k in RELEASES}
    assert timeline.index("charged:scorecard") < min(first["woe.sum"], first["woe.finish"])
    assert timeline.index("charged:gbdt") < first["vgb.serve"]
    ledger = Ledger.from_json(store.ledger(finished.run_id))
    notes = sorted({(e.party, e.note.split(":")[0]) for e in ledger.events})
    assert notes == [("bank", "federated WOE"), ("payments", "federated WOE"), ("payments", "vertical GBDT")]
    assert ledger.spent("payments") > ledger.spent("bank") > 0
    info = store.get_run(finished.run_id).info
    assert info["privacy"]["parties"]["payments"]  # the receipt's ledger summary
    assert json.dumps(info["receipt"]["dp_accounts"])  # and each party's own account, as it reported it


def test_a_release_over_the_run_budget_is_refused_before_anything_is_released() -> None:
    store = Store.open("sqlite://")
    timeline, outcome = _run(_job(budget=(0.5, 1e-5)), store)
    assert isinstance(outcome, BudgetExceeded)
    assert not RELEASES & set(timeline) and "woe.setup" in timeline  # stopped between setup and the first release
    assert store.list_runs(1)[0].status == "failed"
