"""Finding 5, SecAgg part: the coordinator relays every party's SecAgg public keys; if it could substitute its own,
it would open the sealed Shamir shares (c key) or cancel the pairwise masks (s key) and read an update.

Every party now signs (run id, label, role, name, c/s keys, seed commitment) with its organisation's
certificate key, and every party checks its neighbours' signatures against the consortium CA before it
seals a share or draws a mask; a substituted key aborts the request with an error naming the peer.
The old code took whatever keys the coordinator relayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _horizontal_run import run_workflow
from _secagg_coordinator import RUN, Consortium, drive, server
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sampan.config import parse_config
from sampan.crypto.identity import IdentityError, SimulatedCA, sign_keys
from sampan.data import PartyData
from sampan.horizontal.simulation import PartySplit
from sampan.horizontal.workflow import FederationError
from sampan.privacy.secagg import run_secagg
from sampan.runtime.federation import build_party_apps
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

VICTIM = "p2"


def _own_key() -> bytes:
    return X25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                 serialization.PublicFormat.Raw)


def _victim_row(meta: dict[str, Any], arrays: dict[str, np.ndarray], key: str) -> int | None:
    peers = meta.get("holders") or meta.get("peers") or meta.get("senders") or []
    return list(peers).index(VICTIM) if VICTIM in peers and f"peer.{key}" in arrays else None


def _substitute(key: str) -> Any:
    mine = np.frombuffer(_own_key(), dtype=np.uint8)

    def alter(kind: str, party: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        row = _victim_row(meta, arrays, key)
        if row is not None:
            arrays[f"peer.{key}"] = arrays[f"peer.{key}"].copy()
            arrays[f"peer.{key}"][row] = mine
    return alter


@pytest.mark.parametrize("key", ["c_pk", "s_pk", "b_commit"])
def test_a_substituted_key_is_refused_naming_the_peer(tmp_path: Path, key: str) -> None:
    c = Consortium(5, tmp_path)
    with pytest.raises(IdentityError, match=f"peer '{VICTIM}' is not authenticated") as caught:
        drive(server(c), c, alter=_substitute(key))
    assert caught.value.peer == VICTIM and caught.value.reason == "bad_signature"


def _resign(identity: Any, kind: str = "c_pk") -> Any:
    """The coordinator replaces the victim's keys with its own and signs them with `identity`."""
    def alter(k: str, party: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        row = _victim_row(meta, arrays, kind)
        if row is None:
            return
        keys = {"c_pk": arrays["peer.c_pk"][row].tobytes(), "s_pk": arrays["peer.s_pk"][row].tobytes(),
                "b_commit": arrays["peer.b_commit"][row].tobytes()}
        keys[kind] = _own_key()
        signed = sign_keys(identity, RUN, f"secagg.keys/{meta['label']}", "client", keys)
        names = meta.get("holders") or meta.get("peers") or meta.get("senders")
        certs = _split(arrays["peer.certificate"], arrays["peer.certificate_len"])
        sigs = _split(arrays["peer.signature"], arrays["peer.signature_len"])
        certs[row], sigs[row] = signed.certificate_pem, signed.signature
        arrays["peer.c_pk"] = arrays["peer.c_pk"].copy()
        arrays["peer.c_pk"][row] = np.frombuffer(keys["c_pk"], dtype=np.uint8)
        arrays["peer.certificate"], arrays["peer.certificate_len"] = _join(certs)
        arrays["peer.signature"], arrays["peer.signature_len"] = _join(sigs)
        assert len(names) == len(certs)
    return alter


def _split(data: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    raw, out, at = data.tobytes(), [], 0
    for n in lengths:
        out.append(raw[at:at + int(n)])
        at += int(n)
    return out


def _join(rows: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    return np.frombuffer(b"".join(rows), dtype=np.uint8).copy(), np.array([len(r) for r in rows], dtype=np.int64)


def test_keys_resigned_by_the_coordinator_or_a_foreign_ca_are_refused(tmp_path: Path) -> None:
    c = Consortium(5, tmp_path)
    forged = SimulatedCA().issue(VICTIM)  # a certificate in the victim's name, from another CA
    with pytest.raises(IdentityError) as caught:
        drive(server(c), c, alter=_resign(forged))
    assert caught.value.peer == VICTIM and caught.value.reason == "unknown_ca"
    own = Consortium(5, tmp_path / "again")
    insider = own.identities["p0"]  # a member re-signing the victim's slot with its own certificate
    with pytest.raises(IdentityError) as caught:
        drive(server(own), own, alter=_resign(insider))
    assert caught.value.peer == VICTIM and caught.value.reason == "wrong_name"


def test_keys_replayed_from_another_attempt_are_refused(tmp_path: Path) -> None:
    c = Consortium(5, tmp_path)
    old = server(c, label=f"{RUN}/round-1/attempt-0")
    drive(old, c, until="secagg_share")
    stale = old.st.keys[VICTIM]
    new = server(c, label=f"{RUN}/round-1/attempt-1")

    def replay(kind: str, party: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        row = _victim_row(meta, arrays, "c_pk")
        if row is None:
            return
        for key in ("c_pk", "s_pk", "b_commit"):
            arrays[f"peer.{key}"] = arrays[f"peer.{key}"].copy()
            arrays[f"peer.{key}"][row] = np.frombuffer(getattr(stale, key), dtype=np.uint8)
        sigs = _split(arrays["peer.signature"], arrays["peer.signature_len"])
        sigs[row] = stale.signature
        arrays["peer.signature"], arrays["peer.signature_len"] = _join(sigs)

    with pytest.raises(IdentityError) as caught:
        drive(new, c, alter=replay)
    assert caught.value.peer == VICTIM and caught.value.reason == "bad_signature"


def test_substitution_in_a_training_run_fails_the_round_naming_the_peer(tmp_path: Path) -> None:
    """Through the workflow: parties refuse, the round cannot complete, the audit log names the peer."""
    rng = np.random.default_rng(2)
    features = ["a", "b"]

    def data(name: str, n: int) -> PartyData:
        X = rng.normal(size=(n, 2))
        return PartyData(party=name, ids=np.array([f"{name}{i}" for i in range(n)], dtype=object), X=X,
                         y=(X[:, 0] > 0).astype(np.int8), feature_names=features)

    apps = build_party_apps({f"bank_{i}": PartySplit(data(f"bank_{i}", 60), data(f"bank_{i}", 20)) for i in range(4)})
    transport = InProcessTransport(apps)
    mine = np.frombuffer(_own_key(), dtype=np.uint8)
    original = transport.exchange

    def exchange(messages: Any) -> Any:  # the coordinator's relay swaps bank_2's c key for its own
        out = []
        for m in messages:
            holders = list(m.meta.get("holders") or [])
            if m.kind == "secagg_share" and "bank_2" in holders:
                arrays = dict(m.arrays)
                arrays["peer.c_pk"] = arrays["peer.c_pk"].copy()
                arrays["peer.c_pk"][holders.index("bank_2")] = mine
                m = Message(m.run_id, m.step, m.sender, m.recipient, m.kind, arrays=arrays, meta=m.meta)
            out.append(m)
        return original(out)

    transport.exchange = exchange  # type: ignore[method-assign]
    config = parse_config({"run": {"name": "mitm", "rounds": 1, "seed": 1},
                           "schema": {"id": "id", "label": "y", "features": features},
                           "parties": [{"name": "placeholder", "path": "unused.csv"}], "secure_aggregation": {}})
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = store.create_run(name="mitm", workflow="horizontal", seed=1, config=config.to_dict(), total_rounds=1)
    with pytest.raises(FederationError, match="secure aggregation failed"):
        run_workflow(transport, store, run_id, config, 1)
    failed = [e.detail for e in store.events(run_id) if e.kind == "secagg_round_failed"]
    assert failed and "peer 'bank_2' is not authenticated" in failed[0]["failed"]["bank_0"]
    assert not [e for e in store.events(run_id) if e.kind == "secagg_round"]  # nothing was aggregated


def test_the_honest_relay_still_completes(tmp_path: Path) -> None:
    c = Consortium(5, tmp_path)
    srv = server(c)
    total = run_secagg(srv, lambda kind, party, arrays, meta: c.call(kind, party, dict(arrays), dict(meta)))
    np.testing.assert_array_equal(total, c.expected(c.names, srv.params))
