"""Finding 15: SecAgg+ must never sum fewer than a stated minimum of contributors (at least 3).

With two contributors each one subtracts its own update from the sum (it can compute the sum from the
new model) and reads the other's exactly. The old code carried on with two parties after a dropout, the
receipt still claimed SecAgg+ protection, and the audit entry listed the survivors as
`dropped_after_masking`. Now: the round fails with a clear error naming the minimum, nothing is
aggregated, the audit entry names the real dropouts, the receipt states the minimum, and each party
refuses by itself to sign or unmask a survivor set below it (against a coordinator that would try).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _horizontal_run import run_workflow
from _secagg_coordinator import Consortium, drive, server

from sampan.config import ConfigError, parse_config
from sampan.data import PartyData
from sampan.horizontal.simulation import PartySplit
from sampan.horizontal.workflow import FederationError
from sampan.privacy.secagg import SecAggParams, SecAggRefused
from sampan.runtime.federation import build_party_apps
from sampan.runtime.receipt import build_receipt
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

FEATURES = ["a", "b", "c"]


def _federation(n: int, dies: Callable[[str, Message], bool]) -> InProcessTransport:
    rng = np.random.default_rng(3)

    def data(name: str, rows: int) -> PartyData:
        X = rng.normal(size=(rows, 3))
        return PartyData(party=name, ids=np.array([f"{name}{i}" for i in range(rows)], dtype=object), X=X,
                         y=(X[:, 0] + rng.normal(size=rows) > 0).astype(np.int8), feature_names=FEATURES)

    apps = build_party_apps({f"bank_{i}": PartySplit(data(f"bank_{i}", 60), data(f"bank_{i}", 20)) for i in range(n)})
    for name, app in apps.items():
        inner = app.handle

        def handle(message: Message, inner: Any = inner, name: str = name) -> Message:
            if dies(name, message):
                raise ConnectionError(f"{name} is unreachable")
            return inner(message)

        app.handle = handle  # type: ignore[method-assign]
    return InProcessTransport(apps)


def _config(rounds: int = 1, **secagg: Any):  # type: ignore[no-untyped-def]
    return parse_config({"run": {"name": "min", "rounds": rounds, "seed": 2},
                         "schema": {"id": "id", "label": "y", "features": FEATURES},
                         "parties": [{"name": "placeholder", "path": "unused.csv"}],
                         "secure_aggregation": secagg})


def _create(store: Store, config: Any) -> str:
    return store.create_run(name="min", workflow="horizontal", seed=2, config=config.to_dict(),
                            total_rounds=config.run.rounds)


def _run(store: Store, transport: InProcessTransport, config: Any) -> tuple[str, Any]:
    run_id = _create(store, config)
    return run_id, run_workflow(transport, store, run_id, config, 2)


def test_a_dropout_that_leaves_two_fails_the_round_instead_of_summing_two(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport = _federation(3, lambda name, m: name == "bank_2" and m.kind == "fit")  # dies before masking
    config = _config()
    run_id = _create(store, config)
    with pytest.raises(FederationError, match=r"2 parties left, at least 3 needed \(secure_aggregation.min_contributors"
                                              r" = 3.*nothing was aggregated below that minimum"):
        run_workflow(transport, store, run_id, config, 2)
    events = {e.kind: e.detail for e in store.events(run_id)}
    assert "secagg_round" not in events  # no sum of two was ever formed
    failed = events["secagg_round_failed"]
    assert "2 parties left, 3 needed (min_contributors)" in failed["reason"]
    assert failed["dropped_before_masking"] == ["bank_2"]
    assert failed["dropped_after_masking"] == []  # the survivors are not listed as dropouts
    assert failed["min_contributors"] == 3


def test_the_minimum_is_configurable_upward_never_below_three(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="min_contributors"):
        _config(min_contributors=2)
    with pytest.raises(ValueError, match="at least 3"):
        SecAggParams(min_contributors=2)
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport = _federation(4, lambda name, m: name == "bank_3" and m.kind == "fit")
    with pytest.raises(FederationError, match="at least 4 needed"):  # 3 would be enough for the default
        _run(store, transport, _config(min_contributors=4, threshold=0.6))


def test_the_receipt_states_the_minimum_and_a_completed_round_has_at_least_three(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport = _federation(4, lambda name, m: name == "bank_3" and m.kind == "fit")
    run_id, outcome = _run(store, transport, _config())
    (round_,) = [e.detail for e in store.events(run_id) if e.kind == "secagg_round"]
    assert round_["contributors"] == ["bank_0", "bank_1", "bank_2"] and round_["min_contributors"] == 3
    assert round_["dropped_before_masking"] == ["bank_3"] and round_["dropped_after_masking"] == []
    store.set_status(run_id, "completed", info={"traffic": transport.traffic.summary(), "privacy": outcome.privacy})
    receipt = build_receipt(store, run_id)
    assert receipt["secure_aggregation"]["min_contributors"] == 3
    assert "never fewer than min_contributors" in receipt["threat_model"]


def test_parties_refuse_a_survivor_set_below_the_minimum(tmp_path: Path) -> None:
    """A coordinator bypassing its own checks: the parties still refuse to sign or reveal for two survivors."""
    c = Consortium(3, tmp_path)
    srv = server(c)
    sent = drive(srv, c, until="secagg_consistency")
    for party in ("p0", "p1"):
        arrays, meta = srv.consistency_requests()[party]
        with pytest.raises(SecAggRefused, match="2 survivors, at least 3 needed"):
            c.call("secagg_consistency", party, arrays, {**meta, "survivors": ["p0", "p1"]})
    assert sent["fit"]
