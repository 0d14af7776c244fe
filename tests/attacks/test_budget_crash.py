"""Finding 6: the budget stop could be bypassed by a crash, and parties accepted any noise.

Attacks:
- a malicious coordinator asks a party for noise multiplier 0, a negative or missing one, or less
  than the party's own minimum, or omits a level the party requires, or asks beyond the party's own
  budget: the party refuses before training, naming itself and the field, and the refusal reaches the
  coordinator as that party's error;
- a coordinator crashes between dispatching a round's fit requests and saving the round, and is
  resumed, again and again: every dispatched request is a release; the ε of all releases (counted
  from the transcript of what actually left for the parties) never exceeds the budget, and the
  durable ledger charged at least that much. On the old code each crash made a round free. Crashes
  also hit the setup (the DP row count) and the final evaluation. The transcript counter is strict: in
  a DP run a describe/stats/fit request without DP settings (an exact release) counts ε = ∞, and an
  evaluation counts 0 only where the receipt declares it (the released model, at the end).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
import pytest
from _horizontal_run import run_workflow
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sampan.config import parse_config
from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.party import HorizontalParty
from sampan.privacy import Ledger
from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused
from sampan.runtime.federation import build_inprocess_federation
from sampan.runtime.store import Store
from sampan.transport import PartyError
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

BUDGET, DELTA = 2.0, 1e-5


# --- parties refuse what breaks their own policy ---------------------------------------------------------
def _party(policy: PartyPrivacyPolicy | None = None, n: int = 200) -> HorizontalParty:
    rng = np.random.default_rng(0)
    data = PartyData(party="bank_a", ids=np.array([f"r{i}" for i in range(n)], dtype=object),
                     X=rng.normal(size=(n, 3)), y=(rng.random(n) < 0.3).astype(np.int8), feature_names=["a", "b", "c"])
    return HorizontalParty("bank_a", data, data, policy)


def _fit(**dp: Any) -> Message:
    return Message("run", 1, "coordinator", "bank_a", "fit", arrays={"params": np.zeros(4)},
                   meta={"model": {"kind": "logistic", "n_features": 3}, "seed": 1,
                         "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.1}, "public_rows": 200, **dp})


DP3 = {"clip": 0.5, "mode": "central", "parties": 3, "count_sigma": None}


@pytest.mark.parametrize("request_meta,field", [
    ({"dp2": {"noise_multiplier": 0.0, "max_grad_norm": 1.0}}, "dp2.noise_multiplier"),
    ({"dp2": {"noise_multiplier": -1.0, "max_grad_norm": 1.0}}, "dp2.noise_multiplier"),
    ({"dp2": {"max_grad_norm": 1.0}}, "dp2.noise_multiplier"),
    ({"dp2": {"noise_multiplier": float("nan"), "max_grad_norm": 1.0}}, "dp2.noise_multiplier"),
    ({"dp3": {**DP3, "sum_sigma": 0.0}}, "dp3.sum_sigma"),
    ({"dp3": {**DP3, "sum_sigma": 0.3}}, "dp3.sum_sigma"),  # record-level z = 0.3 / (2·0.5) = 0.3 < 0.5
    ({"dp3": {**DP3, "sum_sigma": 0.4, "noise_multiplier": 50.0}}, "dp3.sum_sigma"),  # a label cannot lie
    # distributed: each party's share is sum_sigma/√noise_parties; a huge m_min would make every share tiny
    ({"dp3": {**DP3, "mode": "distributed", "sum_sigma": 4.0, "noise_parties": 10**6}}, "dp3.noise_parties"),
], ids=["dp2-zero", "dp2-negative", "dp2-missing", "dp2-nan", "dp3-zero", "dp3-below-default", "dp3-mislabelled",
        "dp3-share-diluted"])
def test_party_refuses_too_little_noise(request_meta: dict, field: str) -> None:
    party = _party()
    with pytest.raises(PolicyRefused, match=rf"party 'bank_a' refuses {field}"):
        party.fit(_fit(**request_meta))
    assert party.policy.ledger("bank_a").events == ()  # nothing released, nothing charged


def test_party_minimum_is_its_own_and_the_refusal_reaches_the_coordinator() -> None:
    """A party configured with minimum 2.0 refuses z = 1.5 that another party would accept."""
    strict = _party(PartyPrivacyPolicy(min_noise_multiplier=2.0))
    app = PartyApp("bank_a")
    for kind, handler in strict.handlers().items():
        app.register(kind, handler)
    transport = InProcessTransport({"bank_a": app})
    request = _fit(dp2={"noise_multiplier": 1.5, "max_grad_norm": 1.0})
    with pytest.raises(
        PartyError, match=r"party 'bank_a' failed on 'fit'.*dp2.noise_multiplier=1.5.*minimum noise multiplier 2"
    ):
        list(transport.exchange([request]))
    assert _party().fit(request).arrays["update"].shape == (4,)  # the default policy accepts it
    for kind, meta in [
        ("stats", {"dp1": {"noise_multiplier": 0.0, "bounds": [[0, 1]] * 3}}),
        ("describe", {"dp_count": {"noise_multiplier": 0.0}}),
    ]:
        with pytest.raises(PartyError, match=r"party 'bank_a' failed on .*refuses dp"):
            list(transport.exchange([Message("run", 0, "coordinator", "bank_a", kind, meta=meta)]))


def test_party_refuses_a_request_that_omits_a_required_level() -> None:
    party = _party(PartyPrivacyPolicy(required_levels=frozenset({"DP2"})))
    with pytest.raises(PolicyRefused, match="party 'bank_a' refuses 'fit' without dp2"):
        party.fit(_fit())


def test_party_keeps_its_own_ledger_and_refuses_beyond_its_own_budget() -> None:
    """A coordinator replaying fit requests (e.g. 'resuming' forever) is cut off by the party itself."""
    party = _party(PartyPrivacyPolicy(epsilon=1.0))
    request = _fit(dp3={**DP3, "sum_sigma": 20.0})  # record-level z = 20
    answered = 0
    with pytest.raises(PolicyRefused, match="party 'bank_a' refuses: its own budget would be exceeded"):
        for _ in range(1000):
            party.fit(request)
            answered += 1
    ledger = party.policy.ledger("bank_a")
    assert answered == len(ledger.events) > 1 and ledger.spent("bank_a") <= 1.0


def test_party_ledger_survives_a_party_restart(tmp_path: Path) -> None:
    path = tmp_path / "party-ledger.json"
    request = _fit(dp3={**DP3, "sum_sigma": 20.0})
    _party(PartyPrivacyPolicy(epsilon=1.0, ledger_path=path)).fit(request)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    restarted = _party(PartyPrivacyPolicy(epsilon=1.0, ledger_path=path))
    restarted.fit(request)
    assert len(restarted.policy.ledger("bank_a").events) == 2  # the first release is still on its books


# --- a coordinator that crashes between dispatch and checkpoint ------------------------------------------
class Crash(Exception):
    """The coordinator process dies."""


def _config(tmp_path: Path, rounds: int) -> Any:
    return parse_config(
        {
            "run": {"name": "crash", "rounds": rounds, "seed": 7, "report_dir": str(tmp_path / "reports")},
            "training": {"learning_rate": 0.1},
            "source": {"kind": "consortium", "n_smes": 600},
            "data": {"standardize": False},
            "privacy": {"epsilon": BUDGET, "delta": DELTA, "dp3": {"noise_multiplier": 8.0, "clip": 0.5}},
        }
    )


def _transcript_epsilon(sent: list[Message], dp_run: bool = True) -> dict[str, float]:
    """ε per party of every release that left for a party, from the requests alone (dp-accounting).

    The true record-level multiplier of a DP3 request is computed here from its settings (sum sensitivity
    2·clip, count sensitivity 1); a describe/stats request under DP releases one Gaussian at its z. In a DP
    run (`dp_run`), a describe, stats or fit request that carries NO DP setting asks for an exact release:
    ε = ∞. An evaluation is a release about holdout rows, outside the DP unit, as the receipt declares only
    for the evaluation of the released model: it counts 0 when no later fit of a later round went to that
    party (the end of the run, or a round re-run after a crash), and ∞ otherwise (a per-round evaluation)."""
    accountants: dict[str, Any] = {}
    infinite: set[str] = set()
    for i, m in enumerate(sent):
        if m.kind == "fit" and "dp3" in m.meta:
            s = m.meta["dp3"]
            inv = (2 * s["clip"] / s["sum_sigma"]) ** 2 + (1 / s["count_sigma"] ** 2 if s.get("count_sigma") else 0)
            z = inv**-0.5
        elif m.kind == "describe" and "dp_count" in m.meta:
            z = m.meta["dp_count"]["noise_multiplier"]
        elif m.kind == "stats" and "dp1" in m.meta:
            z = m.meta["dp1"]["noise_multiplier"]
        elif m.kind in ("fit", "describe", "stats"):
            assert not ({"dp2", "dp1"} & set(m.meta)), "unaccounted DP level"
            if dp_run:  # an exact release in a DP run
                infinite.add(m.recipient)
            continue
        elif m.kind == "evaluate":
            later = [f for f in sent[i + 1 :] if f.kind == "fit" and f.recipient == m.recipient and f.step > m.step]
            if dp_run and later:  # an evaluation the receipt does not declare (not of the released model)
                infinite.add(m.recipient)
            continue
        else:  # secure-aggregation steps carry keys, sealed shares and masks: no release of their own
            continue
        accountant = accountants.setdefault(
            m.recipient,
            dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE),
        )
        accountant.compose(dp_accounting.GaussianDpEvent(z))
    spent = {p: a.get_epsilon(DELTA) for p, a in accountants.items()}
    return {**spent, **{p: math.inf for p in infinite}}


# where a crash may hit: the setup (describe), a training round's fit requests, or the final evaluation
CrashPoint = tuple[str, int, str]  # (request kind, round or -1 for any, "before_dispatch" / "after_dispatch")


def _run_with_crashes(tmp_path: Path, rounds: int, crashes: list[CrashPoint]) -> tuple[list[Message], Ledger, Any]:
    """Run, crashing at each point in turn, resuming after each crash, until the run ends."""
    config = _config(tmp_path, rounds)
    store = Store.open(f"sqlite:///{tmp_path / 'crash.db'}")
    run_id = store.create_run(name="crash", workflow="horizontal", seed=7, config=config.to_dict(), total_rounds=rounds)
    sent: list[Message] = []
    pending = list(crashes)
    for _ in range(len(crashes) + 1):
        transport, _ = build_inprocess_federation(config, 7)
        original = transport.exchange

        def exchange(messages, original=original):  # type: ignore[no-untyped-def]
            messages = list(messages)
            crash_now = bool(pending) and any(
                m.kind == pending[0][0] and pending[0][1] in (-1, m.step) for m in messages
            )
            if crash_now and pending[0][2] == "before_dispatch":
                pending.pop(0)
                raise Crash()
            sent.extend(messages)  # from here on, these requests have left the coordinator
            replies = list(original(messages))
            if crash_now:  # after_dispatch: the parties answered, the coordinator dies before saving
                pending.pop(0)
                raise Crash()
            return iter(replies)

        transport.exchange = exchange  # type: ignore[method-assign]
        try:
            outcome = run_workflow(transport, store, run_id, config, 7)
        except Crash:
            continue
        return sent, Ledger.from_json(store.ledger(run_id)), outcome
    raise AssertionError("the run neither finished nor stopped")


def test_crash_loop_between_dispatch_and_checkpoint_ends_in_a_budget_stop(tmp_path: Path) -> None:
    """Round 2 crashes after dispatch again and again: every retry is charged, the run stops at the budget."""
    sent, ledger, outcome = _run_with_crashes(tmp_path, rounds=4, crashes=[("fit", 2, "after_dispatch")] * 12)
    spent = _transcript_epsilon(sent)
    fits = [m for m in sent if m.kind == "fit" and m.recipient == ledger.parties[0]]
    assert len(fits) > 4  # the crashes really re-released round 2
    assert outcome.budget_stop is not None and "would spend" in outcome.budget_stop
    for party in ledger.parties:
        assert spent[party] <= BUDGET + 1e-9, spent  # what actually left never exceeds the budget
        assert ledger.spent(party) >= spent[party] - 1e-9  # and the durable ledger charged all of it


_POINTS = [("describe", 0), ("fit", 1), ("fit", 2), ("fit", 3), ("evaluate", -1)]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    crashes=st.lists(
        st.tuples(st.integers(0, len(_POINTS) - 1), st.sampled_from(["before_dispatch", "after_dispatch"])),
        min_size=1,
        max_size=8,
    ).map(lambda c: [(*_POINTS[i], phase) for i, phase in sorted(c, key=lambda x: x[0])])
)
@example(
    crashes=[
        ("describe", 0, "after_dispatch"),
        ("describe", 0, "before_dispatch"),
        ("fit", 3, "after_dispatch"),
        ("evaluate", -1, "after_dispatch"),
        ("evaluate", -1, "before_dispatch"),
    ]
)
def test_property_spent_from_transcripts_never_exceeds_the_budget(
    tmp_path_factory: pytest.TempPathFactory, crashes: list[CrashPoint]
) -> None:
    """Crashes at random points (setup, a round, the final evaluation), before or after dispatch, each resumed."""
    sent, ledger, _ = _run_with_crashes(tmp_path_factory.mktemp("prop"), rounds=3, crashes=crashes)
    spent = _transcript_epsilon(sent)
    assert any(m.kind == "evaluate" for m in sent)  # the run got to its evaluation
    for party in ledger.parties:
        assert spent.get(party, 0.0) <= BUDGET + 1e-9, (crashes, spent)
        assert ledger.spent(party) >= spent.get(party, 0.0) - 1e-9


def test_transcript_counter_treats_an_undeclared_release_as_infinite() -> None:
    """A resume that dropped [privacy] would send exact releases: the counter must see them as ε = ∞
    (moved from review R5; on the old counter they cost 0)."""
    plain_fit = _fit()  # a training request with no dp2/dp3: the party sends its exact update
    plain_describe = Message("run", 0, "coordinator", "bank_a", "describe")  # exact n_train and positive_rate
    assert _transcript_epsilon([plain_fit, plain_describe]).get("bank_a", 0.0) == math.inf
    evaluate = Message("run", 1, "coordinator", "bank_b", "evaluate", arrays={"params": np.zeros(4)})
    later_fit = Message("run", 2, "coordinator", "bank_b", "fit", meta={"dp3": {**DP3, "sum_sigma": 20.0}})
    assert _transcript_epsilon([evaluate, later_fit])["bank_b"] == math.inf  # a per-round evaluation under DP
    assert _transcript_epsilon([later_fit, evaluate])["bank_b"] < 1  # the end-of-run evaluation: declared
