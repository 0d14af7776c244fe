"""Federated synthesis through SecAgg+ with distributed noise: exact sums, no single release seen, central accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_synth_privacy import SCHEMA, _independent_epsilon, _table

from sampan.privacy.ledger import Budget, Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.synth import SynthConfig, fit_federated
from sampan.synth.aggregate import SecureSum
from sampan.synth.discretize import fine_grid
from sampan.synth.measure import PartyMeasurer
from sampan.transport.inprocess import InProcessTransport


def test_secure_sum_never_sums_releases_already_in_the_clear() -> None:
    """SecureSum works only over a channel to the parties (each masks its own release); what the coordinator
    receives in a whole fit is checked in test_synth_workflow (the transcript test)."""
    rng = np.random.default_rng(0)
    aggregator = SecureSum([f"bank{i}" for i in range(5)])
    with pytest.raises(TypeError, match="over a channel"):
        aggregator([rng.normal(500, 40, (2, 7)) for _ in range(5)])


def test_each_party_adds_its_share_of_the_noise_and_is_charged_the_full_sigma() -> None:
    table = _table(3000, 1)
    ledger = Ledger({"bank": Budget(1e6, 1e-5)}, accountant="rdp")
    measurer = PartyMeasurer("bank", table, SCHEMA, ledger, seeded_generator(2), noise_share=0.5)
    grid = fine_grid(SCHEMA.column("ratio"), 256)
    true = np.bincount(grid.encode(table["ratio"]), minlength=grid.n_cells)
    noise = np.concatenate([measurer.one_way("ratio", 20.0, grid) - true for _ in range(40)])
    assert noise.std() == pytest.approx(10.0, rel=0.05)  # 0.5 x sigma added here ...
    assert {r["sigma"] for r in measurer.releases} == {20.0}  # ... 1 x sigma charged: the sum's noise


def test_secure_federated_fit_spends_the_budget_and_says_how_it_aggregated() -> None:
    tables = {f"bank{i}": _table(900 + 200 * i, 20 + i) for i in range(4)}
    model = fit_federated(tables, SCHEMA, SynthConfig(epsilon=1.0), transport=InProcessTransport,
                          secure_aggregation=True, rng=seeded_generator(3))
    receipt = model.receipt
    assert "SecAgg+" in receipt["aggregation"]
    for party in receipt["parties"].values():
        assert 0.999 <= party["epsilon_spent"] <= 1.0
        assert party["epsilon_spent"] == pytest.approx(_independent_epsilon(party["releases"], 1e-5), rel=1e-9)
        gaussian = [r for r in party["releases"] if r["kind"] == "gaussian"]
        assert {r["noise_share"] for r in gaussian} == {1 / math.sqrt(4)}
    # A sanity check on the sum (the noise-share test above pins the noise itself).
    sigma = model.info["sigma"]["label"]
    assert abs(model.n_hat - sum(len(t["y"]) for t in tables.values())) < 6 * sigma


def test_secure_aggregation_needs_three_parties() -> None:
    for n in (1, 2):
        tables = {f"bank{i}": _table(500, i) for i in range(n)}
        with pytest.raises(ValueError, match="at least 3 parties"):
            fit_federated(tables, SCHEMA, SynthConfig(epsilon=1.0), transport=InProcessTransport,
                          secure_aggregation=True)
