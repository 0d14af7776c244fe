"""Review (issue 12, horizontal DP mods): distributed DP3 under SecAgg+ promises that the coordinator sees only
the noised sum of clipped updates (sensitivity 2·clip per record, charged write-ahead by the party's ledger).

R12-HOR-5: `dp3_mod` clips the handler's exact update with `clip_update`, which assumes a finite norm. With
plain local training (DP3 without DP2) the coordinator picks the learning rate; at lr = 1e308 the exact update
overflows to ±inf iff the party's mean gradient exceeds ~1.8 in some coordinate — a function of its rows. An
infinite norm makes the "clipped" update NaN (inf·0), the noise share keeps it NaN, and the SecAgg client's
encoder raises: the party answers the masked-input stage with an error (a dropout the coordinator records with
its reason) instead of a masked vector. Neighbouring datasets (the same rows, plus one row with a large
feature) give "masked vector" vs "error" with certainty: an uncharged, un-noised bit (ε = ∞) about one record.
Fix: in the DP3 mod (or `clip_update`) map a non-finite update to a data-independent finite one (e.g. zero,
with the indicator 'clipped') before noising, and refuse non-finite training settings up front.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.crypto.simulated_ca import simulated_consortium
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.secagg import SecAggServer
from sampan.privacy.secagg.params import SecAggParams
from sampan.privacy.wrappers import run_secagg_stages
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]
PARTIES = ["bank_0", "bank_1", "bank_2"]
MODEL = {"kind": "logistic", "n_features": 3}
Z = 1.0
DP3 = {"clip": 1.0, "mode": "distributed", "parties": 3, "sum_sigma": 2 * Z * 1.0, "count_sigma": None,
       "noise_multiplier": Z}


def _data(name: str, X: np.ndarray, y: np.ndarray) -> PartyData:
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(len(X))], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


def _round(victim_rows: tuple[np.ndarray, np.ndarray], label: str) -> dict[str, str]:
    """One distributed-DP3 SecAgg round (lr 1e308, one full-batch step); returns the server's dropouts."""
    rng = np.random.default_rng(5)
    verifier, identities = simulated_consortium(PARTIES)
    apps = {}
    for name in PARTIES:
        X, y = victim_rows if name == "bank_0" else (rng.normal(size=(60, 3)), (rng.random(60) < .5).astype(np.int8))
        apps[name] = HORIZONTAL.party_app(PartySetup(name, (_data(name, X, y), _data(name, X[:10], y[:10])),
                                                     {"workflow": "horizontal", "model": "logistic"},
                                                     identity=identities[name], verifier=verifier))
    server = SecAggServer(SecAggParams(), PARTIES, 4 + 3, label, np.random.default_rng(0), round_id=label)

    def stage(kind, requests):
        replies = {}
        for party, (arrays, meta) in requests.items():
            if kind == "fit":
                meta = {"model": MODEL, "seed": 1, "public_rows": 60,
                        "train": {"epochs": 1, "batch_size": 1000, "learning_rate": 1e308},
                        "dp3": {**DP3, "noise_parties": int(meta["noise_parties"])},
                        "secagg": {**meta, "total_rows": 180}}
                arrays = {"params": np.zeros(4), **arrays}
            reply = apps[party].handle(Message(label.split("/")[0], 1, "coordinator", party, kind, arrays=dict(arrays),
                                               meta=dict(meta)))
            replies[party] = None if reply.is_error else dict(reply.arrays)
        return replies
    try:
        run_secagg_stages(server, stage)
    except Exception:  # noqa: BLE001 - the round may abort; the dropouts are what the coordinator learnt
        pass
    return dict(server.dropouts)


def test_dp3_outcome_does_not_depend_on_one_record() -> None:
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(60, 3)), (rng.random(60) < .5).astype(np.int8)
    outlier = np.vstack([X, [[1e4, 0.0, 0.0]]]), np.r_[y, 0].astype(np.int8)  # D' = D + one record
    without = _round((X, y), "run-a/round-1/attempt-0/x")
    with_row = _round(outlier, "run-b/round-1/attempt-0/x")
    assert ("bank_0" in without) == ("bank_0" in with_row), (
        f"neighbouring datasets told apart: dropouts {without} vs {with_row}")


def test_dp3_release_of_a_non_finite_update_is_zero_counted_as_clipped() -> None:
    """Whatever made the exact update overflow (a scaler, a learning rate within bounds, a huge row), the DP3
    release is the clip of zero: finite, inside the clip ball, indicator 'clipped', in both modes."""
    from sampan.privacy.dp3 import clip_update, party_release

    for bad in (np.array([np.nan, 1.0, 0.0]), np.array([np.inf, -np.inf, 0.0])):
        clipped, within = clip_update(bad, 1.0)
        assert not within and np.all(clipped == 0.0)
        for mode in ("central", "distributed"):
            settings = {"clip": 1.0, "mode": mode, "parties": 3, "sum_sigma": 2.0, "count_sigma": 3.0}
            update, indicator = party_release(bad, settings)
            assert np.all(np.isfinite(update)) and np.isfinite(indicator)
    clipped, within = clip_update(np.array([1e300, 1e300]), 1.0)  # a finite update whose norm overflows
    assert not within and np.isclose(np.linalg.norm(clipped), 1.0)


@pytest.mark.parametrize("train", [{"epochs": 1, "batch_size": 10, "learning_rate": 1e308},
                                   {"epochs": 1, "batch_size": 10, "learning_rate": float("nan")},
                                   {"epochs": 10**9, "batch_size": 10, "learning_rate": 0.1}])
def test_absurd_training_settings_are_refused_before_any_row_is_touched(train) -> None:
    from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused

    with pytest.raises(PolicyRefused, match="training settings"):
        PartyPrivacyPolicy().admit_fit("bank_0", {"train": train, "dp3": {**DP3, "noise_parties": 3},
                                                  "secagg": {}}, 60)
