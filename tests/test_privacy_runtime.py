"""DP in a federated run: budget never exceeded, clean stop, noised updates only, ledger survives resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _crash_hooks import Crash, CrashAfterRound, capture_replies
from _horizontal_run import run_workflow
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sampan.config import parse_config
from sampan.horizontal.simulation import load_splits
from sampan.privacy import Ledger
from sampan.runtime.federation import build_inprocess_federation, build_party_apps
from sampan.runtime.runner import resume_run, start_run
from sampan.runtime.store import Store
from sampan.wire import Message

BOUNDS = {"log10_annual_revenue_hkd": [5, 9], "years_in_business": [0, 50], "employees": [0, 100],
          "log10_loan_amount_hkd": [4, 8], "loan_term_months": [0, 120], "debt_to_revenue": [0, 3],
          "past_delinquencies": [0, 10], "*": [0, 1]}


def _config(tmp_path: Path, privacy: dict, rounds: int = 4, **training) -> dict:
    return {"run": {"name": "dp", "rounds": rounds, "seed": 3, "report_dir": str(tmp_path / "reports")},
            "training": {"learning_rate": 0.1, **training},
            "source": {"kind": "consortium", "n_smes": 3000},
            # standardisation under DP needs DP1 bounds (config); only the DP1 test below standardises
            "data": {"standardize": "dp1" in privacy},
            "privacy": privacy}


def _ledger(store: Store, run_id: str) -> Ledger:
    return Ledger.from_json(store.latest_checkpoint(run_id).meta["ledger"])


def test_auto_noise_spends_the_budget_without_exceeding_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    import sampan.privacy.dpsgd
    import sampan.privacy.mechanisms
    from sampan.privacy.randomness import seeded_generator

    # The AUC floor below is a property of one seeded run, not a bound over all noise draws: over CSPRNG draws
    # this small run's binned AUC spreads 0.52-0.55 (40 draws: mean 0.539, sd 0.0086, min 0.523), about 1 run
    # in 80 under 0.52 by a normal fit. The seeded draw (0.549) sits near the median; the budget assertions
    # do not depend on the noise.
    seeds = itertools.count(21)
    for module in (sampan.privacy.mechanisms, sampan.privacy.dpsgd):
        monkeypatch.setattr(module, "secure_generator", lambda: seeded_generator(next(seeds)))
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    finished = start_run(parse_config(_config(tmp_path, {"epsilon": 2.0, "dp2": {"max_grad_norm": 1.0}})), store)
    ledger = _ledger(store, finished.outcome.run_id)
    spent = {p: ledger.spent(p) for p in ledger.parties}
    assert all(e <= 2.0 for e in spent.values()), spent
    assert min(spent.values()) > 1.8  # per-party calibration: every bank uses its budget, none wastes it
    noise = store.latest_checkpoint(finished.outcome.run_id).meta["noise"]
    per_party = {k: v for k, v in noise.items() if k.startswith("DP2:")}
    assert len(per_party) == 3 and max(per_party.values()) == pytest.approx(noise["DP2"])
    assert min(per_party.values()) < noise["DP2"]  # larger banks need less noise for the same budget
    assert finished.outcome.rounds == 4 and finished.outcome.budget_stop is None
    # unstandardised features and the charged row-count release cost accuracy at this small budget; under DP the
    # parties bin scores into 100 bins (review R8-2), which merge this weak model's scores: binned AUC ~0.54
    # where the exact holdout AUC is ~0.60 (2000 bins read ~0.595)
    assert finished.outcome.final_metrics["auc"] > 0.52
    run = store.get_run(finished.outcome.run_id)
    assert run.info["privacy"]["parties"].keys() == spent.keys()


def test_too_little_noise_stops_before_the_first_step(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    config = _config(tmp_path, {"epsilon": 0.6, "dp2": {"noise_multiplier": 0.7}})
    finished = start_run(parse_config(config), store)
    assert finished.outcome.rounds == 0
    assert "would spend" in finished.outcome.budget_stop and "DP2" in finished.outcome.budget_stop
    assert "party 'bank_" in finished.outcome.budget_stop
    ledger = _ledger(store, finished.outcome.run_id)
    assert all(ledger.spent(p, "DP2") == 0 for p in ledger.parties)  # only the setup's DP1 row count
    assert any(e.kind == "budget_stop" for e in store.events(finished.outcome.run_id))


def test_budget_runs_out_mid_run_and_the_run_stops_cleanly(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    config = _config(tmp_path, {"epsilon": 1.0, "dp3": {"noise_multiplier": 6.0, "clip": 0.5}}, rounds=30)
    finished = start_run(parse_config(config), store)
    assert 0 < finished.outcome.rounds < 30 and "DP3" in finished.outcome.budget_stop
    ledger = _ledger(store, finished.outcome.run_id)
    assert all(ledger.spent(p) <= 1.0 for p in ledger.parties)
    assert store.get_run(finished.outcome.run_id).status == "completed"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(epsilon=st.floats(0.2, 4.0), z2=st.one_of(st.just("auto"), st.floats(0.6, 3.0)),
       z3=st.one_of(st.none(), st.floats(2.0, 20.0)), rounds=st.integers(1, 6))
def test_property_budget_is_never_exceeded(tmp_path: Path, epsilon: float, z2, z3, rounds: int) -> None:
    privacy = {"epsilon": epsilon, "dp2": {"noise_multiplier": z2}}
    if z3 is not None:
        privacy["dp3"] = {"noise_multiplier": z3, "clip": 1.0}
    store = Store.open(f"sqlite:///{tmp_path / f'p{rounds}-{epsilon:.3f}.db'}")
    try:
        finished = start_run(parse_config(_config(tmp_path, privacy, rounds=rounds)), store)
    except ValueError as exc:  # 'auto' that cannot fit at all is refused before training
        assert "does not fit the budget" in str(exc)
        return
    ledger = _ledger(store, finished.outcome.run_id)
    for party in ledger.parties:
        assert ledger.spent(party) <= epsilon + 1e-9


@pytest.mark.parametrize("privacy", [
    {"epsilon": 2.0, "dp2": {"noise_multiplier": "auto"}},
    # distributed DP3 needs secure aggregation (config); the party's own noising is replayed below
    {"epsilon": 2.0, "dp3": {"noise_multiplier": "auto", "clip": 0.5, "mode": "central"}},
], ids=["dp2", "dp3"])
def test_no_update_leaves_a_party_un_noised(tmp_path: Path, privacy: dict) -> None:
    """Capture what the transport carries: the same request twice must give different (noised) updates."""
    config = parse_config(_config(tmp_path, privacy))
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    transport, _ = build_inprocess_federation(config, 3)
    captured = capture_replies(transport)
    run_id = store.create_run(name="dp", workflow="horizontal", seed=3, config=config.to_dict(), total_rounds=2)
    run_workflow(transport, store, run_id, config, 3)
    fits = [m for m in captured if m.kind == "fit_result"]
    assert fits and all(not set(m.meta) - {"dp3_indicator"} for m in fits)  # the update and nothing else
    assert all(np.linalg.norm(m.arrays["update"]) <= 0.5 + 1e-9 for m in fits) if "dp3" in privacy else True
    # (central DP3: clipped before it left the party; DP2: a DP-SGD output)
    # replay one party's last fit request twice: a noised protocol never gives the same update twice
    apps = build_party_apps(load_splits(config, 3))
    party = fits[-1].sender
    request = Message(
        run_id,
        9,
        "coordinator",
        party,
        "fit",
        arrays={"params": np.zeros(fits[-1].arrays["update"].size)},
        meta={
            "model": {"kind": "logistic", "n_features": fits[-1].arrays["update"].size - 1},
            "train": {"epochs": 1, "batch_size": 64, "learning_rate": 0.1},
            "seed": 1,
            "public_rows": 500,
            **({"dp2": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}} if "dp2" in privacy else {}),
            **(
                {"dp3": {"clip": 0.5, "mode": "distributed", "parties": 3, "sum_sigma": 2.5, "count_sigma": None}}
                if "dp3" in privacy
                else {}
            ),
        },
    )
    first, second = apps[party].handle(request), apps[party].handle(request)
    if "dp3" in privacy:  # distributed DP3 in clear would carry only the party's 1/sqrt(m) share: refused
        assert first.is_error and second.is_error and "without secure aggregation" in str(first.meta)
    else:
        assert not np.array_equal(first.arrays["update"], second.arrays["update"])
    # control in another run: within the DP run a fit without its DP level is refused (review R8-4)
    plain = Message(
        **{
            **request.__dict__,
            "run_id": f"{run_id}-plain",
            "meta": {k: v for k, v in request.meta.items() if k not in ("dp2", "dp3")},
        }
    )
    np.testing.assert_array_equal(
        apps[party].handle(plain).arrays["update"], apps[party].handle(plain).arrays["update"]
    )


def test_resumed_run_continues_from_the_spent_budget(tmp_path: Path) -> None:
    """A crash after round 2 was saved: the resumed run charges rounds 3 and 4 once each, on top."""
    config = parse_config(_config(tmp_path, {"epsilon": 2.0, "dp2": {"noise_multiplier": "auto"}}, rounds=4))
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = store.create_run(name="dp", workflow="horizontal", seed=3, config=config.to_dict(), total_rounds=4)
    transport, _ = build_inprocess_federation(config, 3)
    with pytest.raises(Crash):
        run_workflow(transport, store, run_id, config, 3, CrashAfterRound(2))
    at_crash = _ledger(store, run_id)
    assert all(at_crash.spent(p) > 0 for p in at_crash.parties)
    resume_run(store, run_id)
    resumed = _ledger(store, run_id)
    per_round = [e for e in at_crash.events if e.step == 1]
    assert resumed.events[: len(at_crash.events)] == at_crash.events  # nothing forgotten
    assert len(resumed.events) == len(at_crash.events) + 2 * len(per_round)  # rounds 3 and 4, once each
    for party in resumed.parties:
        assert at_crash.spent(party) < resumed.spent(party) <= 2.0


def test_noise_schedule_is_fixed_in_advance_and_accounted_per_round(tmp_path: Path) -> None:
    """A decaying schedule: later rounds use less noise, every round is charged at its own noise."""
    from sampan.privacy.calibration import schedule_factor

    assert [schedule_factor([2.0, 1.0], r, 4) for r in (1, 2, 3, 4)] == [2.0, 2.0, 1.0, 1.0]
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    privacy = {"epsilon": 2.0, "dp3": {"noise_multiplier": "auto", "clip": 0.5, "schedule": [1.5, 1.0]}}
    finished = start_run(parse_config(_config(tmp_path, privacy, rounds=4)), store)
    ledger = _ledger(store, finished.outcome.run_id)
    zs = [e.noise_multiplier for e in ledger.events if e.party == ledger.parties[0] and e.level == "DP3"]
    assert len(zs) == 4 and zs[0] == zs[1] == pytest.approx(1.5 * zs[2]) and zs[2] == zs[3]
    assert all(0.9 * 2.0 < ledger.spent(p) <= 2.0 for p in ledger.parties)


def test_dp1_noises_preprocessing_statistics_and_charges_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import itertools

    import sampan.privacy.dpsgd
    import sampan.privacy.mechanisms
    from sampan.horizontal.party import dp1_moments
    from sampan.privacy.randomness import seeded_generator

    X = np.random.default_rng(0).uniform(-1, 3, size=(5000, 3))
    settings = {"noise_multiplier": 2.0, "bounds": [[-1, 3], [-1, 3], [0, 1]]}
    # 1,000 draws: the standard deviation is then known to ~2%, so a 12% band is > 5 standard errors.
    draws = np.array([np.concatenate([[n], s, q]) for n, s, q in (dp1_moments(X, settings) for _ in range(1000))])
    z = (np.clip(X, [-1, -1, 0], [3, 3, 1]) - np.array([1, 1, 0.5])) / np.array([2, 2, 0.5])
    exact = np.concatenate([[5000], z.sum(0), (z**2).sum(0)])
    np.testing.assert_allclose(draws.mean(0), exact, rtol=0.05, atol=2.0)
    np.testing.assert_allclose(draws.std(0), 2.0 * np.sqrt(7), rtol=0.12)  # z·Δ on every coordinate

    bounds = {
        "log10_annual_revenue_hkd": [5, 9],
        "years_in_business": [0, 50],
        "employees": [0, 100],
        "log10_loan_amount_hkd": [4, 8],
        "loan_term_months": [0, 120],
        "debt_to_revenue": [0, 3],
        "past_delinquencies": [0, 10],
        "*": [0, 1],
    }
    privacy = {"epsilon": 4.0, "dp1": {"noise_multiplier": 10.0, "bounds": bounds}, "dp2": {"noise_multiplier": "auto"}}
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    config = _config(tmp_path, privacy, rounds=4)
    config["source"]["n_smes"] = 12000
    # The AUC below is a property of this seeded run, not a bound over all noise draws (one in ~25 draws
    # of this small run lands under 0.65), so the run's noise is seeded too.
    seeds = itertools.count(1)
    for module in (sampan.privacy.mechanisms, sampan.privacy.dpsgd):
        monkeypatch.setattr(module, "secure_generator", lambda: seeded_generator(next(seeds)))
    finished = start_run(parse_config(config), store)
    ledger = _ledger(store, finished.outcome.run_id)
    for party in ledger.parties:
        assert ledger.spent(party, "DP1") > 0 and ledger.spent(party) <= 4.0
    assert finished.outcome.final_metrics["auc"] > 0.65, finished.outcome.final_metrics
    with pytest.raises(Exception, match="no range for feature"):
        start_run(
            parse_config(
                _config(
                    tmp_path,
                    {"epsilon": 2.0, "dp1": {"noise_multiplier": 4.0, "bounds": {"years_in_business": [0, 50]}}},
                )
            ),
            store,
        )
