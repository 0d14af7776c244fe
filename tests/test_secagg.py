"""SecAgg+ building blocks and protocol: Shamir, the neighbour graph, exact sums under every kind of dropout."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampan.crypto import shamir
from sampan.crypto.channel import ChannelError
from sampan.crypto.identity import simulated_consortium
from sampan.privacy.dp3 import party_release
from sampan.privacy.randomness import seeded_generator
from sampan.privacy.secagg import (
    SecAggAbort,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    choose_neighbours,
    decode_vector,
    encode_vector,
    harary_graph,
    run_secagg,
)
from sampan.privacy.secagg.state import FileStateStore


# --- Shamir --------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), n=st.integers(1, 12), data=st.data())
def test_shamir_any_t_shares_recover_the_secret(secret: bytes, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    shares = shamir.split(secret, t, xs)
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=n, unique=True))
    assert shamir.combine({x: shares[x] for x in subset}, t) == secret
    raw = {x: shamir.share_from_bytes(shamir.share_to_bytes(v)) for x, v in shares.items()}
    assert raw == shares


def test_shamir_fewer_than_t_shares_do_not_reveal_the_secret() -> None:
    secret = bytes(range(32))
    shares = shamir.split(secret, 3, [1, 2, 3, 4])
    with pytest.raises(shamir.ShamirError, match="need 3 shares"):
        shamir.combine({1: shares[1], 2: shares[2]}, 3)
    # interpolating t-1 shares as if they were enough gives an unrelated value (or no 32-byte secret at all)
    try:
        assert shamir.combine({1: shares[1], 2: shares[2]}, 2) != secret
    except shamir.ShamirError:
        pass
    # two sharings of the same secret differ: coefficients are fresh CSPRNG draws
    assert shamir.split(secret, 3, [1, 2, 3]) != shamir.split(secret, 3, [1, 2, 3])
    with pytest.raises(shamir.ShamirError):
        shamir.split(b"short", 2, [1, 2])
    with pytest.raises(shamir.ShamirError):
        shamir.split(secret, 2, [1, 1])


# --- graph ---------------------------------------------------------------------------------------------
def test_harary_graph_is_k_regular_symmetric_and_connected() -> None:
    names = [f"p{i:02d}" for i in range(30)]
    graph = harary_graph(names, 6, np.random.default_rng(1))
    assert all(len(n) == 6 and p not in n for p, n in graph.items())
    assert all(p in graph[q] for p, n in graph.items() for q in n)
    seen, stack = {"p00"}, ["p00"]
    while stack:
        for q in graph[stack.pop()] - seen:
            seen.add(q)
            stack.append(q)
    assert seen == set(names)
    complete = harary_graph(names[:5], None, np.random.default_rng(1))
    assert all(len(n) == 4 for n in complete.values())
    assert harary_graph(names[:5], 8, np.random.default_rng(1)) == complete


def test_auto_degree_is_logarithmic_for_large_consortia_and_complete_for_small() -> None:
    assert choose_neighbours(10, 0.6, 0.1) is None
    k = choose_neighbours(1000, 0.6, 0.1)
    assert k is not None and k % 2 == 0 and 10 <= k <= 80
    assert choose_neighbours(100, 0.6, 0.3) is None  # heavy dropout: every party must hold shares of every other


# --- protocol (parties as plain objects; the workflow tests drive it through a transport) -----------------
class Sim:
    """n clients, a server, and a `call` that lets parties fail at chosen steps."""

    def __init__(self, n: int, d: int = 16, params: SecAggParams | None = None, seed: int = 0) -> None:
        self.params = params or SecAggParams()
        self.names = [f"p{i:02d}" for i in range(n)]
        self.verifier, self.identities = simulated_consortium(self.names)
        self.clients = {p: self.client(p) for p in self.names}
        rng = np.random.default_rng(seed)
        self.x = {p: rng.normal(scale=3.0, size=d) for p in self.names}
        self.d = d
        self.drop: dict[str, str] = {}
        self.seen: list[tuple[str, str, dict[str, np.ndarray]]] = []

    def client(self, p: str, **options: Any) -> SecAggClient:
        return SecAggClient(p, identity=self.identities[p], verifier=self.verifier, **options)

    def server(self, label: str = "run/r1/a0") -> SecAggServer:
        return SecAggServer(self.params, self.names, self.d, label, np.random.default_rng(7))

    def call(self, kind: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]):
        if self.drop.get(party) == kind:
            return None
        c = self.clients[party]
        if kind == "fit":
            reply = {"masked": c.respond_masked(arrays, meta, self.x[party], run_id="run")}
        else:
            reply = c.respond(kind, arrays, meta, run_id="run")
        self.seen.append((kind, party, dict(reply)))
        return reply

    def expected(self, parties: list[str]) -> np.ndarray:
        total = np.zeros(self.d, dtype=np.uint64)
        for p in parties:
            total += encode_vector(self.x[p], self.params)
        return total


@pytest.mark.parametrize("n, k, drop", [
    (5, None, {}),
    (8, None, {"p01": "secagg_keys", "p02": "secagg_share", "p03": "fit"}),  # dropped before masking
    (8, None, {"p04": "secagg_unmask", "p06": "secagg_unmask"}),              # dropped after masking
    (8, None, {"p03": "fit", "p05": "secagg_unmask"}),                        # both
    (40, 10, {"p07": "fit", "p11": "fit", "p30": "secagg_unmask", "p02": "secagg_keys"}),  # sparse graph (SecAgg+)
], ids=["all", "before-masking", "after-masking", "both", "sparse-k10"])
def test_sum_is_exact_whoever_drops(n: int, k: int | None, drop: dict[str, str]) -> None:
    sim = Sim(n, params=SecAggParams(neighbours=k))
    sim.drop = drop
    server = sim.server()
    total = run_secagg(server, sim.call)
    in_sum = [p for p in sim.names if drop.get(p) not in ("secagg_keys", "secagg_share", "fit")]
    assert server.u3 == in_sum  # parties that dropped after masking are in the sum
    np.testing.assert_array_equal(total, sim.expected(in_sum))  # exact in the ring
    plain = sum(sim.x[p] for p in in_sum)
    np.testing.assert_allclose(decode_vector(total, sim.params), plain, atol=len(in_sum) * 2.0**-32)
    assert server.summary()["dropped_before_masking"] == sorted(p for p, s in drop.items() if s == "fit")
    assert server.summary()["dropped_after_masking"] == sorted(p for p, s in drop.items() if s == "secagg_unmask")


def test_coordinator_sees_masked_inputs_and_one_share_per_neighbour() -> None:
    sim = Sim(6)
    sim.drop = {"p02": "fit"}
    run_secagg(sim.server(), sim.call)
    for kind, party, reply in sim.seen:
        if kind == "fit":  # a masked input is uniform in Z_2^64: nothing like the encoded update
            decoded = decode_vector(reply["masked"], sim.params)
            assert np.abs(decoded).max() > 1e6 and np.abs(decoded - sim.x[party]).min() > 1e3
        if kind == "secagg_unmask":  # one share per neighbour: b-shares of the 4 other survivors, s of p02
            assert set(reply) == {"b", "s"} and reply["b"].shape == (4, 66)
            assert reply["s"].shape == ((1, 66) if party != "p02" else (0, 66))
        if kind == "secagg_share":  # one sealed envelope per neighbour, small
            assert reply["envelopes"].dtype == np.uint8 and reply["envelopes"].shape[0] == 5
            assert reply["envelopes"].shape[1] < 400


def test_below_threshold_aborts_cleanly_with_the_survivors() -> None:
    sim = Sim(6)
    sim.drop = {"p00": "fit", "p01": "fit", "p02": "fit"}  # 3 of 6 left, 4 needed (threshold 0.6)
    with pytest.raises(SecAggAbort, match="masked input: 3 parties left, 4 needed") as caught:
        run_secagg(sim.server(), sim.call)
    assert caught.value.survivors == ["p03", "p04", "p05"]
    assert not [s for s in sim.seen if s[0] == "secagg_unmask"]  # nobody revealed anything
    # the retry with the survivors (fresh label, fresh keys) completes
    sim.names, sim.drop = caught.value.survivors, {}
    total = run_secagg(sim.server("run/r1/a1"), sim.call)
    np.testing.assert_array_equal(total, sim.expected(caught.value.survivors))


def test_too_few_shares_after_masking_aborts() -> None:
    sim = Sim(5)
    sim.drop = {"p00": "secagg_unmask", "p01": "secagg_unmask", "p02": "secagg_unmask"}
    with pytest.raises(SecAggAbort, match="unmasking"):
        run_secagg(sim.server(), sim.call)


def test_a_corrupted_share_is_caught_by_the_commitment() -> None:
    sim = Sim(5)
    original = sim.call

    def corrupting(kind, party, arrays, meta):
        reply = original(kind, party, arrays, meta)
        if kind == "secagg_unmask" and party == "p01":
            reply = {k: v.copy() for k, v in reply.items()}
            reply["b"][:, -1] ^= 1
        return reply

    server = sim.server()
    server.params = SecAggParams(threshold=1.0)  # every holder's share is used
    with pytest.raises(SecAggAbort, match="does not match its commitment"):
        run_secagg(server, corrupting)


def test_restarted_party_sits_the_attempt_out_and_replies_are_idempotent(tmp_path) -> None:
    sim = Sim(4)
    sim.clients["p01"] = sim.client("p01", state=FileStateStore(tmp_path / "p01"))
    server = sim.server()
    for party, (arrays, meta) in server.advertise_requests().items():
        server.receive_keys(party, sim.call("secagg_keys", party, arrays, meta))
    for party, (arrays, meta) in server.share_requests().items():
        server.receive_shares(party, sim.call("secagg_share", party, arrays, meta))
    requests = server.masked_requests()
    arrays, meta = requests["p00"]
    first = sim.call("fit", "p00", arrays, meta)["masked"]
    np.testing.assert_array_equal(sim.call("fit", "p00", arrays, meta)["masked"], first)  # same answer twice
    sim.clients["p01"] = sim.client("p01", state=FileStateStore(tmp_path / "p01"))  # restarted: new master
    with pytest.raises(ChannelError, match="before a restart"):
        sim.call("fit", "p01", *requests["p01"])


def test_ring_capacity_is_checked() -> None:
    with pytest.raises(ValueError, match="overflow"):
        SecAggParams(frac_bits=40, max_abs=1e6).check_capacity(100)
    SecAggParams().check_capacity(10_000)
    with pytest.raises(ValueError):
        SecAggParams(threshold=0.5)
    with pytest.raises(SecAggAbort, match="never sums fewer than 3 contributors"):
        SecAggServer(SecAggParams(), ["one", "two"], 3, "l", np.random.default_rng(0))
    with pytest.raises(ValueError, match="min_contributors must be at least 3"):
        SecAggParams(min_contributors=2)


def test_distributed_noise_share_is_sized_for_the_least_number_of_survivors() -> None:
    """Each party adds σ²/m_min: any completed round's sum carries at least σ² of noise."""
    settings = {"clip": 1.0, "mode": "distributed", "parties": 10, "sum_sigma": 2.0, "count_sigma": None,
                "noise_parties": 6}
    rng = seeded_generator(3)
    draws = np.array([party_release(np.zeros(500), settings, rng=rng)[0] for _ in range(40)])
    assert np.std(draws) == pytest.approx(2.0 / math.sqrt(6), rel=0.03)
    six_survivors = draws[:6].sum(axis=0)
    assert np.var(six_survivors) == pytest.approx(4.0, rel=0.15)


def test_signers_beyond_the_neighbourhood_come_with_their_certificates() -> None:
    """On a sparse graph a party's neighbours may be fewer than min_contributors - 1: the coordinator adds other
    signers' signatures with their certificates, and the party counts them towards the minimum."""
    sim = Sim(8, params=SecAggParams(neighbours=2, min_contributors=5))
    sim.clients = {p: sim.client(p, min_contributors=5) for p in sim.names}
    certified: dict[str, list[str]] = {}

    def call(kind: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]):  # type: ignore[no-untyped-def]
        if kind == "secagg_unmask":
            certified[party] = list(meta["certified"])
        return sim.call(kind, party, arrays, meta)

    server = sim.server()
    np.testing.assert_array_equal(run_secagg(server, call), sim.expected(sim.names))
    assert sorted(certified) == sim.names
    for party, extra in certified.items():
        assert len(extra) == 2 and not set(extra) & (server.graph[party] | {party})  # 2 neighbours + 2 others
