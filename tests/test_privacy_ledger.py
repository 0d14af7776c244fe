"""Privacy ledger: accounting matches dp-accounting, budgets stop a run before overspending, resume is exact."""

from __future__ import annotations

import json
import math
import time

import dp_accounting
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampan.privacy.ledger import (
    LEVELS,
    UNIT_OF_PRIVACY,
    Budget,
    BudgetExceeded,
    Ledger,
    PrivacyEvent,
    UnknownPartyError,
)

DELTA = 1e-5
# Abadi et al.'s MNIST setting as in TF Privacy's tutorial: batch 256 of 60000, sigma 1.1, 60 epochs.
MNIST_Q = 256 / 60000
MNIST_STEPS = math.ceil(60 * 60000 / 256)  # 14063


def dpsgd(party: str = "a", *, z: float = 1.1, q: float = MNIST_Q, steps: int = MNIST_STEPS, step: int | None = None):
    return PrivacyEvent(
        party, "DP2", "subsampled_gaussian", noise_multiplier=z, sampling_rate=q, count=steps, step=step
    )


def big(epsilon: float = 1e6) -> Budget:
    return Budget(epsilon, DELTA)


# -- known values -------------------------------------------------------------------------------------------


def test_dpsgd_mnist_matches_dp_accounting_rdp_and_known_ballpark() -> None:
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(MNIST_Q, dp_accounting.GaussianDpEvent(1.1)), MNIST_STEPS
        )
    )
    reference = accountant.get_epsilon(DELTA)

    ledger = Ledger({"a": big()})
    ledger.record(dpsgd())
    assert ledger.spent("a") == pytest.approx(reference, rel=1e-9)
    # dp-accounting's improved RDP->(eps, delta) conversion gives ~2.60 here ...
    assert 2.5 < ledger.spent("a") < 2.7
    # ... and the classic conversion (Mironov 2017) on the same RDP curve gives the ~3.0 that TF Privacy
    # reports for this setting (Abadi et al.'s moments accountant, looser still, reported ~8 for similar runs).
    orders = np.asarray(accountant.orders)
    classic = float(np.min(accountant.rdp + math.log(1 / DELTA) / (orders - 1)))
    assert 2.9 < classic < 3.1
    assert ledger.spent("a") < classic


def test_incremental_rounds_equal_one_composed_event() -> None:
    """Recording DP-SGD round by round (count = steps per round) gives the same epsilon as one event."""
    per_round = [250] * 56 + [MNIST_STEPS - 250 * 56]
    ledger = Ledger({"a": big()})
    for round_, steps in enumerate(per_round):
        ledger.record(dpsgd(steps=steps, step=round_))
    single = Ledger({"a": big()})
    single.record(dpsgd())
    assert ledger.spent("a") == pytest.approx(single.spent("a"), rel=1e-9)


def test_to_dp_event_shapes() -> None:
    assert dpsgd(steps=7).to_dp_event() == dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(MNIST_Q, dp_accounting.GaussianDpEvent(1.1)), 7
    )
    assert PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=2.0).to_dp_event() == (
        dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(2.0), 1)
    )
    assert PrivacyEvent("a", "DP1", "laplace", epsilon=0.5, count=3).to_dp_event() == (
        dp_accounting.SelfComposedDpEvent(dp_accounting.LaplaceDpEvent(2.0), 3)
    )


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_mixed_events_match_dp_accounting_accountant(accountant: str) -> None:
    """The wrapper composes exactly what dp-accounting's own accountant composes (Gaussian kinds)."""
    events = [
        PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=3.0, count=4),
        dpsgd(z=1.0, q=0.01, steps=300),
        PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=5.0),
    ]
    ledger = Ledger({"a": big()}, accountant)
    reference = (
        dp_accounting.rdp.RdpAccountant()
        if accountant == "rdp"
        else dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    )
    for event in events:
        ledger.record(event)
        reference.compose(event.to_dp_event())
    assert ledger.spent("a") == pytest.approx(reference.get_epsilon(DELTA), rel=1e-6)


def test_single_gaussian_is_monotone_and_upper_bounds_the_analytic_gaussian() -> None:
    previous = math.inf
    for z in [0.5, 0.8, 1.0, 2.0, 4.0, 8.0, 16.0]:
        ledger = Ledger({"a": big()})
        ledger.record(PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=z))
        eps = ledger.spent("a")
        exact = dp_accounting.get_epsilon_gaussian(z, DELTA)  # Balle & Wang analytic Gaussian: tight
        assert exact <= eps <= 1.15 * exact, (z, eps, exact)
        assert eps < previous
        previous = eps


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_laplace_composition_never_exceeds_basic_composition(accountant: str) -> None:
    for eps0, k in [(0.5, 1), (0.5, 2), (1.0, 5), (2.0, 3)]:
        ledger = Ledger({"a": big()}, accountant)
        ledger.record(PrivacyEvent("a", "DP1", "laplace", epsilon=eps0, count=k))
        assert ledger.spent("a") <= k * eps0 + 1e-12
        assert ledger.spent("a") >= 0.99 * k * eps0  # few releases: basic composition is about tight
    # Many small releases: RDP/PLD beat k * eps0 by a wide margin (advanced-composition regime).
    ledger = Ledger({"a": big()}, accountant)
    for _ in range(200):
        ledger.record(PrivacyEvent("a", "DP1", "laplace", epsilon=0.1))
    assert ledger.spent("a") < 0.4 * 200 * 0.1


def test_rdp_and_pld_agree_on_dpsgd_and_pld_is_tighter() -> None:
    rdp, pld = Ledger({"a": big()}, "rdp"), Ledger({"a": big()}, "pld")
    for ledger in (rdp, pld):
        ledger.record(dpsgd())
        ledger.record(PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=20.0, count=30))
    assert pld.spent("a") <= rdp.spent("a") + 1e-3
    assert pld.spent("a") == pytest.approx(rdp.spent("a"), rel=0.15)


# -- budget stop --------------------------------------------------------------------------------------------


def test_budget_stop_names_party_level_and_numbers_and_records_nothing() -> None:
    ledger = Ledger({"bank_a": Budget(1.0, DELTA), "bank_b": Budget(2.0, DELTA)})
    ledger.record(
        PrivacyEvent("bank_b", "DP2", "subsampled_gaussian", noise_multiplier=1.0, sampling_rate=0.01, count=100)
    )
    b_before = ledger.spent("bank_b")
    ledger.record(PrivacyEvent("bank_a", "DP1", "laplace", epsilon=0.1, note="feature means"))
    ledger.record(PrivacyEvent("bank_a", "DP3", "gaussian", noise_multiplier=30.0, step=0))

    step = 0
    with pytest.raises(BudgetExceeded) as info:
        for step in range(1, 10_000):
            before = ledger.spent("bank_a")
            ledger.record(dpsgd("bank_a", z=1.0, q=0.01, steps=50, step=step))
            assert ledger.spent("bank_a") <= 1.0
    err = info.value
    assert (err.party, err.level, err.step) == ("bank_a", "DP2", step)
    assert err.budget == Budget(1.0, DELTA)
    assert err.would_spend > 1.0 and err.spent == before
    assert set(err.by_level) == {"DP1", "DP2", "DP3"}
    message = str(err)
    for fragment in ("'bank_a'", "DP2", f"step {step}", "DP1 0.10", "DP3 ", "budget ε=1.00", "δ=1e-5", "stops"):
        assert fragment in message, (fragment, message)
    assert f"ε={err.would_spend:.2f}" in message
    # The failing event was not recorded; the other party is untouched.
    assert ledger.spent("bank_a") == before
    assert ledger.summary()["parties"]["bank_a"]["compositions_by_level"]["DP2"] == 50 * (step - 1)
    assert len(ledger.events) == 2 + 1 + (step - 1)
    assert ledger.spent("bank_b") == b_before
    ledger.record(PrivacyEvent("bank_b", "DP3", "gaussian", noise_multiplier=10.0))
    assert ledger.spent("bank_b") > b_before


def test_message_shows_enough_digits_to_tell_numbers_apart() -> None:
    ledger = Ledger({"a": Budget(1.0, DELTA)})
    ledger.record(PrivacyEvent("a", "DP1", "laplace", epsilon=0.999))
    with pytest.raises(BudgetExceeded, match=r"ε=1\.003 \(DP1 1\.00\) > budget ε=1\.000 .* the next level DP1 event"):
        ledger.record(PrivacyEvent("a", "DP1", "laplace", epsilon=0.004))


def test_check_records_nothing_and_names_the_crossing_event() -> None:
    ledger = Ledger({"a": Budget(1.0, DELTA), "b": Budget(1.0, DELTA)})
    ledger.record(PrivacyEvent("a", "DP1", "laplace", epsilon=0.5))
    fine = [PrivacyEvent("b", "DP1", "laplace", epsilon=0.9), PrivacyEvent("a", "DP1", "laplace", epsilon=0.4)]
    ledger.check(fine)
    assert (ledger.spent("a"), ledger.spent("b"), len(ledger.events)) == (0.5, 0.0, 1)

    round_ = [
        PrivacyEvent("b", "DP3", "laplace", epsilon=0.2, step=7),
        PrivacyEvent("a", "DP2", "laplace", epsilon=0.3, step=7),  # a at 0.8: fine
        PrivacyEvent("a", "DP3", "laplace", epsilon=0.3, step=7),  # a at 1.1: crosses here
        PrivacyEvent("b", "DP3", "laplace", epsilon=0.9, step=7),  # b at 1.1: crosses later in the round
    ]
    with pytest.raises(BudgetExceeded) as info:
        ledger.check(round_)
    assert (info.value.party, info.value.level, info.value.step) == ("a", "DP3", 7)
    assert info.value.would_spend == pytest.approx(1.1)
    assert (ledger.spent("a"), ledger.spent("b"), len(ledger.events)) == (0.5, 0.0, 1)
    with pytest.raises(BudgetExceeded) as info:
        ledger.check(round_[:2] + round_[3:])
    assert info.value.party == "b"


def test_unknown_party_is_an_error_naming_it() -> None:
    ledger = Ledger({"a": big()})
    event = PrivacyEvent("mallory", "DP1", "laplace", epsilon=1.0)
    for call in (lambda: ledger.record(event), lambda: ledger.check([event]), lambda: ledger.spent("mallory")):
        with pytest.raises(UnknownPartyError, match="mallory"):
            call()
    assert ledger.events == ()


# -- persistence --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_json_round_trip_keeps_spent_budget_exactly(accountant: str) -> None:
    ledger = Ledger({"a": Budget(3.0, DELTA), "b": Budget(5.0, 1e-6), "idle": Budget(1.0, DELTA)}, accountant)
    ledger.record(PrivacyEvent("a", "DP1", "laplace", epsilon=0.2, note="feature means"))
    ledger.record(PrivacyEvent("b", "DP1", "gaussian", noise_multiplier=8.0))
    for round_ in range(5):
        for party in ("a", "b"):
            ledger.record(dpsgd(party, z=1.2, q=0.02, steps=40, step=round_))
            ledger.record(PrivacyEvent(party, "DP3", "gaussian", noise_multiplier=15.0, step=round_))

    text = ledger.to_json()
    assert json.loads(text)["events"][0]["note"] == "feature means"
    restored = Ledger.from_json(text)
    assert restored.summary() == ledger.summary()
    assert restored.events == ledger.events
    for party in ledger.parties:
        assert restored.spent(party) == ledger.spent(party)
        assert restored.remaining(party) == ledger.remaining(party)
        for level in LEVELS:
            assert restored.spent(party, level) == ledger.spent(party, level)
    # A resumed run continues from the spent budget, not from zero, and stops where the original would.
    nxt = dpsgd("a", z=1.2, q=0.02, steps=40, step=5)
    while True:
        try:
            ledger.record(nxt)
        except BudgetExceeded as original:
            with pytest.raises(BudgetExceeded) as resumed:
                restored.record(nxt)
            assert resumed.value.would_spend == original.would_spend
            break
        restored.record(nxt)
        assert restored.spent("a") == ledger.spent("a")
    assert Ledger.from_json(restored.to_json()).spent("a") == ledger.spent("a")


def test_from_json_rejects_other_documents() -> None:
    with pytest.raises(ValueError, match="ledger"):
        Ledger.from_json(json.dumps({"format": "something else"}))
    text = Ledger({"a": big()}).to_json()
    with pytest.raises(ValueError, match="version"):
        Ledger.from_json(text.replace('"version": 1', '"version": 99'))


def test_event_and_budget_dict_round_trip_and_validation() -> None:
    event = dpsgd(step=3)
    assert PrivacyEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event
    assert Budget.from_dict(Budget(2, DELTA).to_dict()) == Budget(2.0, DELTA)
    with pytest.raises(ValueError, match="unknown"):
        PrivacyEvent.from_dict({**event.to_dict(), "sigma": 1.0})
    bad_budgets = [(0.0, DELTA), (-1.0, DELTA), (math.inf, DELTA), (1.0, 0.0), (1.0, 1.0), (1.0, math.nan)]
    for eps, delta in bad_budgets:
        with pytest.raises(ValueError):
            Budget(eps, delta)
    bad_events = [
        dict(party="", level="DP1", mechanism="laplace", epsilon=1.0),
        dict(party="a", level="DP4", mechanism="laplace", epsilon=1.0),
        dict(party="a", level="DP1", mechanism="exponential", epsilon=1.0),
        dict(party="a", level="DP1", mechanism="laplace"),
        dict(party="a", level="DP1", mechanism="laplace", epsilon=1.0, noise_multiplier=1.0),
        dict(party="a", level="DP1", mechanism="gaussian"),
        dict(party="a", level="DP1", mechanism="gaussian", noise_multiplier=0.0),
        dict(party="a", level="DP1", mechanism="gaussian", noise_multiplier=1.0, sampling_rate=0.5),
        dict(party="a", level="DP2", mechanism="subsampled_gaussian", noise_multiplier=1.0, sampling_rate=1.5),
        dict(party="a", level="DP2", mechanism="subsampled_gaussian", noise_multiplier=1.0, count=0),
        dict(party="a", level="DP2", mechanism="subsampled_gaussian", noise_multiplier=1.0, step=-1),
    ]
    for kwargs in bad_events:
        with pytest.raises((ValueError, TypeError)):
            PrivacyEvent(**kwargs)


def test_summary_is_json_and_levels_compose_sub_additively() -> None:
    ledger = Ledger({"a": big(10.0)})
    ledger.record(PrivacyEvent("a", "DP1", "gaussian", noise_multiplier=3.0))
    ledger.record(dpsgd(z=1.0, q=0.01, steps=500))
    ledger.record(PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=5.0, count=20))
    summary = json.loads(json.dumps(ledger.summary(), allow_nan=False))
    assert summary["unit_of_privacy"] == UNIT_OF_PRIVACY
    party = summary["parties"]["a"]
    assert party["accountant"] == "rdp" and party["unit_of_privacy"] == UNIT_OF_PRIVACY
    assert party["budget"] == {"epsilon": 10.0, "delta": DELTA}
    assert party["epsilon_spent"] == ledger.spent("a")
    assert party["events_by_level"] == {"DP1": 1, "DP2": 1, "DP3": 1}
    assert party["compositions_by_level"] == {"DP1": 1, "DP2": 500, "DP3": 20}
    by_level = party["epsilon_by_level"]
    assert by_level == {level: ledger.spent("a", level) for level in LEVELS}
    assert max(by_level.values()) < party["epsilon_spent"] < sum(by_level.values())
    assert party["epsilon_remaining"] == pytest.approx(10.0 - party["epsilon_spent"])


# -- monotonicity -------------------------------------------------------------------------------------------

_events = st.builds(
    PrivacyEvent,
    party=st.sampled_from(["a", "b"]),
    level=st.sampled_from(LEVELS),
    mechanism=st.just("subsampled_gaussian"),
    noise_multiplier=st.sampled_from([0.8, 1.1, 4.0]),
    sampling_rate=st.sampled_from([0.01, 0.05, 1.0]),
    count=st.integers(1, 200),
) | st.builds(
    PrivacyEvent,
    party=st.sampled_from(["a", "b"]),
    level=st.sampled_from(LEVELS),
    mechanism=st.just("laplace"),
    epsilon=st.sampled_from([0.05, 0.3, 1.0]),
    count=st.integers(1, 5),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_events, min_size=1, max_size=15))
def test_spent_never_decreases_rdp(events: list[PrivacyEvent]) -> None:
    ledger = Ledger({"a": big(), "b": big()})
    previous = {(p, lvl): 0.0 for p in "ab" for lvl in (None, *LEVELS)}
    for event in events:
        ledger.record(event)
        for (party, level), before in previous.items():
            now = ledger.spent(party, level)
            assert now >= before
            previous[(party, level)] = now


def test_spent_never_decreases_pld() -> None:
    ledger = Ledger({"a": big()}, "pld")
    cycle = [
        PrivacyEvent("a", "DP1", "laplace", epsilon=0.3),
        dpsgd(z=1.1, q=0.02, steps=30),
        PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=10.0),
    ]
    previous = 0.0
    for i in range(30):
        ledger.record(cycle[i % 3])
        assert ledger.spent("a") >= previous
        previous = ledger.spent("a")


# -- speed --------------------------------------------------------------------------------------------------


def test_check_is_fast_with_200_accumulated_events() -> None:
    """check() runs every round; with 200 events on the books it must stay well under 50 ms (RDP)."""
    ledger = Ledger({"a": big(), "b": big()})
    for round_ in range(100):
        ledger.record(dpsgd("a", z=1.1, q=0.01, steps=20, step=round_))
        ledger.record(PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=10.0 + round_ % 7, step=round_))
    assert len(ledger.events) == 200
    nxt = [
        dpsgd("a", z=1.1, q=0.01, steps=20, step=100),
        PrivacyEvent("a", "DP3", "gaussian", noise_multiplier=12.5, step=100),  # a new noise level
        PrivacyEvent("b", "DP1", "laplace", epsilon=0.1, step=100),
    ]
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        ledger.check(nxt)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.05, timings
