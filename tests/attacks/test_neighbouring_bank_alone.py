"""Neighbouring-dataset differential test for the "each bank alone" release (`sampan.horizontal.local_comparison`).

The horizontal run with `[bank_alone]` runs on D and on D plus one training row at `bank_0`, every noise source
fixed (`secure_generator` replaced by one seeded stream, restarted per run). The `bank_alone` requests (each
bank's view) and `bank_alone_result` replies (the coordinator's view) are aligned and every field is looked up
in the catalogue (`sampan.wire.catalogue`, which the receipt prints): an undeclared field fails; under DP a
changed field must be declared as computed from charged outputs (DP2: the local-only model's DP-SGD) and the
run's ledger must hold that bank's DP2 charge for the local-only model at the noise its request carried; without
DP (the control) the changed fields must be declared revealed to the coordinator.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _horizontal_run import run_workflow
from test_neighbouring_horizontal import FEATURES, _data  # the same tables as the horizontal neighbouring test

import sampan.privacy.dpsgd
import sampan.privacy.mechanisms
from sampan.config import parse_config
from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy import Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire.catalogue import Setup, flatten, horizontal_catalogue

PARTIES = ("bank_0", "bank_1", "bank_2")
DP = {"privacy": {"epsilon": 50.0, "dp1": {"noise_multiplier": 4.0, "bounds": {"*": [-4.0, 4.0]}},
                  "dp2": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}}


def _apps(neighbour: bool) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    tables = {name: (_data(name, 80 + 20 * i, rng), _data(name, 40, rng)) for i, name in enumerate(PARTIES)}
    if neighbour:  # D + one record: an extreme, mislabelled training row at bank_0
        t = tables["bank_0"][0]
        extra = PartyData(party="bank_0", ids=np.append(t.ids, "bank_0-extra"),
                          X=np.vstack([t.X, [[3.5, -3.5, 3.5, 3.5]]]), y=np.append(t.y, np.int8(0)),
                          feature_names=FEATURES)
        tables["bank_0"] = (extra, tables["bank_0"][1])
    job = {"workflow": "horizontal", "model": "logistic", "bank_alone": True}
    return {name: HORIZONTAL.party_app(PartySetup(name, data, dict(job))) for name, data in tables.items()}


def _config(extra: dict[str, Any]) -> Any:
    return parse_config({"run": {"name": "nb", "rounds": 2, "seed": 7},
                         "schema": {"id": "id", "label": "y", "features": FEATURES},
                         "parties": [{"name": "placeholder", "path": "unused.csv"}],
                         "training": {"learning_rate": 0.2, "batch_size": 16}, "bank_alone": {"epochs": 2}, **extra})


Seen = list[tuple[str, str, dict[str, Any], dict[str, Any]]]  # (catalogue key, party, fields, request meta)


def _transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], neighbour: bool,
                ) -> tuple[Seen, Ledger | None]:
    seeds = itertools.count(1)
    for module in (sampan.privacy.mechanisms, sampan.privacy.dpsgd):
        monkeypatch.setattr(module, "secure_generator", lambda: seeded_generator(next(seeds)))
    config = _config(extra)
    transport = InProcessTransport(_apps(neighbour))
    seen: Seen = []
    requests: dict[str, dict[str, Any]] = {}
    original = transport.exchange

    def capturing(messages):  # type: ignore[no-untyped-def]
        messages = [m for m in messages]
        for m in messages:
            if m.kind == "bank_alone":
                requests[m.recipient] = dict(m.meta)
                seen.append(("coordinator:bank_alone", m.recipient, flatten(m.arrays, m.meta), dict(m.meta)))
        for reply in original(messages):
            if reply.kind == "bank_alone_result":
                seen.append(("party:bank_alone_result", reply.sender, flatten(reply.arrays, reply.meta),
                             requests[reply.sender]))
            yield reply

    transport.exchange = capturing  # type: ignore[method-assign]
    store = Store.open(f"sqlite:///{tmp_path / f'nb-{bool(extra)}-{neighbour}.db'}")
    run_id = store.create_run(name="nb", workflow="horizontal", seed=7, config=config.to_dict(), total_rounds=2)
    run_workflow(transport, store, run_id, config, 7)
    text = StoreRecorder(store, run_id).ledger()
    return seen, (Ledger.from_json(text) if text else None)


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape != b.shape or not np.array_equal(a, b)
    return bool(a != b)


@pytest.mark.parametrize("name", ["dp2", "no-dp-control"])
def test_every_changed_byte_of_the_comparison_comes_from_a_charged_or_declared_release(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    extra = DP if name == "dp2" else {}
    d, ledger = _transcript(tmp_path, monkeypatch, extra, neighbour=False)
    d1, _ = _transcript(tmp_path, monkeypatch, extra, neighbour=True)
    catalogue = horizontal_catalogue(Setup.from_config(_config(extra).to_dict()))
    assert [(k, p) for k, p, _, _ in d] == [(k, p) for k, p, _, _ in d1] and len(d) == 2 * len(PARTIES)
    changed_replies = 0
    for (key, party, fields, request), (_, _, fields1, _) in zip(d, d1, strict=True):
        spec = catalogue[key]
        for field_name in sorted(set(fields) | set(fields1)):
            declared = spec.field(field_name)
            assert declared is not None, f"{key}.{field_name} travels but is not declared in the catalogue"
            if not _differs(fields.get(field_name), fields1.get(field_name)):
                continue
            assert declared.protection != "public", (key, field_name)
            if key == "party:bank_alone_result" and field_name.startswith("arrays.local."):
                changed_replies += 1
                if name == "dp2":  # a function of the bank's DP-SGD local-only model: its charge must exist
                    assert declared.protection == "derived" and "DP2" in declared.mechanisms
                    assert ledger is not None and any(
                        e.party == party and e.level == "DP2" and "local-only" in e.note
                        and e.noise_multiplier == request["dp2"]["noise_multiplier"] for e in ledger.events)
                else:  # no DP: listed as revealed to the coordinator (the receipt prints it)
                    assert declared.protection == "visible" and declared.role == "coordinator"
    assert changed_replies > 0  # the added row does change bank_0's local-only model
