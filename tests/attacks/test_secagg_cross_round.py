"""Secure aggregation across graphs, rounds, model digests and runs (issue 11, finding 3; adversarial review R7).

A malicious coordinator drives the project's real parties (`SecAggClient`, and `HorizontalParty` as the
runtime mounts it) and tries to unmask two sums whose difference is one party's input:

- R7-1: neighbour graphs of two components (each regular and symmetric): each component's masks cancel
  inside it, so one unmasking gives each component's sum; re-drawn components over the same U3 isolate an
  input. Or a connected graph, with each party told to mask only inside its own component. Parties now
  refuse a disconnected graph, unmask only a U3 connected in their graph whose every neighbour they masked
  against, and lock a round's unmasking to one (U3, graph);
- R7-2: the same model under a new digest (an identity scaler) and a new round name: parties now digest
  the model canonically, and bind each input itself (an HMAC of it under the party's lock key) to the first
  U3 it was unmasked for, in any round, model or run;
- R7-3: a new run on the same model: those input locks are not per run and `close_run` keeps them;
- R7-4: a deployed party now enforces the job's minimum number of contributors (and its own `[allow]`
  minimum, refusing a job below it) and signs it with U3;
- R11-1/2: the same model under other settings (half the learning rate, coarser bins, DP evaluation after a
  plain one) gives inputs that are known linear maps of the first ones, with new bytes: parties now lock the
  model itself (`model:` HMAC of its canonical digest, any run, any settings) and bin at one value under
  secure aggregation; the workflow draws each run's start from its seed so honest runs never collide.

Every test here succeeded as an attack (or crashed on a missing feature) on the code before these fixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _secagg_coordinator import RUN, Consortium, drive
from test_secagg_attempts import MODEL, TRAIN, _splits

import sampan.privacy.secagg.server as secagg_mod
from sampan.core.party import PartyApp
from sampan.crypto.channel import prg_uint64
from sampan.crypto.identity import simulated_consortium
from sampan.horizontal.party import HorizontalParty, evaluation_vector
from sampan.metrics import ScoreHistogram
from sampan.metrics.histogram import DEFAULT_BINS, DP_BINS
from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused
from sampan.privacy.secagg import SecAggAbort, SecAggClient, SecAggParams, SecAggRefused, SecAggServer, decode_vector
from sampan.wire import Message

# --- R7-1: the neighbour graph ------------------------------------------------------------------------------

TRIANGLES = [  # four attempts of ONE round, same U3 (all six), each a 2-regular graph of two disjoint triangles
    (("p0", "p1", "p2"), ("p3", "p4", "p5")),
    (("p0", "p1", "p3"), ("p2", "p4", "p5")),
    (("p0", "p2", "p3"), ("p1", "p4", "p5")),
    (("p1", "p2", "p3"), ("p0", "p4", "p5")),
]


def _graph(components: tuple[tuple[str, ...], ...]) -> dict[str, set[str]]:
    return {p: set(c) - {p} for c in components for p in c}


def _component_sums(srv: SecAggServer, components: tuple[tuple[str, ...], ...]) -> dict[tuple[str, ...], np.ndarray]:
    """With every b_v of U3 rebuilt, the masked inputs of one connected component sum to its plain sum."""
    srv.u4 = sorted(srv.st.shares)
    out = {}
    for comp in components:
        total = np.zeros(srv.length, dtype=np.uint64)
        for v in comp:
            total += srv.st.masked[v] - prg_uint64(srv._rebuild("b", v), f"{srv.label}|self", srv.length)
        out[comp] = total
    return out


def test_redrawn_disconnected_graphs_over_one_survivor_set_do_not_isolate_an_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """x0 = (S012 + S013 + S023 + S123)/3 - S123 from four attempts of two triangles each: refused at share."""
    c = Consortium(6, tmp_path)
    params = SecAggParams(neighbours=2)
    monkeypatch.setattr(secagg_mod, "_connected", lambda nodes, graph: True)  # the coordinator skips its own check
    sums: dict[tuple[str, ...], np.ndarray] = {}
    for attempt, comps in enumerate(TRIANGLES):
        monkeypatch.setattr(secagg_mod, "harary_graph", lambda parties, k, rng, comps=comps: _graph(comps))
        srv = SecAggServer(params, c.names, c.d, f"{RUN}/round-1/attempt-{attempt}", np.random.default_rng(0),
                           round_id="round-1")
        try:
            drive(srv, c)  # every step, honest relay; unmasking answered by all six (same U3 each time)
        except SecAggRefused as exc:
            assert "the graph is disconnected" in str(exc) and attempt == 0
            return
        sums.update(_component_sums(srv, comps))
    four = sums[("p0", "p1", "p2")] + sums[("p0", "p1", "p3")] + sums[("p0", "p2", "p3")] + sums[("p1", "p2", "p3")]
    recovered = decode_vector(four - np.uint64(3) * sums[("p1", "p2", "p3")], params) / 3
    pytest.fail(f"p0's input read exactly: {recovered} (true {c.x['p0']})")


CLIQUES = (("p0", "p1", "p2", "p3"), ("p4", "p5", "p6", "p7"))


def _cliques_and_matching(parties: Any, k: Any, rng: Any) -> dict[str, set[str]]:
    """4-regular and connected: two K4 joined by the matching p_i - p_{i+4}."""
    graph = _graph(CLIQUES)
    for i in range(4):
        graph[f"p{i}"].add(f"p{i + 4}")
        graph[f"p{i + 4}"].add(f"p{i}")
    return graph


@pytest.mark.parametrize("inside_cliques", [True, False])
def test_masking_only_inside_components_of_a_connected_graph_is_not_unmasked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inside_cliques: bool) -> None:
    """The graph is connected, but each party is told to mask only against its 3 clique-mates (3 >= t = 3 of 4):
    the cliques' masks would cancel inside each clique and unmasking would give each clique's sum. Parties refuse
    to sign U3 (they did not mask against a neighbour in it). Control: the honest relay unmasks the exact sum."""
    c = Consortium(8, tmp_path)
    monkeypatch.setattr(secagg_mod, "harary_graph", _cliques_and_matching)
    srv = SecAggServer(SecAggParams(neighbours=4), c.names, c.d, f"{RUN}/round-1/attempt-0", np.random.default_rng(0),
                       round_id="round-1")

    def mask_inside(kind: str, party: str, arrays: dict, meta: dict) -> None:
        if kind == "fit" and inside_cliques:
            mates = sorted(q for comp in CLIQUES if party in comp for q in comp if q != party)
            for key in [k for k in arrays if k.startswith("peer.")]:
                del arrays[key]
            arrays.update(srv._peers(mates))
            meta["peers"] = mates

    if not inside_cliques:
        drive(srv, c)
        np.testing.assert_array_equal(srv.result(), c.expected(c.names, srv.params))
        return
    with pytest.raises(SecAggRefused, match=r"did not mask against survivors \['p\d'\]"):
        drive(srv, c, alter=mask_inside)


def test_a_round_unmasked_under_one_graph_is_not_unmasked_again_under_another(tmp_path: Path) -> None:
    """Same round, same U3, another (connected, regular) graph: the round's lock covers the graph too."""
    c = Consortium(6, tmp_path)
    params = SecAggParams(neighbours=2)
    first = SecAggServer(params, c.names, c.d, f"{RUN}/round-1/attempt-0", np.random.default_rng(0), round_id="round-1")
    drive(first, c)
    seed = next(s for s in range(1, 50)
                if secagg_mod.harary_graph(c.names, 2, np.random.default_rng(s)) != first.graph)
    second = SecAggServer(params, c.names, c.d, f"{RUN}/round-1/attempt-1", np.random.default_rng(seed),
                          round_id="round-1")
    with pytest.raises(SecAggRefused, match="under another neighbour graph"):
        drive(second, c)


# --- R7-2 / R7-3: the same input under another digest, round or run -----------------------------------------

VICTIM = "bank_2"
PARAMS = np.array([0.1, -0.2, 0.3, 0.05])
IDENTITY_SCALER = {"mean": np.zeros(3), "scale": np.ones(3)}  # (X - 0) / 1 == X bit for bit; another digest


class Coordinator:
    """A malicious coordinator talking to the real horizontal parties; it keeps their SecAgg clients."""

    def __init__(self, n: int = 5) -> None:
        splits = _splits(n)
        verifier, identities = simulated_consortium(list(splits))
        self.apps: dict[str, PartyApp] = {}
        self.clients: dict[str, SecAggClient] = {}
        for name, split in splits.items():
            self.clients[name] = SecAggClient(name, identity=identities[name], verifier=verifier)
            app = PartyApp(name)
            for kind, handler in HorizontalParty(name, split.train, split.test,
                                                 secagg=self.clients[name]).handlers().items():
                app.register(kind, handler)
            self.apps[name] = app
        self.names = sorted(self.apps)
        self.errors: dict[str, str] = {}

    def attempt(self, parties: list[str], label: str, *, run: str = "run-A", round_id: str = "round-1",
                extra: Mapping[str, np.ndarray] | None = None, kind: str = "fit", total_rows: int = 300,
                train: Mapping[str, Any] | None = None, bins: int = DEFAULT_BINS) -> np.ndarray:
        sa = SecAggParams(frac_bits=32 if kind == "fit" else 16, max_abs=1e4 if kind == "fit" else 1e6)
        length = PARAMS.size + 3 if kind == "fit" else 3 * bins + 3
        srv = SecAggServer(sa, parties, length, f"{run}/{label}", np.random.default_rng(5), round_id=round_id)

        def call(step: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Any:
            arrays, meta = dict(arrays), dict(meta)
            if step == "fit":
                if kind == "fit":
                    fit = {"model": MODEL, "train": dict(train or TRAIN), "seed": 11,
                           "secagg": {**meta, "total_rows": total_rows}}
                else:
                    step, fit = "evaluate", {"model": MODEL, "bins": bins, "secagg": meta}
                arrays, meta = {"params": PARAMS, **(extra or {}), **arrays}, fit
            reply = self.apps[party].handle(Message(run, 1, "coordinator", party, step, arrays=arrays, meta=meta))
            if reply.is_error:
                self.errors[party] = str(reply.meta["error"])
                return None
            return dict(reply.arrays)

        return decode_vector(secagg_mod.run_secagg(srv, call), srv.params)


def _victim_alone(kind: str) -> np.ndarray:
    """The victim's own vector, asked of a fresh copy of the victim without SecAgg (the positive control)."""
    app = Coordinator().apps[VICTIM]
    if kind == "fit":
        meta = {"model": MODEL, "train": TRAIN, "seed": 11}
        r = app.handle(Message("ref", 1, "coordinator", VICTIM, "fit", arrays={"params": PARAMS}, meta=meta))
        return np.concatenate([r.arrays["update"] * 0.2, [0.0, 0.2 * r.meta["loss"], 0.2]])
    r = app.handle(Message("ref", 1, "coordinator", VICTIM, "evaluate", arrays={"params": PARAMS},
                           meta={"model": MODEL, "bins": DEFAULT_BINS}))
    return evaluation_vector(ScoreHistogram.from_arrays(dict(r.arrays)), r.meta["loss_sum"], r.meta["brier_sum"],
                             r.meta["n"])


def _refused_by_the_others(c: Coordinator, why: str) -> None:
    others = [p for p in c.names if p != VICTIM]
    assert set(c.errors) == set(others) and all(why in e for e in c.errors.values()), c.errors


@pytest.mark.parametrize("kind", ["fit", "evaluate"])
def test_the_same_model_under_another_digest_and_round_cannot_be_differenced(kind: str) -> None:
    """Round 2 is round 1's model plus an identity scaler (X unchanged, another request digest), over U minus the
    victim: first - second would be the victim's update (or its evaluation histogram) exactly."""
    c = Coordinator()
    first = c.attempt(c.names, "round-1/attempt-0/n", round_id="round-1", kind=kind)
    np.testing.assert_allclose(first[-1], 1.0 if kind == "fit" else 100, atol=1e-6)
    others = [p for p in c.names if p != VICTIM]
    with pytest.raises(SecAggAbort):
        c.attempt(others, "round-2/attempt-0/n", round_id="round-2", kind=kind, extra=IDENTITY_SCALER)
    _refused_by_the_others(c, "already revealed unmask shares")
    assert _victim_alone(kind).shape == first.shape  # (what the difference would have been)


@pytest.mark.parametrize("close", [False, True])
def test_a_new_run_on_the_same_model_cannot_be_differenced(close: bool) -> None:
    """Run B repeats run A's first round (same model and seed) over U minus the victim; with `close`, every party
    closed run A first (as deployed agents do, which deletes the run's records)."""
    c = Coordinator()
    c.attempt(c.names, "round-1/attempt-0/n", run="run-A")
    if close:
        for client in c.clients.values():
            client.close_run("run-A")
    others = [p for p in c.names if p != VICTIM]
    with pytest.raises(SecAggAbort):
        c.attempt(others, "round-1/attempt-0/n", run="run-B")
    _refused_by_the_others(c, "it unmasked this very input for another survivor set")


def test_rescaled_weights_in_a_new_run_do_not_unmask_the_same_updates_again() -> None:
    """Run B sends run A's model and seed with total_rows 240 instead of 300: every input is run A's times 300/240
    (another encoded vector), so (300/240)·sum_A - sum_B... would isolate the victim. The lock on the unweighted
    content refuses it."""
    c = Coordinator()
    c.attempt(c.names, "round-1/attempt-0/n", run="run-A", total_rows=300)
    others = [p for p in c.names if p != VICTIM]
    with pytest.raises(SecAggAbort):
        c.attempt(others, "round-1/attempt-0/n", run="run-B", total_rows=240)
    _refused_by_the_others(c, "it unmasked this very input for another survivor set")


def test_an_honest_rerun_over_the_same_parties_still_completes() -> None:
    """Control: the same input in a new run over the same survivor set sums to the same thing (nothing new)."""
    c = Coordinator()
    first = c.attempt(c.names, "round-1/attempt-0/n", run="run-A")
    np.testing.assert_array_equal(c.attempt(c.names, "round-1/attempt-0/n", run="run-B"), first)
    assert not c.errors


# --- R11: the same model under other settings (inputs that are known linear maps of the first ones) ----------

ONE_STEP = {"epochs": 1, "batch_size": 1000, "learning_rate": 0.3}  # one full-batch step (60 rows per party)


def test_a_halved_learning_rate_in_a_new_run_does_not_isolate_an_update() -> None:
    """Review R11-1: the learning rate is not part of the model. Run A: one full-batch step at lr 0.3 over all five
    parties; run B: the same model at lr 0.15 over the four others. A one-step update is -lr·grad, so 2 × run B's
    update slots are the others' run-A updates to the 2^-32 grid (new bytes, so the input locks did not apply),
    and run A minus that is the victim's update, exactly. Parties now lock the model itself."""
    c = Coordinator()
    others = [p for p in c.names if p != VICTIM]
    total = c.attempt(c.names, "round-1/attempt-0/n", run="run-A", train=ONE_STEP)
    try:
        half = c.attempt(others, "round-1/attempt-0/n", run="run-B", train={**ONE_STEP, "learning_rate": 0.15})
    except SecAggAbort:
        _refused_by_the_others(c, "it unmasked this very global model")
        return
    rest = half.copy()
    rest[:PARAMS.size] *= 2.0
    victim = (total - rest)[:PARAMS.size]
    ref = Coordinator().apps[VICTIM].handle(Message("ref", 1, "coordinator", VICTIM, "fit", arrays={"params": PARAMS},
                                                    meta={"model": MODEL, "train": ONE_STEP, "seed": 11}))
    np.testing.assert_allclose(victim, ref.arrays["update"] * 0.2, atol=1e-8)
    pytest.fail(f"the victim's update was read exactly across runs by rescaling the learning rate: {victim}")


def _merge_pairs(fine: np.ndarray, bins: int) -> np.ndarray:
    """A (2·bins)-bin evaluation vector merged into the bins-bin one (floor(2k·p)//2 == floor(k·p))."""
    parts = [fine[i * 2 * bins:(i + 1) * 2 * bins].reshape(bins, 2).sum(1) for i in range(3)]
    return np.concatenate(parts + [fine[6 * bins:]])


def test_coarser_bins_in_a_new_run_do_not_isolate_an_evaluation() -> None:
    """Review R11-2: run A evaluates the model at 40 bins over the four others, run B at 20 bins over all five;
    merging run A's bins pairwise is exact, so run B minus it is the victim's 20-bin holdout histogram (labels
    per bin) and sums. Parties now bin at exactly one value under secure aggregation (and lock the model)."""
    c = Coordinator()
    others = [p for p in c.names if p != VICTIM]
    try:
        fine = c.attempt(others, "evaluate-1/attempt-0/n", run="run-A", kind="evaluate", bins=40)
        coarse = c.attempt(c.names, "evaluate-1/attempt-0/n", run="run-B", kind="evaluate", bins=20)
    except SecAggAbort:
        assert c.errors and all("refuses bins=" in e or "it unmasked this very global model" in e
                                for e in c.errors.values()), c.errors
        return
    victim = coarse - _merge_pairs(fine, 20)
    pytest.fail(f"the victim's 20-bin holdout histogram was read exactly across runs: {np.rint(victim[:40])}")


def test_a_party_bins_at_exactly_one_value_under_secure_aggregation() -> None:
    """Under secure aggregation a party refuses any bins but the default (DEFAULT_BINS without DP)."""
    split = _splits(3)[VICTIM]
    party = HorizontalParty(VICTIM, split.train, split.test)
    with pytest.raises(PolicyRefused, match="refuses bins=40"):
        party.evaluate(Message("run-A", 1, "coordinator", VICTIM, "evaluate", arrays={"params": PARAMS},
                               meta={"model": MODEL, "bins": 40, "secagg": {"label": "x"}}))


def test_the_same_model_evaluated_under_dp_in_a_new_run_does_not_isolate_an_evaluation() -> None:
    """The model lock, not the binning rule, stops this one: run A evaluates the model without DP (2000 bins) over
    the four others; run B asks all five under DP (a `describe` with dp_count first), where parties bin into 100
    bins and send midpoint sums — functions of the 2000-bin counts merged by 20. Run B minus merged run A would be
    the victim's 100-bin label counts; every input differs in bytes, the model does not."""
    c = Coordinator()
    others = [p for p in c.names if p != VICTIM]
    fine = c.attempt(others, "evaluate-1/attempt-0/n", run="run-A", kind="evaluate")
    for name in c.names:
        reply = c.apps[name].handle(Message("run-B", 0, "coordinator", name, "describe",
                                            meta={"dp_count": {"noise_multiplier": 10.0}}))
        assert not reply.is_error, reply.meta
    try:
        coarse = c.attempt(c.names, "evaluate-1/attempt-0/n", run="run-B", kind="evaluate", bins=DP_BINS)
    except SecAggAbort:
        _refused_by_the_others(c, "it unmasked this very global model")
        return
    group = DEFAULT_BINS // DP_BINS
    pos = coarse[:DP_BINS] - fine[:DEFAULT_BINS].reshape(DP_BINS, group).sum(1)
    pytest.fail(f"the victim's 100-bin holdout label counts were read exactly across runs: {np.rint(pos)}")


def test_an_honest_run_from_a_seed_drawn_start_over_another_party_set_completes() -> None:
    """Control: the lock binds a model, not a party; a second run over another party set from another model (as the
    workflow draws each run's start from its seed under secure aggregation) completes."""
    c = Coordinator()
    others = [p for p in c.names if p != VICTIM]
    c.attempt(c.names, "round-1/attempt-0/n", run="run-A", train=ONE_STEP)
    c.attempt(others, "round-1/attempt-0/n", run="run-B", train=ONE_STEP, extra={"params": PARAMS + 1e-3})
    assert not c.errors


def test_a_restarted_party_still_evaluates_one_model_per_run_under_dp(tmp_path: Path) -> None:
    """Under DP a party evaluates one model per run; a deployed party keeps that record in its state dir, so a
    restarted party (a new instance) refuses a second model in the same run."""
    split = _splits(3)[VICTIM]
    policy = PartyPrivacyPolicy(required_levels=frozenset({"DP"}))

    def evaluate(party: HorizontalParty, params: np.ndarray) -> Message:
        return party.evaluate(Message("run-dp", 5, "coordinator", VICTIM, "evaluate", arrays={"params": params},
                                      meta={"model": MODEL, "bins": DP_BINS}))

    first = HorizontalParty(VICTIM, split.train, split.test, policy, state_dir=tmp_path)
    evaluate(first, PARAMS)
    restarted = HorizontalParty(VICTIM, split.train, split.test, policy, state_dir=tmp_path)
    evaluate(restarted, PARAMS + 0.0)  # the same model again: answered alike
    with pytest.raises(PolicyRefused, match="refuses a second evaluation"):
        evaluate(restarted, PARAMS * 1.5)


# --- R7-4: the minimum number of contributors, as a deployed party enforces it -------------------------------

def test_a_deployed_party_enforces_the_job_minimum_and_its_own(tmp_path: Path) -> None:
    from _consent_grant import open_with_consent
    from _deploy_federation import ThreadFederation

    fed = ThreadFederation(tmp_path, allow={"bank_harbour": {"min_contributors": 5}}, start=False)
    agent = fed.agents["bank_harbour"]
    parties = sorted(fed.agents)

    def open_run(run_id: str, minimum: int) -> Message:
        job = {"parties": parties, "protections": ["secure_aggregation"], "noise_multipliers": {},
               "operator": None, "label_holder": None, "secagg_min_contributors": minimum}
        return open_with_consent(agent, Message(run_id, 0, "coordinator", "bank_harbour", "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": fed.dataset, "test_fraction": 0.2, "split_seed": 1, "job": job}))

    refused = open_run("run-low", 3)  # below the party's [allow] min_contributors = 5
    assert refused.is_error and "below this party's minimum 5" in str(refused.meta["error"])
    assert not open_run("run-high", 6).is_error
    client = agent._runs["run-high"].app._handlers["secagg_keys"].secagg_client()  # the run's SecAgg client
    assert client.min_contributors == 6  # the job's minimum (above the party's own 5), whatever min_live says


def test_parties_told_different_minimums_do_not_vouch_for_each_other(tmp_path: Path) -> None:
    """The coordinator tells p0 m_min 5 and the others 3 (so it could later drop parties the others still accept):
    the minimum is signed with U3, so p0 reveals nothing on signatures made under another minimum."""
    from sampan.crypto.identity import IdentityError

    c = Consortium(5, tmp_path)
    srv = SecAggServer(SecAggParams(), c.names, c.d, f"{RUN}/round-1/attempt-0", np.random.default_rng(0),
                       round_id="round-1")

    def split(kind: str, party: str, arrays: dict, meta: dict) -> None:
        if kind == "secagg_share" and party == "p0":
            meta["min_live"] = 5

    drive(srv, c, until="secagg_unmask", alter=split)
    arrays, meta = srv.unmask_requests()["p0"]
    with pytest.raises(IdentityError, match="bad_signature|signature"):
        c.call("secagg_unmask", "p0", arrays, meta)
