"""Secure aggregation across attempts of one round, and distributed-DP noise shares (issue 11, finding 3).

The coordinator here is malicious and drives the project's real parties (`HorizontalParty` with its
`SecAggClient`, as `build_party_apps` makes them) through `SecAggServer`:

- differencing: it completes attempt 1 of a round with survivor set U, claims it failed, and retries the
  round with U minus the victim (or calls the retry another round, or changes the training seed): the
  difference of the two unmasked sums would be the victim's update. Each party now remembers, per round and
  per model, the U3 it revealed unmask shares for and its input vector, and refuses another U3;
- noise shares: under distributed DP3 each party adds σ²/noise_parties of the noise; a coordinator that
  claims a huge noise_parties (and pads U3 with names of parties that do not exist) would release a sum
  carrying a fraction of σ². A party now refuses noise_parties above the m_min it shared with, and helps
  unmask only when noise_parties certified parties signed U3.

The old code answered every request below (each attempt was a label of its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _horizontal_run import run_workflow

from sampan.config import parse_config
from sampan.crypto.identity import IdentityError
from sampan.data import PartyData
from sampan.horizontal.simulation import PartySplit
from sampan.privacy.secagg import SecAggAbort, SecAggParams, SecAggServer, decode_vector, run_secagg
from sampan.privacy.secagg.state import FileStateStore
from sampan.runtime.federation import build_party_apps
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

FEATURES = ["x1", "x2", "x3"]
RUN = "run-attempts"
VICTIM = "bank_2"
MODEL = {"kind": "logistic", "n_features": len(FEATURES)}
TRAIN = {"epochs": 1, "batch_size": 16, "learning_rate": 0.3}


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ np.array([1.0, -1.0, 0.5]))))).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


def _splits(n: int) -> dict[str, PartySplit]:
    rng = np.random.default_rng(3)
    return {f"bank_{i}": PartySplit(_data(f"bank_{i}", 60, rng), _data(f"bank_{i}", 20, rng)) for i in range(n)}


class Coordinator:
    """A malicious coordinator that talks to the real party apps directly and chooses every field."""

    def __init__(self, n: int = 5) -> None:
        self.apps = build_party_apps(_splits(n))
        self.names = sorted(self.apps)
        self.params = np.array([0.1, -0.2, 0.3, 0.05])  # the global model it sends (3 weights + bias)
        self.errors: dict[str, str] = {}

    def attempt(self, parties: list[str], label: str, *, round_id: str | None = "round-1", seed: int = 11,
                dp3: Mapping[str, Any] | None = None, alter: Any = None) -> np.ndarray:
        """One SecAgg attempt over `parties` (the training request inside the masked step); returns the sum."""
        srv = SecAggServer(SecAggParams(), parties, self.params.size + 3, f"{RUN}/{label}", np.random.default_rng(5))
        self.server = srv

        def call(kind: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Any:
            arrays, meta = dict(arrays), dict(meta)
            meta.pop("round", None)  # the coordinator names the round as it likes (or not at all)
            if kind == "fit" and round_id is not None:
                meta["round"] = round_id
            if alter is not None:
                alter(kind, party, arrays, meta)
            if kind == "fit":
                fit = {"model": MODEL, "train": TRAIN, "seed": seed,
                       "secagg": {**meta, "total_rows": 60 * len(parties)}}
                if dp3 is not None:
                    fit["dp3"] = dict(dp3)
                arrays, meta = {"params": self.params, **arrays}, fit
            reply = self.apps[party].handle(Message(RUN, 1, "coordinator", party, kind, arrays=arrays, meta=meta))
            if reply.is_error:
                self.errors[party] = str(reply.meta["error"])
                return None
            return dict(reply.arrays)

        return decode_vector(run_secagg(srv, call), srv.params)


def test_a_round_retried_without_the_victim_is_not_unmasked() -> None:
    c = Coordinator()
    first = c.attempt(c.names, "round-1/attempt-0/n1")  # completed; the coordinator claims it failed
    assert np.all(np.isfinite(first))
    others = [p for p in c.names if p != VICTIM]
    with pytest.raises(SecAggAbort):
        c.attempt(others, "round-1/attempt-1/n1")  # first - second would be the victim's weighted update
    assert set(c.errors) == set(others)
    assert all("already revealed unmask shares in round 'round-1' for another survivor set" in why
               for why in c.errors.values())


@pytest.mark.parametrize("trick", ["another-round", "no-round"])
def test_calling_the_retry_another_round_does_not_help(trick: str) -> None:
    """Relabelled as round 2 on the same model (the parties bind the model's digest too), or with no round."""
    c = Coordinator()
    c.attempt(c.names, "round-1/attempt-0/n1")
    others = [p for p in c.names if p != VICTIM]
    with pytest.raises(SecAggAbort):
        c.attempt(others, "round-2/attempt-0/n1", round_id="round-2" if trick == "another-round" else None)
    expected = "already revealed unmask shares" if trick == "another-round" else "names no round"
    assert set(c.errors) == set(others) and all(expected in why for why in c.errors.values())


def test_an_identical_retry_with_a_fresh_seed_reveals_nothing_new() -> None:
    """Same survivor set, but a new training seed (another SGD sample): every party masks its first input
    again, so the second sum is the first one, bit for bit (their difference is zero, not fresh noise)."""
    c = Coordinator()
    first = c.attempt(c.names, "round-1/attempt-0/n1", seed=11)
    second = c.attempt(c.names, "round-1/attempt-1/n1", seed=12)
    np.testing.assert_array_equal(first, second)
    assert not c.errors


def test_an_honest_retry_after_a_dropout_before_unmasking_still_works() -> None:
    """No unmask share was revealed in attempt 1 (it stopped at masked input): nobody is locked yet, and the
    retry with the survivors completes — with the inputs the survivors masked in attempt 1."""
    c = Coordinator()

    def stop_before_consistency(kind: str, party: str, arrays: Any, meta: Any) -> None:
        if kind == "secagg_consistency":
            raise StopIteration  # the coordinator process dies here

    with pytest.raises(StopIteration):
        c.attempt(c.names, "round-1/attempt-0/n1", alter=stop_before_consistency)
    others = [p for p in c.names if p != VICTIM]
    total = c.attempt(others, "round-1/attempt-0/n2")
    assert c.server.u3 == others and np.all(np.isfinite(total)) and not c.errors
    assert total[-1] == pytest.approx(4 / 5, abs=1e-6)  # weights n/N of attempt 1 (cached), normalised on use


DP3 = {"clip": 0.5, "mode": "distributed", "sum_sigma": 4.0, "count_sigma": None}


def test_a_noise_share_for_more_parties_than_the_round_guarantees_is_refused() -> None:
    """noise_parties = 10^6 with 5 parties: each share would be σ/1000; refused before anything is masked."""
    c = Coordinator()
    dp3 = {**DP3, "parties": 10**6, "noise_parties": 10**6}

    def dilute(kind: str, party: str, arrays: Any, meta: dict) -> None:
        if kind == "fit":
            meta["noise_parties"] = 10**6

    with pytest.raises(SecAggAbort):
        c.attempt(c.names, "round-1/attempt-0/n1", dp3=dp3, alter=dilute)
    assert set(c.errors) == set(c.names)
    assert all("noise shares for 1000000 parties" in why for why in c.errors.values())


def test_a_survivor_set_padded_with_ghosts_is_refused() -> None:
    """3 real parties, told m_min = noise_parties = 50 and a U3 of 50 names (47 that no CA certified): each
    party's input carries σ²/50, the sum of 3 would carry 3/50 of σ². No party reveals an unmask share."""
    c = Coordinator(3)
    ghosts = [f"ghost_{i:02d}" for i in range(47)]
    dp3 = {**DP3, "parties": 50, "noise_parties": 50}

    def pad(kind: str, party: str, arrays: Any, meta: dict) -> None:
        if kind == "secagg_share":
            meta["min_live"] = 50
        if kind == "fit":
            meta["noise_parties"] = 50
        if kind in ("secagg_consistency", "secagg_unmask"):
            meta["survivors"] = sorted(c.names + ghosts)
        if kind == "secagg_unmask":
            meta["min_live"] = 50

    with pytest.raises(SecAggAbort):
        c.attempt(c.names, "round-1/attempt-0/n1", dp3=dp3, alter=pad)
    assert set(c.errors) == set(c.names)
    # refused at consistency (ghosts are not in the neighbour graph); parties that signed would refuse to unmask
    # with fewer than 50 certified signers
    assert all("are not in the neighbour graph" in why or "signed the survivor set, 50 needed" in why
               for why in c.errors.values())


# --- the honest coordinator: a crash after unmasking needs no second attempt -----------------------------

class Crash(RuntimeError):
    pass


class CrashOnEvaluate:
    """The coordinator's transport; the process dies when it first sends an evaluation request of `round`
    (after that round's training sum was unmasked, before the round was saved)."""

    def __init__(self, apps: dict, round_number: int) -> None:
        self.inner, self.round_number, self.parties = InProcessTransport(apps), round_number, sorted(apps)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def exchange(self, messages: Any) -> Any:
        messages = list(messages)
        if any(m.kind == "secagg_keys" and "/evaluate-" in str(m.meta.get("label")) and m.step == self.round_number
               for m in messages):
            raise Crash("coordinator killed")
        return self.inner.exchange(messages)


def test_a_crash_after_unmasking_resumes_from_the_stored_sum(tmp_path: Path) -> None:
    apps = build_party_apps(_splits(4))
    fits: list[tuple[str, int]] = []
    for name, app in apps.items():
        inner = app.handle

        def handle(message: Message, inner: Any = inner, name: str = name) -> Message:
            if message.kind == "fit":
                fits.append((name, message.step))
            return inner(message)

        app.handle = handle  # type: ignore[method-assign]
    config = parse_config({"run": {"name": "crash", "rounds": 2, "seed": 4, "eval_every": 1},
                           "schema": {"id": "id", "label": "y", "features": FEATURES},
                           "parties": [{"name": "placeholder", "path": "unused.csv"}],
                           "training": {"learning_rate": 0.2, "batch_size": 16}, "secure_aggregation": {}})
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = store.create_run(name="crash", workflow="horizontal", seed=4, config=config.to_dict(), total_rounds=2)
    # the evaluation-only instance runs once per run, for the final model (earlier evaluations ride on the next
    # round's fit vector, issue 12): the coordinator dies after round 2's sum was unmasked, before it was saved
    with pytest.raises(Crash):
        run_workflow(CrashOnEvaluate(apps, 2), store, run_id, config, 4)
    both = sorted([(p, 1) for p in apps] + [(p, 2) for p in apps])
    assert sorted(fits) == both
    outcome = run_workflow(InProcessTransport(apps), store, run_id, config, 4)
    assert outcome.rounds == 2
    assert sorted(fits) == both  # round 2 was not re-run
    rounds = [e.detail for e in store.events(run_id) if e.kind == "secagg_round"]
    assert [(r["round"], r.get("replayed", False)) for r in rounds] == [(1, False), (2, True)]


def test_an_honest_retry_after_too_few_unmask_replies_uses_the_same_survivor_set(tmp_path: Path) -> None:
    """Three of five parties fail their first unmask request: attempt 0 aborts at unmasking after two parties
    revealed shares for U3 = all five. Those two answer only for that U3 again, so the workflow retries with
    U3 (not with the two that answered), and the round completes on the same cached inputs."""
    apps = build_party_apps(_splits(5))
    flaky = {"bank_0", "bank_1", "bank_2"}
    for name, app in apps.items():
        inner = app.handle

        def handle(message: Message, inner: Any = inner, name: str = name) -> Message:
            if message.kind == "secagg_unmask" and name in flaky:
                flaky.discard(name)
                return message.error_reply(TimeoutError(f"{name} timed out"))
            return inner(message)

        app.handle = handle  # type: ignore[method-assign]
    config = parse_config({"run": {"name": "retry", "rounds": 1, "seed": 4},
                           "schema": {"id": "id", "label": "y", "features": FEATURES},
                           "parties": [{"name": "placeholder", "path": "unused.csv"}],
                           "training": {"learning_rate": 0.2, "batch_size": 16}, "secure_aggregation": {}})
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = store.create_run(name="retry", workflow="horizontal", seed=4, config=config.to_dict(), total_rounds=1)
    outcome = run_workflow(InProcessTransport(apps), store, run_id, config, 4)
    assert outcome.rounds == 1
    failed = [e.detail for e in store.events(run_id) if e.kind == "secagg_round_failed"]
    assert [f["stage"] for f in failed] == ["unmasking"]
    (done,) = [e.detail for e in store.events(run_id) if e.kind == "secagg_round"]
    assert done["attempt"] == 1 and done["contributors"] == sorted(apps)


def test_honest_noise_shares_on_a_sparse_graph_still_unmask(tmp_path: Path) -> None:
    """Control: on a SecAgg+ graph (k = 4 of 9 parties) every input carries a 1/m_min noise share; the
    coordinator forwards enough certified signatures (m_min - 1), so the honest sum comes out exactly."""
    from _secagg_coordinator import Consortium

    c = Consortium(9, tmp_path)
    params = SecAggParams(neighbours=4)
    srv = SecAggServer(params, c.names, c.d, "run-1/round-1/attempt-0/n", np.random.default_rng(2), round_id="round-1")

    def call(kind: str, party: str, arrays: Any, meta: Any) -> Any:
        if kind == "fit":
            assert meta["noise_parties"] == srv.min_live == 6
            return {"masked": c.clients[party].respond_masked(arrays, meta, c.x[party], run_id="run-1",
                                                              noise_parties=int(meta["noise_parties"]))}
        return c.call(kind, party, arrays, meta)

    np.testing.assert_array_equal(run_secagg(srv, call), c.expected(c.names, srv.params))


# --- the neighbour graph: a coordinator that hands out its own graphs ------------------------------------
# Two attempts of a round can both be unmasked only by disjoint sets of revealers. With a regular graph and
# majority thresholds every unmasking needs more than |U3|/2 revealers, so two cannot be disjoint. With hubs
# (a few parties holding everyone's shares, the others holding few) the revealers could be a small set,
# and a second attempt could use other hubs: each party checks its graph is regular, signs its digest, and
# reveals only shares dealt under its own graph.

HUBS = ["p0", "p1"]


def _hub_graph(names: list[str]) -> dict[str, set[str]]:
    graph = {p: set() for p in names}
    for hub in HUBS:
        for p in names:
            if p != hub:
                graph[hub].add(p)
                graph[p].add(hub)
    return graph


def test_an_irregular_neighbour_graph_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from _secagg_coordinator import Consortium, drive, server

    c = Consortium(6, tmp_path)
    monkeypatch.setattr("sampan.privacy.secagg.server.harary_graph",
                        lambda parties, k, rng: _hub_graph(sorted(parties)))
    srv = server(c)

    def hubbed(kind: str, party: str, arrays: Any, meta: dict) -> None:
        if kind == "secagg_share":
            meta["graph"] = {p: sorted(q) for p, q in _hub_graph(c.names).items()}

    from sampan.privacy.secagg import SecAggRefused

    with pytest.raises(SecAggRefused, match="not regular"):
        drive(srv, c, until="fit", alter=hubbed)


def test_shares_dealt_under_another_graph_are_not_revealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each party is shown a regular, connected graph, but not the same one: the hubs a complete graph, every
    other party a 6-cycle in which its neighbours are the two hubs (so it deals its shares to the hubs alone,
    2 of 2). The hubs reveal nothing: their neighbours signed U3 under other graphs (and shares dealt under
    another graph are refused too)."""
    from _secagg_coordinator import Consortium, drive, server

    c = Consortium(6, tmp_path)
    monkeypatch.setattr(
        "sampan.privacy.secagg.server.harary_graph", lambda parties, k, rng: _hub_graph(sorted(parties))
    )
    srv = server(c)
    complete = {p: sorted(set(c.names) - {p}) for p in c.names}

    def worlds(kind: str, party: str, arrays: Any, meta: dict) -> None:
        if kind == "secagg_share":
            if party in HUBS:
                meta["graph"] = complete
            else:  # the cycle party - p0 - a - b - c - p1 - party
                ring = [party, "p0", *[q for q in c.names if q not in HUBS and q != party], "p1"]
                meta["graph"] = {q: sorted([ring[i - 1], ring[(i + 1) % 6]]) for i, q in enumerate(ring)}

    from sampan.privacy.secagg import SecAggRefused

    sent = drive(srv, c, until="secagg_unmask", alter=worlds)
    assert sent["secagg_consistency"]
    for hub in HUBS:
        arrays, meta = srv.unmask_requests()[hub]
        with pytest.raises((SecAggRefused, IdentityError), match="bad_signature|another neighbour graph"):
            c.call("secagg_unmask", hub, arrays, meta)
        # forwarding only the signatures made under the hubs' own graph: too few neighbours vouch
        (other,) = [h for h in HUBS if h != hub]
        rows = [srv.st.signatures[other]]
        alone = {
            **arrays,
            "signers.signature": np.frombuffer(b"".join(rows), dtype=np.uint8).copy(),
            "signers.signature_len": np.array([len(r) for r in rows], dtype=np.int64),
            "signers.certificate": np.zeros(0, dtype=np.uint8),
            "signers.certificate_len": np.zeros(0, dtype=np.int64),
        }
        with pytest.raises(SecAggRefused, match="only 1 of its neighbours signed the survivor set"):
            c.call("secagg_unmask", hub, alone, {**meta, "signers": [other], "certified": []})
        assert FileStateStore(tmp_path / hub).load(srv.label).revealed == {}


def test_a_share_dealt_under_another_graph_is_not_revealed(tmp_path: Path) -> None:
    """p3 is shown a connected 3-regular graph with the same neighbours but other content (parties that do not
    exist); the others' majorities vouch for their own graph without p3's signature. They still refuse to
    reveal p3's shares: those were dealt under a graph they did not sign."""
    from _secagg_coordinator import Consortium, drive, server

    from sampan.privacy.secagg import SecAggRefused

    c = Consortium(4, tmp_path)
    srv = server(c)
    other = {
        "p3": ["p0", "p1", "p2"],
        "p0": ["g0", "g1", "p3"],
        "p1": ["g1", "g2", "p3"],
        "p2": ["g0", "g2", "p3"],
        "g0": ["g3", "p0", "p2"],
        "g1": ["g3", "p0", "p1"],
        "g2": ["g3", "p1", "p2"],
        "g3": ["g0", "g1", "g2"],
    }

    def split(kind: str, party: str, arrays: Any, meta: dict) -> None:
        if kind == "secagg_share" and party == "p3":
            meta["graph"] = other

    drive(srv, c, until="secagg_unmask", alter=split)
    arrays, meta = srv.unmask_requests()["p0"]
    rows = [srv.st.signatures[p] for p in ("p1", "p2")]
    vouched = {
        **arrays,
        "signers.signature": np.frombuffer(b"".join(rows), dtype=np.uint8).copy(),
        "signers.signature_len": np.array([len(r) for r in rows], dtype=np.int64),
    }
    with pytest.raises(SecAggRefused, match=r"shares of \['p3'\] were dealt under another neighbour graph"):
        c.call("secagg_unmask", "p0", vouched, {**meta, "signers": ["p1", "p2"], "certified": []})
    assert FileStateStore(tmp_path / "p0").load(srv.label).revealed == {}


def test_an_honest_retry_after_heavy_dropouts_renoises_for_fewer_contributors(tmp_path: Path) -> None:
    """Distributed DP: 10 parties, m_min 6; only 5 mask, attempt 0 aborts before anyone reveals. The retry over
    those 5 guarantees only 3 contributors, so their inputs cached with a 1/6 noise share are not re-used: each
    masks the fresh input its caller noised for 3 (a new, charged release), and the retry completes."""
    from _secagg_coordinator import Consortium

    c = Consortium(10, tmp_path)
    fresh = {p: c.x[p] + 100.0 for p in c.names}  # what each caller computes for the retry (fresh noise)

    def run(parties: list[str], label: str, inputs: dict, drop: set[str]) -> np.ndarray:
        srv = SecAggServer(SecAggParams(), parties, c.d, f"run-1/{label}", np.random.default_rng(1), round_id="round-1")

        def call(kind: str, party: str, arrays: Any, meta: Any) -> Any:
            if party in drop and kind == "fit":
                return None
            if kind == "fit":
                return {
                    "masked": c.clients[party].respond_masked(
                        arrays, meta, inputs[party], run_id="run-1", noise_parties=int(meta["noise_parties"])
                    )
                }
            return c.call(kind, party, arrays, meta)

        return decode_vector(run_secagg(srv, call), srv.params)

    with pytest.raises(SecAggAbort, match="masked input: 5 parties left, 6 needed") as caught:
        run(c.names, "round-1/attempt-0/n", c.x, set(c.names[5:]))
    survivors = caught.value.survivors
    total = run(survivors, "round-1/attempt-1/n", fresh, set())
    np.testing.assert_allclose(total, sum(fresh[p] for p in survivors), atol=1e-6)
