"""Federated synthesis as a workflow over the transport: same results as the function-call path with the noise
fixed, write-ahead charging, what the coordinator receives under SecAgg+, and the party's refusals."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_synth_privacy import SCHEMA, _table

import sampan.synth.aggregate as aggregate_mod
import sampan.synth.fit as fit_mod
from sampan.core import PartyError, RunContext, Transport
from sampan.core.transport import TrafficLog
from sampan.privacy.ledger import Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.synth import SynthConfig, SynthModel
from sampan.synth.capability import SYNTHESIS
from sampan.synth.measure import PartyMeasurer
from sampan.synth.party import synthesis_party_app
from sampan.synth.settings import SynthesisSettings
from sampan.synth.workflow import fit_over_transport, simulated_setups
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

PARTIES = ("bank_a", "bank_b", "bank_c")
SEEDS = {"bank_a": 101, "bank_b": 202, "bank_c": 303}


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, np.ndarray]]:
    return {p: _table(700 + 150 * i, 40 + i) for i, p in enumerate(PARTIES)}


class Recording(Transport):
    """An in-process transport that keeps every request the coordinator sends and every reply it receives."""

    def __init__(self, inner: InProcessTransport, on_request: Any = None) -> None:
        self.inner, self.traffic = inner, TrafficLog()
        self.requests: list[Message] = []
        self.replies: list[Message] = []
        self.exchanges: list[str] = []
        self.on_request = on_request

    @property
    def parties(self) -> list[str]:
        return self.inner.parties

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        batch = list(messages)
        self.exchanges.append(batch[0].kind if batch else "")
        for message in batch:
            if self.on_request is not None:
                self.on_request(message)
            self.requests.append(message)
        for reply in self.inner.exchange(batch):
            self.replies.append(reply)
            yield reply


def _transport(tables: Mapping[str, Any], secure: bool, epsilon: float = 2.0, **kw: Any) -> Recording:
    setups = simulated_setups(tables, epsilon=epsilon, delta=1e-5, secure=secure, schema=SCHEMA, noise_seeds=SEEDS)
    return Recording(InProcessTransport({p: synthesis_party_app(s) for p, s in setups.items()}), **kw)


class _ClearSum(aggregate_mod.PlainSum):
    """The old function-call path's sum with SecAgg's noise accounting (each party adds 1/sqrt(K))."""

    def noise_share(self, parties: int) -> float:
        return 1.0 / math.sqrt(parties)

    def sum_noise(self, parties: int) -> float:
        return 1.0


def _recorded_sums(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Every sum the fitter obtains, whichever strategy produces it."""
    sums: list[np.ndarray] = []
    for cls in (aggregate_mod.PlainSum, aggregate_mod.SecureSum):
        real = cls.__call__

        def recording(self: Any, releases: Any, _real: Any = real) -> np.ndarray:
            total = _real(self, releases)
            sums.append(np.array(total))
            return total

        monkeypatch.setattr(cls, "__call__", recording)
    return sums


def _function_call_fit(tables: Mapping[str, Any], config: SynthConfig, secure: bool) -> SynthModel:
    """The in-process function-call path: the same plan with each party a local measurer (same noise seeds)."""
    book = fit_mod._ledger(list(tables), config, None)
    aggregator = _ClearSum() if secure else aggregate_mod.PlainSum()
    share = aggregator.noise_share(len(tables))
    measurers = {p: PartyMeasurer(p, t, SCHEMA, book, seeded_generator(SEEDS[p]), share) for p, t in tables.items()}
    return fit_mod._fit(measurers, SCHEMA, config, book, seeded_generator(7), aggregator)


def _over_transport(transport: Transport, config: SynthConfig, secure: bool, persist: Any = None) -> SynthModel:
    book = fit_mod._ledger(list(PARTIES), config, None)
    return fit_over_transport(transport, "run-1", SCHEMA, config, parties=list(PARTIES), secure=secure, ledger=book,
                              persist=persist, rng=seeded_generator(7))


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secagg"])
def test_workflow_sums_equal_the_function_call_path_with_fixed_noise(tables, secure, monkeypatch) -> None:
    config = SynthConfig(epsilon=2.0, tree=True)
    sums = _recorded_sums(monkeypatch)
    old = _function_call_fit(tables, config, secure)
    old_sums = list(sums)
    sums.clear()
    transport = _transport(tables, secure)
    new = _over_transport(transport, config, secure)
    assert len(sums) == len(old_sums) > 0
    # SecAgg+ sums in fixed point (2^-16 per party); plain sums are the same floats in the same order
    tol = 0.0 if not secure else len(PARTIES) * 2.0**-16
    for a, b in zip(old_sums, sums, strict=False):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=0, atol=tol)
    assert new.edges == old.edges and new.order == old.order
    for name in old.order:
        # plain: the same floats; SecAgg+: the fixed-point rounding of the sums carried through the estimation
        np.testing.assert_allclose(new.conditionals[name], old.conditionals[name], rtol=0, atol=1e-6 if secure else 0)
    assert new.receipt["ledger"] == old.receipt["ledger"]
    for party in PARTIES:
        assert new.receipt["parties"][party]["releases"] == old.receipt["parties"][party]["releases"]
    # every stage is one exchange with every party
    assert all({m.recipient for m in transport.requests if m.step == s} == set(PARTIES)
               for s in {m.step for m in transport.requests})


def test_with_secure_sum_no_single_bank_release_reaches_the_coordinator(tables, monkeypatch) -> None:
    """The transcript test: every reply the coordinator receives is compared with every bank's own release."""
    releases: dict[str, list[np.ndarray]] = {p: [] for p in PARTIES}
    real_release = PartyMeasurer._release

    def keep(self: PartyMeasurer, *args: Any, **kw: Any) -> np.ndarray:
        noisy = real_release(self, *args, **kw)
        releases[self.party].append(np.ravel(np.array(noisy, dtype=np.float64)))
        return noisy

    monkeypatch.setattr(PartyMeasurer, "_release", keep)
    transport = _transport(tables, secure=True)
    _over_transport(transport, SynthConfig(epsilon=2.0, tree=True), secure=True)
    assert sum(map(len, releases.values())) > 3 * len(PARTIES)
    kinds = {r.kind for r in transport.replies}
    assert {"synth.release", "secagg_keys", "secagg_unmask"} <= kinds
    for reply in transport.replies:
        assert "release" not in reply.arrays, f"{reply.sender} sent a release in the clear ({reply.kind})"
        for key, array in reply.arrays.items():
            views = [np.ravel(array).astype(np.float64)]
            if array.dtype == np.uint64:  # a masked vector, read as the fixed-point counts it hides
                views.append(np.ravel(array).view(np.int64).astype(np.float64) / 2.0**16)
            for own in (r for rs in releases.values() for r in rs):
                for view in views:
                    if view.size == own.size and own.size > 1:
                        assert np.abs(view - own).min() > 1.0, f"{reply.sender}'s {reply.kind}/{key} holds a release"
    # the masked replies are uniform-looking: nothing near any count
    masked = [r.arrays["masked"] for r in transport.replies if r.kind == "synth.release"]
    assert masked and all(m.dtype == np.uint64 for m in masked)


class _Recorder:
    run_id = "run-1"

    def __init__(self) -> None:
        self.charges: list[tuple[str, dict[str, Any]]] = []
        self.infos: dict[str, Any] = {}

    def checkpoint(self, *a: Any, **k: Any) -> None: ...
    def last_checkpoint(self) -> None: return None
    def event(self, kind: str, detail: Mapping[str, Any]) -> None: ...
    def info(self, key: str, value: Any) -> None: self.infos[key] = value
    def stored_info(self) -> dict[str, Any]: return dict(self.infos)
    def charge(self, ledger_json: str, detail: Mapping[str, Any]) -> None:
        self.charges.append((ledger_json, dict(detail)))
    def ledger(self) -> str | None: return self.charges[-1][0] if self.charges else None


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secagg"])
def test_workflow_charges_write_ahead_and_returns_model_and_table(tables, tmp_path: Path, secure) -> None:
    recorder = _Recorder()

    asked: dict[str, int] = {p: 0 for p in PARTIES}

    def charged_before(message: Message) -> None:
        """Write-ahead: when a release request leaves, the persisted charges already cover it."""
        if message.kind == "synth.release":
            asked[message.recipient] += 1
            charged = [d for _, d in recorder.charges if d["party"] == message.recipient]
            gaussian = [d for d in charged if "select tree" not in d["note"]]
            assert len(gaussian) >= asked[message.recipient], f"{message.recipient}: asked before charged"

    transport = _transport(tables, secure, on_request=charged_before)
    settings = SynthesisSettings(schema=SCHEMA, epsilon=2.0, secure_aggregation=secure, rows=500,
                                 output=str(tmp_path / "synthetic.csv"), reproducible=True)
    ctx = RunContext(run_id="run-1", seed=5, config=settings, transport=transport, recorder=recorder)
    result = SYNTHESIS.workflow(settings).run(ctx)
    # each party's persisted charges cover exactly the releases the parties report
    final = Ledger.from_json(recorder.charges[-1][0])
    model = result.outcome.model
    for party in PARTIES:
        assert final.spent(party) == pytest.approx(model.receipt["parties"][party]["epsilon_spent"])
        assert len([c for c in recorder.charges if c[1]["party"] == party]) == \
            len(model.receipt["parties"][party]["releases"])
    (artifact,) = result.models
    assert artifact.name == "synthesis" and all(a.dtype != object for a in artifact.arrays.values())
    assert result.final_metrics["synthetic_rows"] == 500
    assert (tmp_path / "synthetic.csv").read_text().count("\n") == 501
    assert "data owner" in result.info["synthesis"]["evaluation"]


def test_capability_simulates_parties_and_runs_over_in_process_transport(tables, tmp_path: Path) -> None:
    config = {"synthesis": {"schema": SCHEMA.to_dict(), "epsilon": 1.0, "secure_aggregation": True, "rows": 200,
                            "reproducible": True},
              "parties": [{"name": p, "path": str(_csv(tmp_path, p, t))} for p, t in tables.items()]}
    setups = SYNTHESIS.simulate(config, seed=3)
    transport = InProcessTransport({p: SYNTHESIS.party_app(s) for p, s in setups.items()})
    ctx = RunContext(run_id="run-2", seed=3, config=config, transport=transport, recorder=_Recorder())
    result = SYNTHESIS.workflow(config).run(ctx)
    assert "SecAgg+" in result.info["synthesis"]["aggregation"]
    assert result.final_metrics["epsilon_spent_max"] <= 1.0


def _csv(folder: Path, name: str, table: Mapping[str, np.ndarray]) -> Path:
    path = folder / f"{name}.csv"
    names = SCHEMA.names
    lines = [",".join(names)] + [",".join(str(table[n][i]) for n in names) for i in range(len(table[names[0]]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_party_refuses_a_plain_release_when_the_job_sums_securely(tables) -> None:
    setups = simulated_setups(tables, epsilon=1.0, delta=1e-5, secure=True, schema=SCHEMA)
    app = synthesis_party_app(setups["bank_a"])
    opened = app.handle(Message("r", 0, "coordinator", "bank_a", "synth.open",
                                meta={"schema": SCHEMA.to_dict(), "secure": True, "parties": list(PARTIES)}))
    assert not opened.is_error
    reply = app.handle(Message("r", 1, "coordinator", "bank_a", "synth.release", meta={"op": "label", "sigma": 5.0}))
    assert reply.is_error and "refuses a plain release" in reply.meta["error"]
    mismatch = app.handle(Message("r2", 0, "coordinator", "bank_a", "synth.open",
                                  meta={"schema": SCHEMA.to_dict(), "secure": False, "parties": list(PARTIES)}))
    assert mismatch.is_error


def test_party_refuses_releases_beyond_the_budget_it_accepted(tables) -> None:
    """A coordinator asking for less noise than the plan the party accepted runs into the party's own ledger."""
    setups = simulated_setups(tables, epsilon=0.5, delta=1e-5, secure=False, schema=SCHEMA)
    transport = InProcessTransport({p: synthesis_party_app(s) for p, s in setups.items()})
    book = fit_mod._ledger(list(PARTIES), SynthConfig(epsilon=50.0), None)  # a coordinator that claims more
    with pytest.raises(PartyError, match="bank_a"):
        fit_over_transport(transport, "run-3", SCHEMA, SynthConfig(epsilon=50.0), parties=list(PARTIES),
                           secure=False, ledger=book)


def test_party_charges_its_policy_ledger_and_refuses_a_second_fit_beyond_it(tables) -> None:
    """An agent's own policy ledger is charged per release; a coordinator with a fresh run ledger cannot spend
    a party's budget twice."""
    from sampan.privacy.party_policy import PartyPrivacyPolicy

    setups = simulated_setups(tables, epsilon=1.0, delta=1e-5, secure=False, schema=SCHEMA)
    policies = {p: PartyPrivacyPolicy(epsilon=1.0, delta=1e-5) for p in PARTIES}
    for p in PARTIES:
        setups[p].policy = policies[p]
    transport = InProcessTransport({p: synthesis_party_app(s) for p, s in setups.items()})
    config = SynthConfig(epsilon=1.0)

    def fit(run_id: str) -> SynthModel:
        return fit_over_transport(transport, run_id, SCHEMA, config, parties=list(PARTIES), secure=False,
                                  ledger=fit_mod._ledger(list(PARTIES), config, None))

    model = fit("run-a")
    for p in PARTIES:
        assert policies[p].ledger(p).spent(p) == pytest.approx(model.receipt["parties"][p]["epsilon_spent"])
    with pytest.raises(PartyError, match="own budget"):
        fit("run-b")


def test_the_runner_runs_synthesis_from_the_one_run_config(tmp_path: Path) -> None:
    """`run.workflow = "synthesis"` through the one runner: simulated banks, SecAgg+ sums, model folder, CSV,
    the run's ledger persisted write-ahead in the store."""
    from sampan.config import parse_config
    from sampan.runtime.runner import start_run
    from sampan.runtime.store import Store

    url = f"sqlite:///{tmp_path}/runs.db"
    config = parse_config({"run": {"workflow": "synthesis", "seed": 3, "report_dir": str(tmp_path / "reports"),
                                   "store": url},
                           "source": {"kind": "consortium", "n_smes": 1200},
                           "synthesis": {"epsilon": 2.0, "n_rows": 300}})
    store = Store.open(url)
    finished = start_run(config, store)
    assert finished.final_metrics["synthetic_rows"] == 300
    assert 1.99 <= finished.final_metrics["epsilon_spent_max"] <= 2.0
    run_dirs = list((tmp_path / "reports").glob("*/synth-model"))
    assert len(run_dirs) == 1 and SynthModel.load(run_dirs[0]).n_hat > 0
    assert (run_dirs[0].parent / "synthetic.csv").read_text().count("\n") == 301
    from sampan.runtime.receipt import build_receipt

    receipt = build_receipt(store, finished.run_id)
    assert receipt["differential_privacy"] and receipt["accountant"] == "rdp"
    for party in receipt["parties"].values():
        assert 1.99 <= party["epsilon_spent"] <= 2.0
        assert any(s["kind"] == "synth.release" and "SecAgg+" in s["protection"] for s in party["sent"])
    rows = [r for r in receipt["messages"] if r["kind"] == "synth.release" and r["sender"] == "party"]
    assert {r["field"] for r in rows} == {"arrays.masked", "meta.release"}  # never a release in the clear
