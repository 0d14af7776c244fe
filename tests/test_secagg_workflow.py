"""Secure aggregation inside horizontal training: same model as plain FedAvg, dropouts, retries, DP3, stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _crash_hooks import capture_replies
from _horizontal_run import run_workflow

from sampan.config import ConfigError, parse_config
from sampan.core.party import PartyApp
from sampan.crypto.identity import simulated_consortium
from sampan.data import PartyData
from sampan.horizontal.party import HorizontalParty
from sampan.horizontal.simulation import PartySplit
from sampan.horizontal.workflow import FederationError
from sampan.privacy import Ledger
from sampan.privacy.secagg import SecAggClient
from sampan.runtime.receipt import build_receipt
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

FEATURES = ["x1", "x2", "x3", "x4"]


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, len(FEATURES)))
    logits = X @ np.array([1.5, -1.0, 0.5, 0.0]) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


def _splits(n_parties: int) -> dict[str, PartySplit]:
    rng = np.random.default_rng(5)
    return {f"bank_{i}": PartySplit(_data(f"bank_{i}", 60 + 15 * i, rng), _data(f"bank_{i}", 30, rng))
            for i in range(n_parties)}


def _config(rounds: int = 3, secagg: dict | None = None, privacy: dict | None = None, **run: Any):
    data: dict[str, Any] = {"run": {"name": "sa", "rounds": rounds, "seed": 4, **run},
                            "schema": {"id": "id", "label": "y", "features": FEATURES},
                            "parties": [{"name": "placeholder", "path": "unused.csv"}],
                            "training": {"learning_rate": 0.2, "batch_size": 16}}
    if secagg is not None:
        data["secure_aggregation"] = secagg
    if privacy is not None:  # standardisation statistics would need DP1 bounds; these tests do without
        data["privacy"], data["data"] = privacy, {"standardize": False}
    return parse_config(data)


class Killable:
    """A party endpoint that can die (ConnectionError / TimeoutError at the transport) and be restarted."""

    def __init__(self, app: PartyApp, split: PartySplit, identity: Any, verifier: Any) -> None:
        self.name, self.app, self.split = app.name, app, split
        self.identity, self.verifier = identity, verifier  # its certificate outlives a restart
        self.dies: Callable[[Message], type[Exception] | None] = lambda m: None
        self.dead = False

    def restart(self) -> None:
        """A fresh process: new party object, new secure-aggregation master secret and (in-memory) state."""
        app = PartyApp(self.name)
        secagg = SecAggClient(self.name, identity=self.identity, verifier=self.verifier)
        for kind, handler in (
            HorizontalParty(self.name, self.split.train, self.split.test, secagg=secagg).handlers().items()
        ):
            app.register(kind, handler)
        self.app, self.dead = app, False

    def handle(self, message: Message) -> Message:
        error = self.dies(message)
        if error is not None:
            self.dead = True
        if self.dead:
            raise (error or ConnectionError)(f"{self.name} is unreachable")
        return self.app.handle(message)


def _federation(n_parties: int) -> tuple[InProcessTransport, dict[str, Killable]]:
    splits = _splits(n_parties)
    verifier, identities = simulated_consortium(list(splits))
    apps = {}
    for name, split in splits.items():
        party = Killable(PartyApp(name), split, identities[name], verifier)
        party.restart()
        apps[name] = party
    return InProcessTransport(apps), apps


def _run(store: Store, config, transport) -> tuple[str, Any]:
    run_id = store.create_run(
        name="sa", workflow="horizontal", seed=4, config=config.to_dict(), total_rounds=config.run.rounds
    )
    return run_id, run_workflow(transport, store, run_id, config, 4)


def _events(store: Store, run_id: str, kind: str) -> list[dict]:
    return [e.detail for e in store.events(run_id) if e.kind == kind]


def test_secure_aggregation_trains_the_same_model_as_plain_fedavg(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    _, plain = _run(store, _config(), _federation(5)[0])
    transport, _ = _federation(5)
    captured = capture_replies(transport)
    run_id, secure = _run(store, _config(secagg={"threshold": 0.6}), transport)
    np.testing.assert_allclose(secure.params, plain.params, atol=1e-8)  # fixed-point tolerance, 2^-32 per party
    assert secure.final_metrics["auc"] == pytest.approx(plain.final_metrics["auc"], abs=1e-6)
    fits = [m for m in captured if m.kind == "fit_result"]
    assert fits and all(set(m.arrays) == {"masked"} and m.arrays["masked"].dtype == np.uint64 for m in fits)
    assert all("loss" not in m.meta and "n" not in m.meta for m in fits)  # nothing in clear
    rounds = _events(store, run_id, "secagg_round")
    assert [r["round"] for r in rounds] == [1, 2, 3] and all(r["masked"] == 5 for r in rounds)
    assert store.verify_events(run_id)
    traffic = _events(store, run_id, "traffic")
    # one SecAgg attempt per round (the update and the evaluation of the round's incoming model in one vector,
    # issue 12), with one share message per party
    assert traffic[1]["messages_bytes"]["sent"]["secagg_shares"][0] == 5
    assert traffic[1]["messages_bytes"]["sent"]["secagg_consistency"][0] == 5


def test_party_killed_mid_round_completes_via_threshold_and_rejoins_later(store: Store) -> None:
    """On SQLite and on the local PostgreSQL server."""
    transport, apps = _federation(5)
    victim = apps["bank_2"]
    # dies in round 2 right after it sent its key shares: before masking, so its pairwise masks must be
    # recovered from its neighbours' shares; it restarts (new keys) before round 4
    victim.dies = lambda m: ConnectionError if (m.step, m.kind) == (2, "fit") else None
    original_handle = victim.handle

    def handle(message: Message) -> Message:
        if message.step == 4 and victim.dead:
            victim.restart()
        return original_handle(message)

    victim.handle = handle  # type: ignore[method-assign]
    run_id, outcome = _run(store, _config(rounds=5, secagg={}), transport)
    assert outcome.rounds == 5
    by_round = {r["round"]: r for r in _events(store, run_id, "secagg_round")}
    assert by_round[1]["contributors"] == sorted(apps)
    assert "bank_2" not in by_round[2]["contributors"] and by_round[2]["dropped_before_masking"] == ["bank_2"]
    assert by_round[2]["attempt"] == 0  # the threshold absorbed it: no retry
    assert "bank_2" not in by_round[3]["contributors"]  # still dead: missed the round from the first step
    assert "bank_2" in by_round[4]["contributors"] and "bank_2" in by_round[5]["contributors"]  # rejoined
    assert [r.metrics["parties"] for r in store.rounds(run_id)][1] == by_round[2]["contributors"]
    assert store.verify_audit(run_id).ok


def test_party_dying_after_masking_is_still_in_the_sum(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    _, plain = _run(store, _config(rounds=1), _federation(4)[0])
    transport, apps = _federation(4)
    apps["bank_1"].dies = lambda m: TimeoutError if m.kind == "secagg_unmask" else None  # never answers
    run_id, secure = _run(store, _config(rounds=1, secagg={}), transport)
    (summary,) = _events(store, run_id, "secagg_round")
    assert summary["dropped_after_masking"] == ["bank_1"] and "bank_1" in summary["contributors"]
    assert "TimeoutError" in summary["failed"]["bank_1"]
    np.testing.assert_allclose(secure.params, plain.params, atol=1e-8)  # its update counted


def test_below_threshold_the_round_is_retried_with_the_survivors(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport, apps = _federation(6)
    for name in ("bank_0", "bank_1", "bank_2"):  # 3 of 6 mask: below 4 (threshold 0.6); they come back next round
        apps[name].dies = lambda m: ConnectionError if (m.step, m.kind) == (1, "fit") else None
        apps[name].handle = (
            lambda a: lambda m: (a.restart() if m.step > 1 and a.dead else None) or Killable.handle(a, m)
        )(apps[name])
    run_id, outcome = _run(store, _config(rounds=2, secagg={}), transport)
    (failed,) = _events(store, run_id, "secagg_round_failed")
    assert failed["round"] == 1 and failed["stage"] == "masked input" and "3 parties left, 4 needed" in failed["reason"]
    assert failed["dropped_after_masking"] == []  # nobody unmasked: the survivors are not listed as dropouts
    assert failed["dropped_before_masking"] == ["bank_0", "bank_1", "bank_2"]
    rounds = {r["round"]: r for r in _events(store, run_id, "secagg_round")}
    assert rounds[1]["attempt"] == 1 and rounds[1]["contributors"] == ["bank_3", "bank_4", "bank_5"]
    assert rounds[1]["min_contributors"] == 3
    assert rounds[2]["attempt"] == 0 and len(rounds[2]["contributors"]) == 6
    assert outcome.rounds == 2


def test_too_few_parties_fails_the_round_cleanly(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport, apps = _federation(3)
    for name in ("bank_0", "bank_1"):
        apps[name].dies = lambda m: ConnectionError if m.kind == "secagg_keys" else None
    with pytest.raises(FederationError, match="round 1: secure aggregation failed.*at least 3 needed"):
        _run(store, _config(rounds=2, secagg={}), transport)


def test_dp3_noise_shares_under_secure_aggregation(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport, apps = _federation(5)
    requests: list[Message] = []
    for app in apps.values():
        inner = app.handle
        app.handle = (lambda handle: lambda m: (requests.append(m), handle(m))[1])(inner)  # type: ignore[method-assign]
    apps["bank_4"].dies = lambda m: ConnectionError if (m.step, m.kind) == (2, "fit") else None
    privacy = {"epsilon": 8.0, "dp3": {"noise_multiplier": 1.0, "clip": 0.5, "mode": "distributed"}}
    run_id, outcome = _run(store, _config(rounds=2, secagg={"threshold": 0.6}, privacy=privacy), transport)
    fit = [m for m in requests if m.kind == "fit"]
    assert all(m.meta["dp3"]["noise_parties"] == 3 and m.meta["dp3"]["mode"] == "distributed" for m in fit)
    ledger = Ledger.from_json(store.latest_checkpoint(run_id).meta["ledger"])
    # charged write-ahead, before its round-2 fit request left, although it then dropped
    assert ledger.spent("bank_4") == pytest.approx(ledger.spent("bank_0"))
    charges = {c["round"]: c["charges"] for c in _events(store, run_id, "budget_charged")}
    assert charges[1][0]["level"] == "DP3" and charges[1][0]["noise_multiplier"] == 1.0
    assert charges[1][0]["parties"] == sorted(apps) and charges[2][0]["parties"] == sorted(apps)
    (joined,) = _events(store, run_id, "parties_joined")
    assert sorted(joined["parties"]) == sorted(apps) and joined["secure_aggregation"] is True
    assert ledger.spent("bank_0") <= 8.0 and outcome.rounds == 2
    store.set_status(run_id, "completed", info={"traffic": transport.traffic.summary(), "privacy": outcome.privacy})
    receipt = build_receipt(store, run_id)
    assert receipt["secure_aggregation"]["threshold"] == 0.6 and "Secure aggregation" in receipt["threat_model"]
    protections = {s["kind"]: s["protection"] for s in receipt["parties"]["bank_0"]["sent"]}
    assert protections["fit_result"].startswith("SecAgg+") and "DP3" in protections["fit_result"]
    assert "never both" in protections["secagg_unmask"]


def test_config_rules_for_secure_aggregation() -> None:
    with pytest.raises(ConfigError, match="dp3.mode = 'distributed'"):
        _config(secagg={}, privacy={"epsilon": 1.0, "dp3": {"noise_multiplier": 1.0, "mode": "central"}})
    with pytest.raises(ConfigError, match="robust aggregators"):
        parse_config({**_config().to_dict(), "strategy": {"aggregator": "median"}, "secure_aggregation": {}})
    with pytest.raises(ConfigError, match="threshold"):
        _config(secagg={"threshold": 0.4})
    with pytest.raises(ConfigError, match="even"):
        _config(secagg={"neighbours": 5})
    assert _config(secagg={"enabled": False}).secure_aggregation.enabled is False


def test_secure_aggregation_on_worker_processes_gives_the_same_model(tmp_path: Path) -> None:
    """Parties on forked workers: under SecAgg each party is pinned to its own worker (it keeps per-label state)."""
    from sampan.runtime.runner import start_run

    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    base = {
        "run": {"name": "mp", "rounds": 2, "seed": 2, "report_dir": str(tmp_path / "rep")},
        "source": {"kind": "consortium", "n_smes": 1200},
        "secure_aggregation": {},
    }
    one = start_run(parse_config(base), store).outcome.params
    two = start_run(parse_config({**base, "run": {**base["run"], "workers": 2}}), store).outcome.params
    np.testing.assert_array_equal(one, two)


def test_a_second_run_over_another_party_set_needs_another_start(tmp_path: Path) -> None:
    """Review R11: a party unmasks one model for one survivor set, in any run. Each run starts from a model drawn
    from its seed, so a run with another seed over fewer parties completes; the same seed (the same start, no
    standardisation) over another party set is refused at round 1 with the party's reason and what to do."""
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport, apps = _federation(5)
    config = parse_config({**_config(rounds=1, secagg={}).to_dict(), "data": {"standardize": False}})
    _run(store, config, transport)
    apps["bank_2"].dies = lambda m: ConnectionError if m.kind == "secagg_keys" else None  # drops out of rounds
    with pytest.raises(FederationError, match="it unmasked this very .* for another survivor set .use a new seed"):
        _run(store, config, transport)
    apps["bank_2"].dead = False
    run_id = store.create_run(name="sa", workflow="horizontal", seed=5, config=config.to_dict(), total_rounds=1)
    outcome = run_workflow(transport, store, run_id, config, 5)
    assert np.all(np.isfinite(outcome.params))
