"""Neighbouring-dataset differential tests for every horizontal DP configuration.

The same protocol runs on D and on D plus one training row (at `bank_0`), with every noise source
fixed (`secure_generator` replaced by one seeded stream, restarted for each run; the run seed fixed).
Every message each role sees is captured at the transport: the coordinator's view is every reply and,
under secure aggregation, the unmasked sums it decodes (masked vectors and keys are random to it);
each party's view is every request it receives. The two transcripts are aligned message by message
and every field is looked up in the protocol's catalogue (`sampan.wire.catalogue`), which is what the
privacy receipt prints:

- a field that the catalogue does not declare fails the test, changed or not (a new field must be
  declared, with its protection, before it may travel);
- a field that changed must not be declared public; if it is declared the output of charged
  mechanisms, the ledger must hold one charge per release for that party, keyed by the release's round
  (each attempt of a round is its own release, consuming its own charge) at the noise multiplier the
  request actually carried; a field computed only from charged outputs needs those charges to exist;
- a changed field declared visible to a role in clear is allowed only where the configuration names
  that role as trusted (central DP3: the coordinator sees clipped updates) or has no DP on it at all
  (DP1 only protects the preprocessing statistics; SecAgg without DP is the control).

Holdout rows are outside the DP unit: the added row is a training row, and the end-of-run
evaluation is declared as computed from the released model and holdout rows.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _horizontal_run import run_workflow

import sampan.horizontal.secure_rounds as secure_rounds_module
import sampan.privacy.dp3
import sampan.privacy.dpsgd
import sampan.privacy.mechanisms
from sampan.config import parse_config
from sampan.data import PartyData
from sampan.horizontal.simulation import PartySplit
from sampan.metrics.histogram import DEFAULT_BINS, DP_BINS
from sampan.privacy import Ledger
from sampan.privacy.fit_evaluation import evaluation_scale
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.federation import build_party_apps
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire.catalogue import Setup, flatten, horizontal_catalogue

FEATURES = ["x1", "x2", "x3", "x4"]
PARTIES = ("bank_0", "bank_1", "bank_2")
DP1 = {"noise_multiplier": 4.0, "bounds": {"*": [-4.0, 4.0]}}
CONFIGS: dict[str, dict[str, Any]] = {
    "dp1": {"privacy": {"epsilon": 50.0, "dp1": DP1}},
    "dp2": {"privacy": {"epsilon": 50.0, "dp1": DP1, "dp2": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}},
    "dp3-central": {"privacy": {"epsilon": 50.0, "dp1": DP1,
                                "dp3": {"noise_multiplier": 1.0, "clip": 0.5, "adaptive": True}}},
    "dp2-dp3-central": {"privacy": {"epsilon": 50.0, "dp1": DP1, "dp2": {"noise_multiplier": 1.0},
                                    "dp3": {"noise_multiplier": 1.0, "clip": 0.5}}},
    "dp3-distributed-secagg": {"privacy": {"epsilon": 50.0, "dp1": DP1,
                                           "dp3": {"noise_multiplier": 1.0, "clip": 0.5, "mode": "distributed",
                                                   "adaptive": True}},
                               "secure_aggregation": {"threshold": 0.6}},
    "dp2-secagg": {"privacy": {"epsilon": 50.0, "dp1": DP1, "dp2": {"noise_multiplier": 1.0}},
                   "secure_aggregation": {"threshold": 0.6}},
    "secagg-control": {"secure_aggregation": {"threshold": 0.6}},
}
# Roles a configuration declares as seeing changed fields in clear (and trusts with them).
TRUSTED: dict[str, set[str]] = {
    "dp1": {"coordinator", "every party"},  # DP1 protects only the preprocessing statistics
    "dp2": set(),
    "dp3-central": {"coordinator"},          # central DP3: the coordinator sees clipped updates
    "dp2-dp3-central": set(),                # the clipped update is a DP-SGD output
    "dp3-distributed-secagg": set(),
    "dp2-secagg": set(),
    "secagg-control": {"coordinator", "every party"},  # control: no DP, sums in clear to the coordinator
}
TAGS = {"DP1:count": ("DP1", "row count"), "DP1:stats": ("DP1", "standardisation"), "DP2": ("DP2", ""),
        "DP3": ("DP3", "")}


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ np.array([1.5, -1.0, 0.5, 0.0]) - 0.5)))).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


def _splits(neighbour: bool) -> dict[str, PartySplit]:
    rng = np.random.default_rng(11)
    splits = {name: PartySplit(_data(name, 80 + 20 * i, rng), _data(name, 40, rng)) for i, name in enumerate(PARTIES)}
    if neighbour:  # D + one record: an extreme, mislabelled row at bank_0 (the strongest kind of difference)
        t = splits["bank_0"].train
        extra = PartyData(party="bank_0", ids=np.append(t.ids, "bank_0-extra"),
                          X=np.vstack([t.X, [[3.5, -3.5, 3.5, 3.5]]]), y=np.append(t.y, np.int8(0)),
                          feature_names=FEATURES)
        splits["bank_0"] = PartySplit(extra, splits["bank_0"].test)
    return splits


def _config(extra: dict[str, Any]):
    return parse_config({"run": {"name": "nb", "rounds": 2, "seed": 7},
                         "schema": {"id": "id", "label": "y", "features": FEATURES},
                         "parties": [{"name": "placeholder", "path": "unused.csv"}],
                         "training": {"learning_rate": 0.2, "batch_size": 16}, **extra})


def _transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, neighbour: bool,
                ) -> tuple[list[tuple[tuple[Any, ...], str, str, dict[str, Any]]], Ledger | None]:
    """Run once; return [(alignment key, catalogue key, party, fields)] and the ledger."""
    seeds = itertools.count(1)
    for module in (sampan.privacy.mechanisms, sampan.privacy.dpsgd, sampan.privacy.dp3):
        monkeypatch.setattr(module, "secure_generator", lambda: seeded_generator(next(seeds)))
    config = _config(CONFIGS[name])
    transport = InProcessTransport(build_party_apps(_splits(neighbour)))
    # (catalogue key, party, kind, step, fields, releases): releases = [(party, step, request meta)] it stands for
    seen: list[tuple[str, str, str, int, dict[str, Any], list[tuple[str, int, dict[str, Any]]]]] = []
    requests: dict[tuple[str, str, int], dict[str, Any]] = {}  # (party, kind, step) -> the latest request's meta
    fits: list[tuple[str, int, dict[str, Any]]] = []  # fit requests of the current SecAgg attempt
    original = transport.exchange

    def capturing(messages):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for m in messages:  # each party's view: the requests it receives
            seen.append((f"coordinator:{m.kind}", m.recipient, m.kind, m.step, flatten(m.arrays, m.meta), []))
            requests[(m.recipient, m.kind, m.step)] = dict(m.meta)
            if m.kind == "fit":
                label = (m.meta.get("secagg") or {}).get("label")
                if fits and (fits[-1][1] != m.step or (fits[-1][2].get("secagg") or {}).get("label") != label):
                    fits.clear()
                fits.append((m.recipient, m.step, dict(m.meta)))
        for reply in original(messages):  # the coordinator's view: every reply
            request = requests.get((reply.sender, _REQUEST.get(reply.kind, reply.kind), reply.step), {})
            seen.append((f"party:{reply.kind}", reply.sender, reply.kind, reply.step,
                         flatten(reply.arrays, reply.meta), [(reply.sender, reply.step, request)]))
            yield reply

    transport.exchange = capturing  # type: ignore[method-assign]
    decode = secure_rounds_module.decode_vector

    def evaluation_sum(vector: Any) -> None:
        b = (vector.size - 3) // 3
        slots = {"sum.pos": vector[:b], "sum.neg": vector[b:2 * b], "sum.sum_p": vector[2 * b:3 * b],
                 "sum.loss_sum": vector[-3], "sum.brier_sum": vector[-2], "sum.n": vector[-1]}
        seen.append(("party:evaluation:sum", "*", "evaluation:sum", -1, slots, []))

    def decoding(total, params):  # type: ignore[no-untyped-def]
        vector = decode(total, params)  # the coordinator's decrypted view under secure aggregation
        if vector.size in (3 * DEFAULT_BINS + 3, 3 * DP_BINS + 3):  # evaluation: 100 bins under DP (review R8-2)
            evaluation_sum(vector)
            return vector
        fit = vector
        # [fit | evaluation of the round's incoming model] (issue 12): the fit request carried `evaluate`
        bins = int(fits[-1][2]["evaluate"]["bins"]) if fits and "evaluate" in fits[-1][2] else 0
        if bins and vector.size > 3 * bins + 3:
            fit = vector[:-(3 * bins + 3)]
            evaluation_sum(vector[-(3 * bins + 3):] / evaluation_scale(params.frac_bits))
        slots = {"sum.update": fit[:-3], "sum.indicator": fit[-3], "sum.loss": fit[-2], "sum.weight": fit[-1]}
        seen.append(("party:fit_result:sum", "*", "fit_result:sum", -1, slots, list(fits)))
        return vector

    monkeypatch.setattr(secure_rounds_module, "decode_vector", decoding)
    store = Store.open(f"sqlite:///{tmp_path / f'{name}-{neighbour}.db'}")
    run_id = store.create_run(name="nb", workflow="horizontal", seed=7, config=config.to_dict(), total_rounds=2)
    run_workflow(transport, store, run_id, config, 7)
    ledger_json = store.latest_checkpoint(run_id).meta.get("ledger")
    counter: dict[tuple[str, str, str], int] = {}
    out = []
    for key, party, kind, _step, fields, releases in seen:
        index = counter.setdefault((key, party, kind), 0)
        counter[(key, party, kind)] = index + 1
        out.append(((key, party, index), key, party, fields, releases))
    return out, (Ledger.from_json(ledger_json) if ledger_json else None)


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b)
    return a != b


_REQUEST = {"fit_result": "fit", "evaluation": "evaluate"}  # reply kind -> request kind
# the mechanisms a reply kind itself releases (each reply consumes its own charge); others are earlier inputs
_RELEASED_BY = {"describe": ("DP1:count",), "stats": ("DP1:stats",), "fit_result": ("DP2", "DP3"),
                "fit_result:sum": ("DP2", "DP3")}


def _charged(ledger: Ledger | None, party: str, tag: str) -> bool:
    """Some charge of this mechanism exists for the party (enough for a field derived from charged outputs)."""
    if ledger is None:
        return False
    level, note = TAGS[tag]
    parties = ledger.parties if party == "*" else (party,)
    return all(any(e.party == p and e.level == level and note in e.note for e in ledger.events) for p in parties)


def _requested_z(tag: str, meta: dict[str, Any]) -> float | None:
    """The noise multiplier a release of `tag` was asked for, read from its request (None: not in it)."""
    try:
        if tag == "DP1:count":
            return float(meta["dp_count"]["noise_multiplier"])
        if tag == "DP1:stats":
            return float(meta["dp1"]["noise_multiplier"])
        if tag == "DP2":
            return float(meta["dp2"]["noise_multiplier"])
        if tag == "DP3":
            return sampan.privacy.dp3.settings_noise_multiplier(meta["dp3"])
    except (KeyError, TypeError):
        return None
    raise AssertionError(tag)


def _charge_per_release(ledger: Ledger | None, releases: list[tuple[str, int, dict[str, Any]]], tag: str,
                        used: set[int]) -> list[str]:
    """One distinct ledger event per release (party, round, attempt) at the z its request carried; returns what
    has none. `used` holds the events already matched to other releases (each release consumes its own)."""
    missing = []
    level, note = TAGS[tag]
    for party, step, meta in releases or [("?", -1, {})]:
        z = _requested_z(tag, meta)
        match = next((i for i, e in enumerate(ledger.events if ledger else ()) if i not in used and e.party == party
                      and e.level == level and note in e.note and e.step == step and z is not None
                      and e.noise_multiplier is not None and abs(e.noise_multiplier - z) <= 1e-9 * max(1.0, z)), None)
        if match is None:
            missing.append(f"{tag} for {party} at round {step} (z={z})")
        else:
            used.add(match)
    return missing


def differential_check(name: str, d: list, d1: list, ledger: Ledger | None) -> dict[str, set[str]]:
    """Compare two transcripts against the catalogue; return the changed fields by protection class."""
    catalogue = horizontal_catalogue(Setup.from_config(_config(CONFIGS[name]).to_dict()))
    assert [k for k, *_ in d] == [k for k, *_ in d1], "the two runs exchanged different sequences of messages"
    problems: list[str] = []
    changed: dict[str, set[str]] = {}
    used: set[int] = set()  # ledger events matched to a release already
    for (_, key, party, fa, *_), (_, _, _, fb, *rest) in zip(d, d1, strict=False):
        releases = rest[0] if rest else []
        consumed: set[str] = set()  # mechanisms whose charge this message's release already matched
        spec = catalogue.get(key)
        for field in sorted(set(fa) | set(fb)):
            declared = spec.field(field) if spec else None
            where = f"{key} {field} ({party})"
            if declared is None:
                problems.append(f"{where}: not declared in the catalogue")
                continue
            if declared.protection == "random":  # keys, masks, sealed shares: compared through the sums
                continue
            if field in fa and field in fb and not _differs(fa[field], fb[field]):
                continue
            changed.setdefault(declared.protection, set()).add(f"{key} {field}")
            if declared.protection == "public":
                problems.append(f"{where}: declared public but differs between D and D+1")
            elif declared.protection == "charged" and key.startswith("party:"):  # a release: its own charge
                missing = []
                for m in declared.mechanisms:
                    if m not in _RELEASED_BY.get(key.split(":", 1)[1], ()):  # an input released earlier
                        missing += [] if _charged(ledger, party, m) else [m]
                    elif m not in consumed:
                        consumed.add(m)
                        missing += _charge_per_release(ledger, releases, m, used)
                if not declared.mechanisms or missing:
                    problems.append(f"{where}: differs; declared charged by {declared.mechanisms} but the ledger holds "
                                    f"no charge of its own for {missing or 'any mechanism'}")
            elif declared.protection in ("charged", "derived"):  # derived, or a release relayed back to a party
                missing = [m for m in declared.mechanisms if not _charged(ledger, party, m)]
                if not declared.mechanisms or missing:
                    problems.append(
                        f"{where}: differs; declared {declared.protection} by {declared.mechanisms} but the "
                        f"ledger holds no charge for {missing or 'any mechanism'}"
                    )
            elif declared.role not in TRUSTED[name]:
                problems.append(
                    f"{where}: differs and is {declared.protection} to the {declared.role}, which this "
                    "configuration does not name as trusted"
                )
    assert not problems, "\n".join(problems)
    return changed


@pytest.mark.parametrize("name", list(CONFIGS))
def test_neighbouring_transcripts_differ_only_in_charged_or_declared_fields(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, ledger = _transcript(tmp_path, monkeypatch, name, neighbour=False)
    d1, ledger1 = _transcript(tmp_path, monkeypatch, name, neighbour=True)
    changed = differential_check(name, d, d1, ledger1)
    assert changed, "adding an extreme row changed nothing: the test would not catch a leak"
    if name.startswith("dp2") or "dp3" in name:  # the model (and what depends on it) is DP here
        assert "visible" not in changed or name == "dp3-central", changed.get("visible")
        assert "aggregate" not in changed, changed.get("aggregate")
    if name == "secagg-control":  # documents what secure aggregation alone leaves exact: the sums
        assert any(f.startswith("party:fit_result:sum") for f in changed["aggregate"])


def test_an_undeclared_or_uncharged_field_fails_the_check() -> None:
    """The checker itself: a reply field nobody declared, or a count the ledger never charged, is caught."""
    base = [(("party:fit_result", "bank_0", 0), "party:fit_result", "bank_0", {"arrays.update": np.zeros(2)})]
    leaky = [
        (
            ("party:fit_result", "bank_0", 0),
            "party:fit_result",
            "bank_0",
            {"arrays.update": np.ones(2), "meta.loss": 0.7},
        )
    ]
    with pytest.raises(AssertionError, match="meta.loss.*not declared"):
        differential_check("dp2", base, leaky, None)
    describe = [(("party:describe", "bank_0", 0), "party:describe", "bank_0", {"meta.n_train": 80})]
    with pytest.raises(AssertionError, match="n_train.*no charge"):
        differential_check("dp2", describe, [(describe[0][0], describe[0][1], "bank_0", {"meta.n_train": 81})], None)


def test_each_release_needs_its_own_charge_at_the_noise_it_used() -> None:
    """Review R5: any DP2 event of the party used to cover every changed DP2 field. Now one charge per
    release (round, attempt), at the multiplier the request carried."""
    from sampan.privacy.ledger import Budget, PrivacyEvent

    def ledger(*events: tuple[int, float]) -> Ledger:
        book = Ledger({"bank_0": Budget(1e9, 1e-5)})
        book.record(
            PrivacyEvent(
                party="bank_0",
                level="DP1",
                mechanism="gaussian",
                noise_multiplier=20.0,
                step=0,
                note="training row count",
            )
        )  # the released count the update's rate depends on
        for step, z in events:
            book.record(
                PrivacyEvent(
                    party="bank_0",
                    level="DP2",
                    mechanism="subsampled_gaussian",
                    noise_multiplier=z,
                    sampling_rate=0.1,
                    count=10,
                    step=step,
                    note="DP-SGD local training",
                )
            )
        return book

    def reply(step: int, value: float, z: float = 1.0) -> tuple:
        request = {"dp2": {"noise_multiplier": z, "max_grad_norm": 1.0}}
        return (
            ("party:fit_result", "bank_0", step),
            "party:fit_result",
            "bank_0",
            {"arrays.update": np.full(2, value)},
            [("bank_0", step, request)],
        )

    d, d1 = [reply(1, 0.0), reply(2, 0.0)], [reply(1, 1.0), reply(2, 1.0)]
    assert differential_check("dp2", d, d1, ledger((1, 1.0), (2, 1.0)))  # one charge per round: accepted
    with pytest.raises(AssertionError, match="no charge of its own.*round 2"):
        differential_check("dp2", d, d1, ledger((1, 1.0)))  # the old check accepted one event for both
    with pytest.raises(AssertionError, match="no charge of its own.*round 1"):
        differential_check("dp2", d, d1, ledger((1, 0.1), (2, 1.0)))  # charged at a z the request did not use
    retry = [reply(1, 0.0), reply(1, 0.0)], [reply(1, 1.0), reply(1, 1.0)]  # two attempts of round 1
    with pytest.raises(AssertionError, match="no charge of its own.*round 1"):
        differential_check("dp2", retry[0], retry[1], ledger((1, 1.0)))
