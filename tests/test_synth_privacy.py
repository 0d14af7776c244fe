"""The synthesiser's privacy accounting: the ledger is exactly the composition of what was measured."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from sampan.privacy.ledger import DEFAULT_RDP_ORDERS, Budget, BudgetExceeded, Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.synth import SynthColumn, SynthConfig, SynthSchema, fit_federated, fit_synthesizer
from sampan.synth.budget import rho_for_budget
from sampan.transport.inprocess import InProcessTransport

SCHEMA = SynthSchema(
    columns=(
        SynthColumn("y", "categorical", ("0", "1")),
        SynthColumn("grade", "categorical", ("A", "B", "C", "D")),
        SynthColumn("amount", "numeric", bounds=(0, 100_000), integer=True),
        SynthColumn("ratio", "numeric", bounds=(0.0, 1.0)),
    ),
    label="y",
)


def _table(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    grade = rng.choice(np.array(["A", "B", "C", "D"], dtype=object), n)
    amount = np.round(rng.lognormal(9, 1, n))
    ratio = rng.random(n)
    y = np.where(rng.random(n) < 0.1 + 0.2 * (grade == "D") + 0.2 * ratio, "1", "0").astype(object)
    return {"y": y, "grade": grade, "amount": amount, "ratio": ratio}


def _independent_epsilon(releases: list[dict], delta: float) -> float:
    """Compose the receipt's releases with dp-accounting directly (no Sampan code involved)."""
    accountant = dp_accounting.rdp.RdpAccountant(list(DEFAULT_RDP_ORDERS))
    for r in releases:
        if r["kind"] == "gaussian":
            accountant.compose(dp_accounting.GaussianDpEvent(r["sigma"] / r["sensitivity"]))
        else:  # exponential mechanism: eps^2/8-zCDP
            accountant.compose(dp_accounting.ZCDpEvent(r["epsilon"] ** 2 / 8.0))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("epsilon", [0.5, 4.0])
def test_ledger_equals_composition_of_measurements(epsilon: float) -> None:
    config = SynthConfig(epsilon=epsilon, delta=1e-6)
    ledger = Ledger({"bank": Budget(epsilon, 1e-6)}, accountant="rdp")
    model = fit_synthesizer(_table(3000, 1), SCHEMA, config, party="bank", ledger=ledger, rng=seeded_generator(2))
    releases = model.receipt["parties"]["bank"]["releases"]
    # one ledger event per release, in order, with the release's noise multiplier
    assert len(ledger.events) == len(releases)
    for event, release in zip(ledger.events, releases, strict=False):
        expected = release["sigma"] if release["kind"] == "gaussian" else 2.0 / release["epsilon"]
        assert event.level == "DP1" and event.mechanism == "gaussian"
        assert event.noise_multiplier == pytest.approx(expected, rel=1e-12)
    independent = _independent_epsilon(releases, 1e-6)
    assert ledger.spent("bank") == pytest.approx(independent, rel=1e-9)
    assert model.receipt["parties"]["bank"]["epsilon_spent"] == pytest.approx(independent, rel=1e-9)
    # the plan spends the budget (to calibration tolerance) and never more
    assert epsilon * 0.999 <= ledger.spent("bank") <= epsilon
    # zCDP view: the rhos add up to the calibrated total
    assert sum(r["rho"] for r in releases) == pytest.approx(rho_for_budget(epsilon, 1e-6), rel=1e-9)
    # what was measured is stated: the label, the fine 1-way of each binned numeric column (DP quantiles),
    # (label, feature) 2-ways, the selection rounds and one (feature, parent) 2-way per tree edge
    notes = [r["note"] for r in releases]
    assert notes[0] == "1-way y"
    one_ways = [n for n in notes if n.startswith("1-way")]
    assert len(one_ways) == 3 and one_ways[1].startswith("1-way amount (DP quantiles: ")
    assert one_ways[2].startswith("1-way ratio (DP quantiles: ")
    assert sum(n.startswith("2-way (y, ") for n in notes) == 3
    rounds = 2 if model.info["tree"] else 0  # the tree is used when the noisy row count supports it
    assert model.info["tree"] is (epsilon > 1)
    assert sum(r["kind"] == "exponential" for r in releases) == rounds
    assert sum(n.startswith("2-way") and not n.startswith("2-way (y, ") for n in notes) == rounds


def test_rho_for_budget_matches_ledger_conversion() -> None:
    rho = rho_for_budget(1.0, 1e-5)
    orders = np.array(DEFAULT_RDP_ORDERS)
    eps = rdp.compute_epsilon(orders, rho * orders, 1e-5)[0]
    assert eps == pytest.approx(1.0, abs=1e-5) and eps <= 1.0
    # the standard zCDP conversion is looser: rho + 2 sqrt(rho log 1/delta) would allow less rho
    assert rho > (math.sqrt(math.log(1e5) + 1.0) - math.sqrt(math.log(1e5))) ** 2


def test_over_budget_ledger_refuses_before_any_release() -> None:
    ledger = Ledger({"bank": Budget(1.0, 1e-5)}, accountant="rdp")
    from sampan.privacy.ledger import PrivacyEvent

    ledger.record(PrivacyEvent("bank", "DP2", "gaussian", noise_multiplier=10.0, note="earlier training"))
    with pytest.raises(BudgetExceeded, match="bank"):
        fit_synthesizer(_table(500, 3), SCHEMA, SynthConfig(epsilon=1.0), party="bank", ledger=ledger)
    assert [e.level for e in ledger.events] == ["DP2"]  # nothing of the synthesiser was recorded


def test_pld_ledger_is_refused() -> None:
    ledger = Ledger({"bank": Budget(1.0, 1e-5)}, accountant="pld")
    with pytest.raises(ValueError, match="RDP ledger"):
        fit_synthesizer(_table(500, 3), SCHEMA, SynthConfig(epsilon=1.0), party="bank", ledger=ledger)


def test_federated_charges_each_bank_its_own_budget() -> None:
    tables = {f"bank{i}": _table(800 + 300 * i, 10 + i) for i in range(3)}
    model = fit_federated(tables, SCHEMA, SynthConfig(epsilon=2.0), transport=InProcessTransport,
                          rng=seeded_generator(5))
    parties = model.receipt["parties"]
    assert set(parties) == set(tables)
    for party in parties.values():
        assert 2.0 * 0.999 <= party["epsilon_spent"] <= 2.0
        assert party["epsilon_spent"] == pytest.approx(_independent_epsilon(party["releases"], 1e-5), rel=1e-9)
    assert model.receipt["federated"] is True
    assert model.receipt["reproducible_not_private"] is True


def test_unseeded_fit_is_marked_private() -> None:
    model = fit_synthesizer(_table(500, 4), SCHEMA, SynthConfig(epsilon=1.0))
    assert model.receipt["reproducible_not_private"] is False
    assert model.receipt["domain"]["source"] == "declared"
