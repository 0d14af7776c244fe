"""Neighbouring-dataset differential test for the checks job under [checks.dp] (issue 14 item 4).

The same checks job runs on D and on D plus one record (an extreme, positive row at bank_0), with every noise
source fixed (`secure_generator` replaced by a seeded stream restarted for each run; the run seed fixed). Every
message is captured at the transport: each party's view is the requests it receives, the coordinator's view every
reply. The two transcripts are aligned message by message and every field is looked up in the checks catalogue
(`sampan.wire.checks_catalogue`, which the receipt prints):

- a field the catalogue does not declare fails the test, changed or not;
- a field that changed must be declared ``charged``, and the run's persisted ledger must hold a charge for that
  party, for that release (its note), at the epsilon the request carried.
The control (no DP) shows the harness sees the added record: there the changed fields are declared visible.
The vertical job (PSI cardinality overlap) is tested the same way: there the bank's PSI set size also changes,
which PSI reveals exactly in every mode and the catalogue declares visible to the coordinator.
"""

from __future__ import annotations

import itertools
from typing import Any

import _checks_parties as fixture
import numpy as np
import pytest

import sampan.privacy.mechanisms
from sampan.data import PartyData
from sampan.privacy import Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.store import Store
from sampan.wire.catalogue import flatten
from sampan.wire.checks_catalogue import checks_catalogue

DP = {"dp": {"label_epsilon": 0.5, "histogram_epsilon": 1.0}}
NOTES = {"checks.label": "label counts", "checks.histogram": "histograms"}
Seen = tuple[str, str, str, int, dict[str, Any], dict[str, Any]]  # key, party, kind, step, fields, request meta


def _tables(neighbour: bool) -> dict[str, PartyData]:
    tables = fixture.banks()
    if neighbour:
        t = tables["bank_0"]
        assert t.y is not None
        tables["bank_0"] = PartyData("bank_0", np.append(t.ids, "bank_0-extra"), np.vstack([t.X, [[79.0, 1.0, 9.0]]]),
                                     np.append(t.y, np.int8(1)), t.feature_names)
    return tables


def _transcript(monkeypatch: pytest.MonkeyPatch, checks: dict[str, Any], neighbour: bool
                ) -> tuple[list[Seen], Ledger | None]:
    seeds = itertools.count(1)
    monkeypatch.setattr(sampan.privacy.mechanisms, "secure_generator", lambda: seeded_generator(next(seeds)))
    cfg = fixture.config(checks)
    tables = _tables(neighbour)
    transport = fixture.transport(tables, cfg)
    seen: list[Seen] = []
    original = transport.exchange

    def capturing(messages):  # type: ignore[no-untyped-def]
        messages = list(messages)
        requests = {m.recipient: dict(m.meta) for m in messages}
        for m in messages:
            seen.append((f"coordinator:{m.kind}", m.recipient, m.kind, m.step, flatten(m.arrays, m.meta), dict(m.meta)))
        for reply in original(messages):
            seen.append((f"party:{reply.kind}", reply.sender, reply.kind, reply.step,
                         flatten(reply.arrays, reply.meta), requests.get(reply.sender, {})))
            yield reply

    transport.exchange = capturing  # type: ignore[method-assign]
    store = Store.open("sqlite://")
    finished = fixture.run(cfg, tables, store, via=transport)
    stored = store.ledger(finished.run_id)
    return seen, Ledger.from_json(stored) if stored else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return bool(a == b)


def _changed(monkeypatch: pytest.MonkeyPatch, checks: dict[str, Any]
             ) -> tuple[list[tuple[Seen, str]], Ledger | None, dict[str, Any]]:
    """Run on D and D+1; check every field is catalogued; return the changed fields and the D+1 run's ledger."""
    before, _ = _transcript(monkeypatch, checks, neighbour=False)
    after, ledger = _transcript(monkeypatch, checks, neighbour=True)
    catalogue = checks_catalogue(dp="dp" in checks)
    assert [s[:4] for s in before] == [s[:4] for s in after], "the two runs exchanged different messages"
    changed: list[tuple[Seen, str]] = []
    for old, new in zip(before, after, strict=True):
        spec = catalogue.get(new[0])
        assert spec is not None, f"{new[0]} is not in the checks catalogue"
        for name in sorted(set(old[4]) | set(new[4])):
            assert spec.field(name) is not None, f"{new[0]}: field {name!r} is not declared"
            if not _same(old[4].get(name), new[4].get(name)):
                changed.append((new, name))
    return changed, ledger, catalogue


def test_under_dp_every_changed_field_is_a_charged_release(monkeypatch: pytest.MonkeyPatch) -> None:
    changed, ledger, catalogue = _changed(monkeypatch, DP)
    assert changed, "the added record changed nothing: the harness would not see a leak"
    assert ledger is not None
    for (key, party, kind, step, _, request), name in changed:
        field = catalogue[key].field(name)
        assert field is not None and field.protection == "charged", f"{key} {name} changed but is {field}"
        assert field.mechanisms == (f"DP1:{kind}",)
        charges = [e for e in ledger.events if e.party == party and e.step == step and NOTES[kind] in e.note]
        assert len(charges) == 1, f"{party} {kind}: expected one charge, ledger has {charges}"
        assert charges[0].mechanism == "laplace" and charges[0].epsilon == request["dp"]["epsilon"]
    assert {party for (_, party, *_), _ in changed} == {"bank_0"}  # only the bank that holds the extra record


def test_control_without_dp_the_changed_fields_are_declared_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    changed, ledger, catalogue = _changed(monkeypatch, {})
    assert ledger is None
    names = {(s[2], name) for s, name in changed}
    assert {("checks.label", "meta.n"), ("checks.label", "meta.positives"), ("checks.histogram", "arrays.counts")
            } <= names
    for (key, *_), name in changed:
        field = catalogue[key].field(name)
        assert field is not None and field.protection == "visible" and field.role == "coordinator"


def test_every_field_declared_charged_carries_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The declaration is not taken on trust: on the same data, each charged field of the DP run differs from the
    exact run's value (a field declared charged but sent exact would be equal here)."""
    private, _ = _transcript(monkeypatch, DP, neighbour=False)
    exact, _ = _transcript(monkeypatch, {}, neighbour=False)
    catalogue = checks_catalogue(dp=True)
    exact_replies = {(s[1], s[2]): s[4] for s in exact if s[0].startswith("party:")}
    checked = 0
    for key, party, kind, _, fields, _ in private:
        if not key.startswith("party:"):
            continue
        for name, value in fields.items():
            field = catalogue[key].field(name)
            if field is not None and field.protection == "charged":
                checked += 1
                released, truth = np.asarray(value, float), np.asarray(exact_replies[(party, kind)][name], float)
                assert np.all(released != truth), f"{party} {kind} {name}: released exactly under DP"
    assert checked == 3 * 2 + 3  # [n, positives] and the histogram of each of the three banks


def _vertical_transcript(monkeypatch: pytest.MonkeyPatch, neighbour: bool) -> tuple[list[Seen], Ledger | None]:
    """The vertical checks job (PSI cardinality overlap, the bank's label counts) under [checks.dp]; D+1 adds one
    customer to the bank's table (an id no partner holds, so only the bank's own counts can move)."""
    import dataclasses

    from sampan.checks.capability import CHECKS
    from sampan.config import parse_config
    from sampan.runtime.runner import start_run
    from sampan.transport.inprocess import InProcessTransport

    seeds = itertools.count(1)
    monkeypatch.setattr(sampan.privacy.mechanisms, "secure_generator", lambda: seeded_generator(next(seeds)))
    cfg = parse_config({"run": {"name": "nb-v", "workflow": "checks", "seed": 2, "report_dir": ""},
                        "vertical": {"label_holder": "bank"},
                        "source": {"kind": "consortium", "n_smes": 300}, "checks": {"dp": {}}})
    setups = CHECKS.simulate(cfg, 2)
    if neighbour:
        bank = setups["bank"].data
        assert bank.y is not None
        extra = {"ids": np.append(bank.ids, "SME-NEIGHBOUR"), "X": np.vstack([bank.X, bank.X[:1]]),
                 "y": np.append(bank.y, np.int8(1))}
        if bank.trees_X is not None:
            extra["trees_X"] = np.vstack([bank.trees_X, bank.trees_X[:1]])
        setups["bank"].data = dataclasses.replace(bank, **extra)
    transport = InProcessTransport({n: CHECKS.party_app(s) for n, s in setups.items()})
    seen: list[Seen] = []
    original = transport.exchange

    def capturing(messages):  # type: ignore[no-untyped-def]
        messages = list(messages)
        requests = {m.recipient: dict(m.meta) for m in messages}
        for m in messages:
            seen.append((f"coordinator:{m.kind}", m.recipient, m.kind, m.step, flatten(m.arrays, m.meta), dict(m.meta)))
        for reply in original(messages):
            seen.append((f"party:{reply.kind}", reply.sender, reply.kind, reply.step,
                         flatten(reply.arrays, reply.meta), requests.get(reply.sender, {})))
            yield reply

    transport.exchange = capturing  # type: ignore[method-assign]
    store = Store.open("sqlite://")
    finished = start_run(cfg, store, transport=transport)
    stored = store.ledger(finished.run_id)
    return seen, Ledger.from_json(stored) if stored else None


def test_vertical_under_dp_only_charged_releases_and_the_declared_psi_set_size_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Sealed envelopes and run keys are fresh randomness in every run (declared `random`) and are not compared.
    Of the rest, what changes is the bank's charged releases (label counts, overlap counts) and its PSI set size,
    which PSI reveals exactly in every mode and the catalogue declares visible to the coordinator."""
    before, _ = _vertical_transcript(monkeypatch, neighbour=False)
    after, ledger = _vertical_transcript(monkeypatch, neighbour=True)
    assert ledger is not None
    catalogue = checks_catalogue(dp=True, vertical=True)
    assert [s[:4] for s in before] == [s[:4] for s in after]
    visible: set[tuple[str, str]] = set()
    charged: set[tuple[str, str]] = set()
    for old, new in zip(before, after, strict=True):
        spec = catalogue.get(new[0])
        assert spec is not None, f"{new[0]} is not in the checks catalogue"
        for name in sorted(set(old[4]) | set(new[4])):
            field = spec.field(name)
            assert field is not None, f"{new[0]}: field {name!r} is not declared"
            if field.protection == "random" or _same(old[4].get(name), new[4].get(name)):
                continue
            assert new[1] == "bank", f"{new[0]} {name} changed at {new[1]}, which holds no added record"
            if field.protection == "charged":
                note = {"checks.label": "label counts", "checks.overlap": "id overlap"}[new[2]]
                assert [e for e in ledger.events if e.party == "bank" and e.step == new[3] and note in e.note]
                charged.add((new[2], name))
            else:
                assert field.protection == "visible" and field.role == "coordinator", (new[0], name, field)
                visible.add((new[2], name))
    assert visible == {("psi.offer", "meta.n")}  # the bank's set size: PSI's own, declared, not DP-protected
    # R14-CHECKS-3: a vertical label release carries positives only (the rows are the PSI set size, psi.offer meta.n)
    assert ("checks.label", "meta.positives") in charged and ("checks.overlap", "meta.count") not in charged
    # the new id is in no partner's set: the exact overlap did not change, and neither did its (fixed) noise
