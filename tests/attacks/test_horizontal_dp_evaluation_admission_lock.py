"""Under DP a party evaluates ONE model per run (`sampan.privacy.mods`, `_admit_evaluate`): admission checks the
run's recorded model, then records it. Concurrent requests (a deployed agent answers on several threads) must
not both pass the check before either records: admission runs under the party state's lock."""

from __future__ import annotations

import threading

import numpy as np

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.mods import PartyDPState
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]


def _data(n: int, rng: np.random.Generator) -> PartyData:
    return PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object),
                     X=rng.normal(size=(n, 3)), y=(rng.random(n) < .5).astype(np.int8), feature_names=FEATURES)


class _SlowRecord(dict):
    """The run -> model record, slow to read: widens the window between admission's check and its record."""

    def get(self, key, default=None):  # type: ignore[override]
        value = super().get(key, default)
        threading.Event().wait(0.05)
        return value


def _state(app) -> PartyDPState:
    for mod in app.mods:
        for cell in mod.__closure__ or ():
            if isinstance(cell.cell_contents, PartyDPState):
                return cell.cell_contents
    raise AssertionError("no PartyDPState among the app's mods")


def test_concurrent_evaluations_of_different_models_admit_one() -> None:
    rng = np.random.default_rng(0)
    app = HORIZONTAL.party_app(PartySetup("bank", (_data(60, rng), _data(30, rng)),
                                          {"workflow": "horizontal", "model": "logistic"},
                                          policy=PartyPrivacyPolicy(required_levels=frozenset({"DP"}))))
    _state(app).evaluated = _SlowRecord()
    start, replies = threading.Barrier(6), []

    def evaluate(i: int) -> None:
        start.wait()
        replies.append(app.handle(Message("dp-run", 1, "coordinator", "bank", "evaluate",
                                          arrays={"params": np.r_[float(i), 0, 0, 0]},
                                          meta={"model": {"kind": "logistic", "n_features": 3}})))
    threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = [r for r in replies if not r.is_error]
    assert len(replies) == 6 and len(answered) == 1, [r.meta for r in replies]
