"""Neighbouring-dataset differential test for horizontal GBDT under `[privacy.gbdt]`.

The same run on D and on D plus one training row (an extreme, mislabelled row at `bank_0`), with every noise
source fixed (`secure_generator` replaced by one seeded stream, restarted for each run) and the run seed fixed.
Every request and reply is captured at the transport and looked up in the protocol's catalogue
(`sampan.wire.gbdt_catalogue`, what the receipt prints):

- a field the catalogue does not declare fails the test, changed or not;
- a field that changed must not be public or visible in clear; declared charged, the bank's own ledger must
  hold a charge of that mechanism for every such release it sent; declared derived, its mechanisms must have
  been charged (post-processing of charged outputs: splits, leaf values, node ids of later levels, evaluation).

Holdout rows are outside the DP unit: the added row is a training row.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sampan.privacy.mechanisms
from sampan.config import parse_config
from sampan.core.capability import PartySetup
from sampan.core.workflow import RunContext
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL, gbdt_job
from sampan.horizontal.gbdt_workflow import HorizontalGBDTWorkflow
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire.catalogue import flatten
from sampan.wire.gbdt_catalogue import gbdt_catalogue

FEATURES = ["x1", "x2", "x3"]
PARTIES = ("bank_0", "bank_1", "bank_2")
NOTES = {"DP1:hist": "histograms", "DP1:counts": "row and positive counts", "DP1:count": "training row count"}


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ np.array([1.5, -1.0, 0.5]) - 0.5)))).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


class _Recording(InProcessTransport):
    def __init__(self, apps: dict[str, Any]) -> None:
        super().__init__(apps)
        self.log: list[tuple[Any, Any]] = []

    def exchange(self, messages: Any) -> Any:
        messages = list(messages)
        replies = list(super().exchange(messages))
        by_party = {r.sender: r for r in replies}
        self.log += [(m, by_party[m.recipient]) for m in messages]
        return replies


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, neighbour: bool) -> tuple[list, dict]:
    seeds = itertools.count(1)
    monkeypatch.setattr(sampan.privacy.mechanisms, "secure_generator", lambda: seeded_generator(next(seeds)))
    config = parse_config({
        "run": {"name": "nb-gbdt", "seed": 7},
        "schema": {"id": "id", "label": "y", "features": [{"name": f, "bounds": [-4, 4]} for f in FEATURES]},
        "parties": [{"name": "placeholder", "path": "unused.csv"}],
        "model": {"kind": "gbdt", "n_trees": 3, "max_depth": 2, "n_bins": 8, "learning_rate": 0.3},
        "privacy": {"epsilon": 200.0, "gbdt": {"noise_multiplier": 1.0}}})
    rng = np.random.default_rng(11)
    data = {p: (_data(p, 80 + 20 * i, rng), _data(p, 30, rng)) for i, p in enumerate(PARTIES)}
    if neighbour:
        train, test = data["bank_0"]
        extra = PartyData(party="bank_0", ids=np.append(train.ids, "bank_0-extra"),
                          X=np.vstack([train.X, [[3.5, -3.5, 3.5]]]), y=np.append(train.y, np.int8(0)),
                          feature_names=FEATURES)
        data["bank_0"] = (extra, test)
    job = {"workflow": "horizontal", "model": "gbdt", "gbdt": gbdt_job(config)}
    policies = {p: PartyPrivacyPolicy() for p in PARTIES}
    transport = _Recording({p: HORIZONTAL.party_app(PartySetup(p, data[p], job, policy=policies[p]))
                            for p in PARTIES})
    store = Store.open(f"sqlite:///{tmp_path / f'nb-{neighbour}.db'}")
    run_id = store.create_run(name="nb", workflow="horizontal", seed=7, config=config.to_dict(), total_rounds=3)
    HorizontalGBDTWorkflow(config).run(RunContext(run_id, 7, config, transport, StoreRecorder(store, run_id)))
    store.close()
    return transport.log, {p: policies[p].ledger(p) for p in PARTIES}


def _fields(log: list, party: str) -> list[tuple[str, dict[str, Any]]]:
    """(catalogue key, fields) of every message the party received and sent, in order."""
    out = []
    for request, reply in log:
        if request.recipient == party:
            out.append((f"coordinator:{request.kind}", flatten(request.arrays, request.meta)))
            out.append((f"party:{reply.kind}", flatten(reply.arrays, reply.meta)))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return bool(a == b)


def test_only_charged_releases_differ_between_neighbouring_datasets(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    catalogue = gbdt_catalogue(dp=True)
    d, _ = _run(tmp_path, monkeypatch, False)
    d1, ledgers = _run(tmp_path, monkeypatch, True)
    changed: Counter[str] = Counter()
    for party in PARTIES:
        sent = Counter(key for key, _ in _fields(d1, party) if key.startswith("party:"))
        charged = Counter(tag for tag, note in NOTES.items()
                          for e in ledgers[party].events if note in e.note for _ in range(e.count))
        assert charged["DP1:hist"] == sent["party:hgb.hist"] and charged["DP1:counts"] == 1
        for (key, a), (key1, b) in zip(_fields(d, party), _fields(d1, party), strict=False):
            for fields, k in ((a, key), (b, key1)):
                spec = catalogue.get(k)
                assert spec is not None, f"{k} is not in the catalogue"
                for name in fields:
                    assert spec.field(name) is not None, f"{k} field {name} is not declared"
            if key != key1:
                continue  # the trees diverged: what follows is the coordinator's choice (derived)
            for name in set(a) | set(b):
                if name in a and name in b and _same(a[name], b[name]):
                    continue
                declared = catalogue[key].field(name)
                assert declared is not None
                assert declared.protection in ("charged", "derived"), (party, key, name, declared)
                for tag in declared.mechanisms:
                    assert charged[tag] > 0, (party, key, name, tag)
                changed[f"{key} {name}"] += 1
    assert any(k.startswith("party:hgb.hist") for k in changed)  # the added row moved the noised sums
    assert not any(k.startswith("party:hgb.setup") or "describe meta.n_test" in k for k in changed)
