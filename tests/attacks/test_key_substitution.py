"""Finding 5: a coordinator that substitutes the parties' per-run keys is caught before any channel exists.

The malicious coordinator is a relay (`KeySubstitutingRelay`, a Transport around the real one) that swaps
every party's `vertical.hello` key for one of its own and re-seals every envelope in flight, so it can read
them all (on commit 1064fb2 it did, and training finished normally). Now each party signs its run key with
its organisation's certificate and checks its peers' signatures against the consortium CA, so the run
aborts at `vertical.peers` with an error naming the peer — in process and over gRPC between agents.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from sampan.crypto.channel import ChannelError, PartyKeys, SealedChannels
from sampan.crypto.identity import (
    IdentityError,
    PartyIdentity,
    SimulatedCA,
    sign_keys,
    simulated_consortium,
    verify_keys,
)
from sampan.data import make_sme_consortium
from sampan.transport import PartyError, Transport
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.party import CHANNEL_PROTOCOL, VerticalParty
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig
from sampan.wire import Message

Resign = Callable[[str, str, str, bytes], dict[str, np.ndarray]]  # (run_id, victim, role, fake key) -> arrays


class KeySubstitutingRelay(Transport):
    """A malicious coordinator's relay: its own key in place of every party's, every envelope re-sealed.

    `resign`, when given, replaces the victim's certificate and signature (e.g. with the coordinator's
    own certificate, or a certificate for the victim's name from another CA).
    """

    def __init__(self, inner: Transport, resign: Resign | None = None) -> None:
        self.inner, self.resign, self.traffic = inner, resign, inner.traffic
        self.real: dict[str, bytes] = {}
        self.fake: dict[str, PartyKeys] = {}
        self.posing: dict[str, SealedChannels] = {}  # the relay posing as party Y towards every real party
        self.opened: list[tuple[str, str, object]] = []  # (sender, recipient, plaintext) it read in flight
        self.certificates: dict[str, bytes] = {}  # what each party's hello carried
        self.kinds: list[str] = []

    @property
    def parties(self) -> list[str]:
        return self.inner.parties

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for reply in self.inner.exchange(self._own_key_back(m) for m in messages):
            yield self._tamper(reply)

    def _own_key_back(self, request: Message) -> Message:
        """Each party is shown its own genuine key (so it cannot spot the swap by looking at itself)."""
        own = f"key:{request.recipient}"
        if request.kind != "vertical.peers" or own not in request.arrays or request.recipient not in self.real:
            return request
        arrays = {**request.arrays, own: np.frombuffer(self.real[request.recipient], dtype=np.uint8)}
        return Message(request.run_id, request.step, request.sender, request.recipient, request.kind, arrays,
                       dict(request.meta))

    def _tamper(self, reply: Message) -> Message:
        arrays = dict(reply.arrays)
        if reply.kind == "vertical.hello":
            self.real[reply.sender] = np.ascontiguousarray(arrays["public_key"], dtype=np.uint8).tobytes()
            self.fake[reply.sender] = PartyKeys.generate()
            if "certificate" in arrays:
                self.certificates[reply.sender] = np.ascontiguousarray(arrays["certificate"], dtype=np.uint8).tobytes()
            fake = self.fake[reply.sender].public_bytes
            arrays["public_key"] = np.frombuffer(fake, dtype=np.uint8)
            if self.resign is not None:
                arrays.update(self.resign(reply.run_id, reply.sender, str(reply.meta.get("role", "")), fake))
            self.posing = {}
        else:
            if not self.posing and self.fake:
                self.posing = {y: SealedChannels(y, self.fake[y], self.real, reply.run_id) for y in self.fake}
            for key, value in list(arrays.items()):
                if key.startswith("to:"):
                    arrays[key] = self._reseal_arrays(reply.sender, key[3:], value)
                elif key.startswith("envelope"):
                    arrays[key] = self._reseal(reply.sender, value)
        return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, arrays, dict(reply.meta))

    def _reseal_arrays(self, sender: str, recipient: str, envelope: np.ndarray) -> np.ndarray:
        plain = self.posing[recipient].open_arrays(sender, envelope)
        self.opened.append((sender, recipient, plain))
        return self.posing[sender].seal_arrays(recipient, plain)

    def _reseal(self, sender: str, envelope: np.ndarray) -> np.ndarray:
        for recipient, channels in self.posing.items():
            if recipient == sender:
                continue
            try:
                inner = channels.open(sender, envelope)
            except ChannelError:
                continue
            self.opened.append((sender, recipient, inner))
            return self.posing[sender].seal(recipient, inner)
        raise AssertionError(f"the relay could not open an envelope from {sender}")


def _tables(n: int = 1500) -> dict:
    tables = make_sme_consortium(n, seed=21).vertical
    return {k: v for k, v in tables.items() if k in ("bank", "payments")}


def _inprocess(resign: Resign | None = None) -> tuple[VerticalSession, KeySubstitutingRelay, dict[str, VerticalParty]]:
    from sampan.runtime.federation import build_inprocess_vertical

    transport, parties = build_inprocess_vertical(_tables())
    for party in parties.values():
        party.psi.workers = 1
    relay = KeySubstitutingRelay(transport, resign)
    session = VerticalSession(relay, label_holder="bank", partners=["payments"], run_id="mitm-1")
    return session, relay, parties


def _attack(session: VerticalSession) -> None:
    """Everything the run does, so that on the old code the relay reads the features' envelopes too."""
    session.connect()
    session.align()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    session.train(splits, VerticalLRConfig(epochs=1, batch_size=256), seed=1)


def test_substituted_channel_keys_abort_the_run_naming_the_peer() -> None:
    session, relay, parties = _inprocess()
    with pytest.raises(PartyError) as caught:
        _attack(session)
    message = str(caught.value)
    assert caught.value.kind == "vertical.peers" and "IdentityError" in message
    assert "peer 'bank' is not authenticated (bad_signature)" in message or \
        "peer 'payments' is not authenticated (bad_signature)" in message
    assert relay.opened == [] and all(p.channels is None for p in parties.values())


def _resign_with(identity_for: Callable[[str], PartyIdentity]) -> Resign:
    def resign(run_id: str, victim: str, role: str, fake: bytes) -> dict[str, np.ndarray]:
        return sign_keys(identity_for(victim), run_id, CHANNEL_PROTOCOL, role, {"x25519": fake}).to_arrays()
    return resign


def test_keys_resigned_with_the_coordinators_own_certificate_are_refused() -> None:
    """The coordinator holds a genuine certificate of the consortium CA — for its own name and role."""
    ca = SimulatedCA()
    coordinator = ca.issue("coordinator", "coordinator")
    verifier, identities = simulated_consortium(["bank", "payments"], ca=ca)
    tables = _tables()
    parties = {n: VerticalParty(t, identity=identities[n], verifier=verifier) for n, t in tables.items()}
    relay = KeySubstitutingRelay(InProcessTransport({n: p.app for n, p in parties.items()}),
                                 _resign_with(lambda victim: coordinator))
    session = VerticalSession(relay, label_holder="bank", partners=["payments"], run_id="mitm-2")
    with pytest.raises(PartyError, match=r"peer '(bank|payments)' is not authenticated \(wrong_name\)"):
        session.connect()
    assert all(p.channels is None for p in parties.values())


def test_keys_resigned_with_a_certificate_for_the_victims_name_from_another_ca_are_refused() -> None:
    rogue = SimulatedCA("rogue CA")
    session, relay, parties = _inprocess(_resign_with(lambda victim: rogue.issue(victim)))
    with pytest.raises(PartyError, match=r"peer '(bank|payments)' is not authenticated \(unknown_ca\)"):
        session.connect()
    assert all(p.channels is None for p in parties.values())


def test_unsigned_keys_are_refused() -> None:
    def strip(run_id: str, victim: str, role: str, fake: bytes) -> dict[str, np.ndarray]:
        return {"certificate": np.zeros(0, dtype=np.uint8), "signature": np.zeros(0, dtype=np.uint8)}

    session, _, parties = _inprocess(strip)
    with pytest.raises(PartyError, match=r"peer '(bank|payments)' is not authenticated \(bad_certificate\)"):
        session.connect()
    assert all(p.channels is None for p in parties.values())


def test_keys_replayed_from_another_run_are_refused() -> None:
    """A signed hello from run A, relayed in run B: the signature binds the run id."""
    verifier, identities = simulated_consortium(["bank", "payments"])
    tables = _tables()
    parties = {n: VerticalParty(t, identity=identities[n], verifier=verifier) for n, t in tables.items()}
    transport = InProcessTransport({n: p.app for n, p in parties.items()})
    earlier = VerticalParty(tables["bank"], identity=identities["bank"], verifier=verifier)  # the bank in run A
    old = earlier.hello(Message("run-A", 0, "coordinator", "bank", "vertical.hello"))

    class Replay(KeySubstitutingRelay):
        def _tamper(self, reply: Message) -> Message:
            if reply.kind == "vertical.hello" and reply.sender == "bank":
                self.real["bank"] = np.ascontiguousarray(reply.arrays["public_key"], dtype=np.uint8).tobytes()
                return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind,
                               dict(old.arrays), dict(old.meta))
            return reply

    session = VerticalSession(Replay(transport), label_holder="bank", partners=["payments"], run_id="run-B")
    with pytest.raises(PartyError, match=r"peer 'bank' is not authenticated \(bad_signature\)"):
        session.connect()


def test_through_an_honest_relay_the_same_parties_connect() -> None:
    session, _, parties = _inprocess()
    honest = VerticalSession(session.transport.inner, label_holder="bank", partners=["payments"], run_id="honest")
    honest.connect()
    assert parties["bank"].channels is not None and parties["bank"].channels.peers == ["payments"]


# --- certificates a peer must refuse ---------------------------------------------------------------
@pytest.fixture(scope="module")
def consortium() -> tuple[SimulatedCA, dict[str, PartyIdentity]]:
    ca = SimulatedCA()
    return ca, {n: ca.issue(n) for n in ("bank", "payments")}


def _verify(ca: SimulatedCA, peer: str, identity: PartyIdentity) -> None:
    key = {"x25519": b"\x01" * 32}
    verify_keys(ca.verifier(), peer, "run-1", CHANNEL_PROTOCOL, "partner", key,
                sign_keys(identity, "run-1", CHANNEL_PROTOCOL, "partner", key))


def test_a_valid_member_signature_verifies(consortium) -> None:  # type: ignore[no-untyped-def]
    ca, ids = consortium
    _verify(ca, "payments", ids["payments"])


@pytest.mark.parametrize("case, reason", [
    ("another_ca", "unknown_ca"), ("expired", "expired"), ("not_yet_valid", "not_yet_valid"),
    ("other_name", "wrong_name"), ("coordinator_role", "wrong_role"), ("no_signing_usage", "bad_key_usage"),
])
def test_bad_certificates_are_refused_naming_the_peer(consortium, case: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    ca, ids = consortium
    now = dt.datetime.now(dt.UTC)
    identity = {
        "another_ca": lambda: SimulatedCA("elsewhere").issue("payments"),
        "expired": lambda: ca.issue("payments", not_before=now - dt.timedelta(days=3),
                                    not_after=now - dt.timedelta(days=1), reissue=True),
        "not_yet_valid": lambda: ca.issue("payments", not_before=now + dt.timedelta(days=1),
                                          not_after=now + dt.timedelta(days=3), reissue=True),
        "other_name": lambda: ids["bank"],
        "coordinator_role": lambda: ca.issue("payments", "coordinator", reissue=True),
        "no_signing_usage": lambda: ca.issue("payments", digital_signature=False, reissue=True),
    }[case]()
    with pytest.raises(IdentityError, match=rf"peer 'payments' is not authenticated \({reason}\)") as caught:
        _verify(ca, "payments", identity)
    assert caught.value.peer == "payments" and caught.value.reason == reason


def test_a_revoked_certificate_is_refused() -> None:
    ca = SimulatedCA()
    payments = ca.issue("payments")
    _verify(ca, "payments", payments)
    ca.revoke(payments.certificate)
    with pytest.raises(IdentityError, match=r"peer 'payments' is not authenticated \(revoked\)"):
        _verify(ca, "payments", payments)


def test_a_stale_or_foreign_crl_is_refused(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from sampan.crypto.identity import IdentityVerifier

    ca, rogue = SimulatedCA(), SimulatedCA("rogue")
    (tmp_path / "ca.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "rogue.pem").write_bytes(rogue.crl().public_bytes(serialization.Encoding.PEM))
    with pytest.raises(IdentityError, match="bad_crl"):
        IdentityVerifier.from_files(tmp_path / "ca.pem", tmp_path / "rogue.pem")
    now = dt.datetime.now(dt.UTC)
    stale = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
             .last_update(now - dt.timedelta(days=3)).next_update(now - dt.timedelta(days=1))
             .sign(ca.key, hashes.SHA256()))
    (tmp_path / "stale.pem").write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(IdentityError, match="stale_crl"):
        IdentityVerifier.from_files(tmp_path / "ca.pem", tmp_path / "stale.pem")


# --- the deployed path: coordinator and party agents over gRPC with mutual TLS ----------------------
def _schema_dict(schema) -> dict:  # type: ignore[no-untyped-def]
    return {
        "id": schema.id_column,
        **({"label": schema.label_column} if schema.label_column else {}),
        "features": [
            {"name": f.name, "kind": f.kind, **({"categories": list(f.categories)} if f.categories else {})}
            for f in schema.features
        ],
    }


class _HonestRelay(KeySubstitutingRelay):
    """Records what passes, changes nothing: the control run."""

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for reply in self.inner.exchange(messages):
            self.kinds.append(reply.kind)
            if reply.kind == "vertical.hello":
                self.certificates[reply.sender] = np.ascontiguousarray(
                    reply.arrays["certificate"], dtype=np.uint8
                ).tobytes()
            yield reply


@pytest.mark.slow
@pytest.mark.parametrize("tamper", [True, False], ids=["substituting", "honest"])
def test_key_substitution_by_a_deployed_coordinator_fails_the_run_naming_the_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: bool
) -> None:
    """Agents sign with their own TLS certificate; the coordinator's tampering relay is caught at vertical.peers,
    while the same run through an honest relay completes (the agents' real certificates verify)."""
    from sampan.deploy.config import load_coordinator_config, load_party_config
    from sampan.deploy.coordinator import Coordinator
    from sampan.deploy.local import Binding, write_federation
    from sampan.deploy.party_agent import PartyAgent
    from sampan.transport.grpc_hub import Identity

    consortium = make_sme_consortium(1500, seed=21)
    paths = consortium.write_csv(tmp_path / "data", "vertical")
    names = ("bank", "payments")
    bindings = {n: {"vertical": Binding(str(paths[n]), _schema_dict(consortium.schema_for(n)))} for n in names}
    files = write_federation(
        tmp_path / "fed", bindings, allow={"bank": {"partners": ["payments"]}, "payments": {"partners": ["bank"]}}
    )
    coordinator = Coordinator(load_coordinator_config(files.coordinator_config))
    coordinator.start()
    relays: list[KeySubstitutingRelay] = []
    genuine = coordinator.hub.transport

    def tampering(*args, **kwargs):  # type: ignore[no-untyped-def]
        relays.append((KeySubstitutingRelay if tamper else _HonestRelay)(genuine(*args, **kwargs)))
        return relays[-1]

    monkeypatch.setattr(coordinator.hub, "transport", tampering)
    stop = threading.Event()
    agents = [PartyAgent(load_party_config(files.party_configs[n])) for n in names]
    threads = [threading.Thread(target=coordinator.serve, args=(stop,), daemon=True)]
    threads += [threading.Thread(target=a.serve, args=(stop,), daemon=True) for a in agents]
    for thread in threads:
        thread.start()
    operator = Identity("ops", "operator")
    try:
        assert coordinator.hub.wait_for(list(names), 30) == []
        run = {
            "run": {"name": "mitm", "seed": 3},
            "deploy": {"workflow": "vertical", "dataset": "vertical", "parties": list(names), "label_holder": "bank"},
            "vertical": {"epochs": 1, "batch_size": 256},
        }
        run_id = str(
            coordinator.submit(
                operator, Message("", 0, "ops", "coordinator", "deploy.submit", meta={"config": run})
            ).meta["run_id"]
        )
        deadline, status = time.monotonic() + 120, {}
        while time.monotonic() < deadline:
            status = coordinator.status(
                operator, Message("", 0, "ops", "coordinator", "s", meta={"run_id": run_id})
            ).meta
            if status["status"] in ("completed", "failed"):
                break
            time.sleep(0.1)
        (relay,) = relays
        for name in names:  # each agent signed with its organisation's own TLS certificate
            assert relay.certificates[name] == (files.root / name / f"{name}.crt").read_bytes()
        if not tamper:
            assert "vertical.ack" in relay.kinds and "psi.finish" in relay.kinds  # channels made, PSI ran on them
            assert status["status"] == "completed", status
            return
        assert status["status"] == "failed", status
        assert "vertical.peers" in status["error"] and "IdentityError" in status["error"]
        assert (
            "peer 'bank' is not authenticated" in status["error"]
            or "peer 'payments' is not authenticated" in status["error"]
        )
        assert relay.opened == []
    finally:
        stop.set()
        for agent in agents:
            if agent.link is not None:
                agent.link.close()
        for thread in threads:
            thread.join(5)
