"""Finding 3 (no malice needed): a coordinator that crashes mid-round and resumes must not repeat a label.

Old code: labels were `run/round-r/attempt-a` and every per-attempt secret was derived from the party's
master and the label, so the resumed coordinator re-ran the round under the same labels with the same
keys, and a different dropout pattern in the re-run revealed the other share of a party (b in one run,
s in the other). Now the coordinator adds a per-process nonce to every label and each party draws its
own nonce per label, so neither labels nor keys repeat, and the parties keep answering the resumed run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _horizontal_run import run_workflow

from sampan.config import parse_config
from sampan.data import PartyData
from sampan.horizontal.simulation import PartySplit
from sampan.runtime.federation import build_party_apps
from sampan.runtime.progress import NullProgress
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

FEATURES = ["x1", "x2", "x3"]


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ np.array([1.0, -1.0, 0.5]))))).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


class Crash(RuntimeError):
    pass


class CrashInRound(NullProgress):
    """The coordinator process dies in `round`, after the parties sent their masked inputs."""

    def __init__(self, round_number: int) -> None:
        self.round_number, self.current = round_number, 0

    def round_started(self, round_number: int, n_parties: int) -> None:
        self.current = round_number

    def party_done(self, party: str) -> None:
        if self.current == self.round_number:
            raise Crash("coordinator killed")


def test_a_resumed_run_never_repeats_a_label_or_a_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    splits = {f"bank_{i}": PartySplit(_data(f"bank_{i}", 80, rng), _data(f"bank_{i}", 30, rng)) for i in range(4)}
    apps = build_party_apps(splits)  # the parties stay up while the coordinator restarts
    seen: list[tuple[str, str, bytes]] = []  # (party, label, advertised c key)
    for name, app in apps.items():
        inner = app.handle

        def handle(message: Message, inner: Any = inner, name: str = name) -> Message:
            reply = inner(message)
            if message.kind == "secagg_keys" and reply.kind != "error":
                seen.append((name, str(message.meta["label"]), reply.arrays["c_pk"].tobytes()))
            return reply

        app.handle = handle  # type: ignore[method-assign]
    config = parse_config({"run": {"name": "resume", "rounds": 3, "seed": 4},
                           "schema": {"id": "id", "label": "y", "features": FEATURES},
                           "parties": [{"name": "placeholder", "path": "unused.csv"}],
                           "training": {"learning_rate": 0.2, "batch_size": 16}, "secure_aggregation": {}})
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = store.create_run(name="resume", workflow="horizontal", seed=4, config=config.to_dict(), total_rounds=3)
    with pytest.raises(Crash):
        run_workflow(InProcessTransport(apps), store, run_id, config, 4, progress=CrashInRound(2))
    before = len(seen)
    outcome = run_workflow(InProcessTransport(apps), store, run_id, config, 4)  # resumes round 2
    assert outcome.rounds == 3
    labels = [label for _, label, _ in seen]
    assert len(seen) > before and all(label.startswith(f"{run_id}/") for label in labels)
    assert len(set((p, label) for p, label, _ in seen)) == len(seen)  # no party was asked twice under one label
    assert len({key for _, _, key in seen}) == len(seen)  # and no key was ever advertised twice
    round2 = sorted({label for label in labels if "/round-2/" in label})
    assert len(round2) == 2  # round 2 before the crash and after the resume: two different labels
    rounds = [e.detail for e in store.events(run_id) if e.kind == "secagg_round"]
    assert [r["round"] for r in rounds] == [1, 2, 3] and all(r["masked"] == 4 for r in rounds)
