"""Finding 5, adversarial review R1: six ways around the signed per-run keys, each now closed.

The reviewer attacked the per-run key authentication (tests/attacks/test_key_substitution.py) and found:
R1-1 one process-wide simulated CA that issued any name to any caller, which in-process horizontal runs and
synth SecAgg trusted; R1-2 party agents without a CRL silently skipping revocation; R1-3 an expired CA still
trusted; R1-4 a CRL that goes stale after it was read still used; R1-5 a new CRL copied with the old mtime
ignored; R1-6 the signed protocol role never enforced (a partner signing as label holder was accepted, and
handlers trusted the coordinator's word for who "the bank" is). Each test below performs the attack
through the public classes and fails on commit 1064fb2 + H4's finding-5 work (the reviewed code).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _horizontal_run import run_workflow
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import sampan.crypto.identity as identity_module
from sampan.config import parse_config
from sampan.crypto.channel import PartyKeys
from sampan.crypto.identity import (
    IdentityError,
    IdentityVerifier,
    PartyIdentity,
    SimulatedCA,
    sign_keys,
    simulated_consortium,
    verify_keys,
)
from sampan.data import PartyData, make_sme_consortium
from sampan.horizontal.simulation import PartySplit
from sampan.horizontal.workflow import FederationError
from sampan.privacy.secagg import SecAggClient
from sampan.runtime.federation import build_inprocess_vertical, build_party_apps
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.session import VerticalSession
from sampan.wire import Message

RUN = "r1"


# --- R1-1: no process-wide CA to mint a victim's certificate --------------------------------------------------
def _mint(name: str) -> tuple[PartyIdentity, IdentityVerifier]:
    """The best certificate for `name` any code in the process can get without a member's or the run's CA key.

    On the reviewed code that was `simulated_identity(name)`, from the CA every in-process party trusted.
    """
    minted = getattr(identity_module, "simulated_identity", None)
    if minted is not None:  # the reviewed code (the attack then succeeds)
        return minted(name), identity_module.simulated_verifier()  # type: ignore[attr-defined]
    verifier, identities = simulated_consortium([name])
    return identities[name], verifier


def test_an_inprocess_federation_refuses_secagg_keys_signed_by_a_certificate_minted_in_the_same_process(
        tmp_path: Path) -> None:
    """The in-process coordinator replaces bank_2's advertised SecAgg keys with an impostor's, signed by a freshly
    minted certificate for 'bank_2'. The other parties must refuse before sealing any share to the impostor."""
    rng = np.random.default_rng(2)
    features = ["a", "b"]

    def data(name: str, n: int) -> PartyData:
        X = rng.normal(size=(n, 2))
        return PartyData(party=name, ids=np.array([f"{name}{i}" for i in range(n)], dtype=object), X=X,
                         y=(X[:, 0] > 0).astype(np.int8), feature_names=features)

    apps = build_party_apps({f"bank_{i}": PartySplit(data(f"bank_{i}", 60), data(f"bank_{i}", 20)) for i in range(4)})
    transport = InProcessTransport(apps)
    impostor_identity, impostor_verifier = _mint("bank_2")
    impostor = SecAggClient("bank_2", identity=impostor_identity, verifier=impostor_verifier)
    original = transport.exchange

    def exchange(messages: Iterable[Message]) -> Iterator[Message]:  # the coordinator's relay
        requests = list(messages)
        labels = {m.recipient: str(m.meta["label"]) for m in requests if m.kind == "secagg_keys"}
        for reply in original(requests):
            if reply.kind == "secagg_keys" and reply.sender == "bank_2" and not reply.is_error:
                arrays = impostor.advertise(reply.run_id, labels["bank_2"])
                reply = Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, arrays, reply.meta)
            yield reply

    transport.exchange = exchange  # type: ignore[method-assign]
    config = parse_config({"run": {"name": "mint", "rounds": 1, "seed": 1},
                           "schema": {"id": "id", "label": "y", "features": features},
                           "parties": [{"name": "placeholder", "path": "unused.csv"}], "secure_aggregation": {}})
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = store.create_run(name="mint", workflow="horizontal", seed=1, config=config.to_dict(), total_rounds=1)
    with pytest.raises(FederationError, match="secure aggregation failed"):
        run_workflow(transport, store, run_id, config, 1)
    failed = [e.detail for e in store.events(run_id) if e.kind == "secagg_round_failed"]
    assert failed and "peer 'bank_2' is not authenticated (unknown_ca)" in failed[0]["failed"]["bank_0"], failed
    assert not [e for e in store.events(run_id) if e.kind == "secagg_round"]  # nothing was aggregated
    store.close()


def test_there_is_no_default_identity_and_a_simulated_ca_issues_one_certificate_per_name() -> None:
    """Every SecAgg or vertical party is given its identity and verifier; a simulated CA does not re-issue a name."""
    from sampan.vertical.party import VerticalParty

    with pytest.raises(TypeError):
        SecAggClient("bank")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        VerticalParty(make_sme_consortium(300, seed=1).vertical["bank"])  # type: ignore[call-arg]
    ca = SimulatedCA()
    ca.issue("bank")
    with pytest.raises(ValueError, match="already issued"):
        ca.issue("bank")


# --- R1-2: a party agent without a CRL joins no vertical or SecAgg run -------------------------------------------
def test_a_party_agent_without_a_crl_refuses_vertical_and_secagg_runs(tmp_path: Path) -> None:
    """Without `tls.crl` the agent would accept the keys of a revoked (stolen) member certificate that the
    coordinator re-signs with; it now refuses to open such a run, naming the missing setting."""
    from _consent_grant import open_with_consent
    from _deploy_federation import schema_dict

    from sampan.deploy.config import load_party_config
    from sampan.deploy.local import Binding, write_federation
    from sampan.deploy.party_agent import PartyAgent

    def agent_without_crl(view: str, party: str, allow: dict[str, Any] | None = None) -> PartyAgent:
        consortium = make_sme_consortium(300, seed=4)
        paths = consortium.write_csv(tmp_path / view / "data", view)
        bindings = {n: {view: Binding(str(p), schema_dict(consortium.schema_for(n)))} for n, p in paths.items()}
        files = write_federation(tmp_path / view / "fed", bindings, allow=allow)
        config = load_party_config(files.party_configs[party])
        assert config.tls.crl  # write_federation gives every agent the CRL
        return PartyAgent(config.model_copy(update={"tls": config.tls.model_copy(update={"crl": None})}))

    def open_run(agent: PartyAgent, party: str, run_id: str, meta: dict[str, Any], protections: list[str]) -> Message:
        partners = ["payments", "delivery"] if party == "bank" else ["bank_kowloon", "bank_lionrock"]
        job = {"operator": "ops", "parties": [party, *partners], "protections": protections, "noise_multipliers": {}}
        if meta.get("workflow") == "vertical":
            job["label_holder"] = party  # a vertical job names its label holder (allow-list check before the CRL)
        opening = Message(run_id, 0, "coordinator", party, "deploy.open_run", meta={**meta, "job": job})
        return open_with_consent(agent, opening)

    bank = agent_without_crl("vertical", "bank", allow={"bank": {"partners": ["payments", "delivery"]}})
    reply = open_run(bank, "bank", "v1", {"workflow": "vertical", "dataset": "vertical"}, [])
    assert reply.is_error and "tls.crl is not set" in str(reply.meta.get("error")), reply.meta

    lender = agent_without_crl("horizontal", "bank_harbour")
    horizontal = {"workflow": "horizontal", "dataset": "horizontal", "test_fraction": 0.2, "split_seed": 1}
    reply = open_run(lender, "bank_harbour", "h1", horizontal, ["secure_aggregation"])
    assert reply.is_error and "tls.crl is not set" in str(reply.meta.get("error")), reply.meta
    assert not open_run(lender, "bank_harbour", "h2", horizontal, []).is_error  # no SecAgg: no CRL needed ...
    reply = lender.handle(Message("h2", 1, "coordinator", "bank_harbour", "secagg_keys", meta={"label": "h2/round-1"}))
    assert reply.is_error and "no secure aggregation" in str(reply.meta.get("error"))  # ... and none given (the job
    # announced none: refused by the job check, before the missing client would be)


# --- R1-3: the trust anchor's own validity --------------------------------------------------------------------
def _expired_ca() -> SimulatedCA:
    ca = SimulatedCA()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ca.certificate = (x509.CertificateBuilder().subject_name(ca.certificate.subject)
                      .issuer_name(ca.certificate.subject).public_key(ca.key.public_key())
                      .serial_number(x509.random_serial_number()).not_valid_before(past - dt.timedelta(days=30))
                      .not_valid_after(past).add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
                      .sign(ca.key, hashes.SHA256()))
    return ca


def _ca_file(tmp_path: Path, ca: SimulatedCA) -> Path:
    path = tmp_path / "ca.crt"
    path.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _signed(identity: PartyIdentity) -> tuple[dict[str, bytes], Any]:
    keys = {"x25519": PartyKeys.generate().public_bytes}
    return keys, sign_keys(identity, RUN, "vertical.channels", "label_holder", keys)


def test_an_expired_consortium_ca_vouches_for_nobody(tmp_path: Path) -> None:
    ca = _expired_ca()
    member = ca.issue("bank")
    keys, signed = _signed(member)
    with pytest.raises(IdentityError, match="ca_expired"):  # a deployment: refused when the run opens
        IdentityVerifier.from_files(_ca_file(tmp_path, ca), None)
    with pytest.raises(IdentityError, match=r"peer 'bank' is not authenticated \(ca_expired\)"):  # a held verifier
        verify_keys(IdentityVerifier(ca.certificate), "bank", RUN, "vertical.channels", "label_holder", keys, signed)


def test_a_member_certificate_outliving_its_ca_and_a_non_ca_anchor_are_refused() -> None:
    ca = SimulatedCA()
    long_lived = ca.issue("bank", not_after=ca.certificate.not_valid_after_utc + dt.timedelta(days=1))
    keys, signed = _signed(long_lived)
    with pytest.raises(IdentityError, match="outlives_ca"):
        verify_keys(ca.verifier(), "bank", RUN, "vertical.channels", "label_holder", keys, signed)
    member = SimulatedCA().issue("payments")
    with pytest.raises(IdentityError, match="bad_ca"):  # a member certificate as trust anchor
        IdentityVerifier(member.certificate)


# --- R1-4 / R1-5: the CRL, checked at every check -------------------------------------------------------------
def _crl(ca: SimulatedCA, revoked: list[int], next_update: dt.datetime) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(next_update))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_crl_that_goes_stale_during_a_run_stops_authenticating(tmp_path: Path) -> None:
    ca = SimulatedCA()
    member = ca.issue("bank")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(_crl(ca, [], dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)))
    verifier = IdentityVerifier.from_files(_ca_file(tmp_path, ca), crl)  # one verifier per run (party_agent)
    keys, signed = _signed(member)
    verify_keys(verifier, "bank", RUN, "vertical.channels", "label_holder", keys, signed)  # current: accepted
    time.sleep(2.0)
    with pytest.raises(IdentityError, match="stale_crl"):
        verify_keys(verifier, "bank", RUN, "vertical.channels", "label_holder", keys, signed)


def test_a_revocation_in_a_crl_copied_with_its_old_mtime_takes_effect(tmp_path: Path) -> None:
    """`cp -p`, `rsync -t` or `tar x` keep the old file's mtime: the verifier compares contents, not mtimes."""
    ca = SimulatedCA()
    member = ca.issue("bank")
    crl = tmp_path / "crl.pem"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    crl.write_bytes(_crl(ca, [], later))
    stamp = crl.stat().st_mtime_ns
    verifier = IdentityVerifier.from_files(_ca_file(tmp_path, ca), crl)
    keys, signed = _signed(member)
    verify_keys(verifier, "bank", RUN, "vertical.channels", "label_holder", keys, signed)  # not yet revoked
    crl.write_bytes(_crl(ca, [member.certificate.serial_number], later))
    os.utime(crl, ns=(stamp, stamp))
    with pytest.raises(IdentityError, match="revoked"):
        verify_keys(verifier, "bank", RUN, "vertical.channels", "label_holder", keys, signed)


# --- R1-6: the signed protocol role is enforced ---------------------------------------------------------------
def _peers_with_forged_label_holder(forger: str) -> tuple[dict[str, Any], str]:
    tables = make_sme_consortium(300, seed=3).vertical
    _, parties = build_inprocess_vertical(tables)
    rid = "role-1"
    hellos = {n: parties[n].hello(Message(rid, 0, "coordinator", n, "vertical.hello")) for n in tables}
    pub = np.ascontiguousarray(hellos[forger].arrays["public_key"], dtype=np.uint8).tobytes()
    forged = sign_keys(parties[forger].identity, rid, "vertical.channels", "label_holder", {"x25519": pub})
    arrays: dict[str, np.ndarray] = {}
    roles: dict[str, str] = {}
    for n, r in hellos.items():
        arrays[f"key:{n}"] = r.arrays["public_key"]
        signed = forged.to_arrays() if n == forger else {k: r.arrays[k] for k in ("certificate", "signature")}
        arrays.update({f"{n}/{k}": v for k, v in signed.items()})
        roles[n] = "label_holder" if n == forger else str(r.meta["role"])
    return {"parties": parties, "arrays": arrays, "roles": roles}, rid


@pytest.mark.parametrize("victim", ["bank", "delivery"])
def test_a_partner_signing_its_key_as_label_holder_is_refused_by_the_bank_and_the_other_partners(victim: str) -> None:
    """'payments' signs its own run key as label holder (with its genuine certificate). The real bank sees two
    label holders; the other partner sees two; both refuse before deriving any channel."""
    setup, rid = _peers_with_forged_label_holder("payments")
    party = setup["parties"][victim]
    with pytest.raises(ValueError, match="signed run keys as label holder"):
        party.peers(Message(rid, 1, "coordinator", victim, "vertical.peers", setup["arrays"],
                            {"roles": setup["roles"]}))
    assert party.channels is None


def test_handlers_take_the_bank_from_the_signed_roles_not_from_the_coordinator() -> None:
    """After an honest key exchange and alignment, the coordinator names 'payments' as the bank / label holder in
    WOE, GBDT, secure LR and PSI requests. On the reviewed code 'payments' then played the bank (kept its own
    bins, no permutation) and 'delivery' opened the alignment as if from the label holder."""
    tables = make_sme_consortium(300, seed=3).vertical
    transport, parties = build_inprocess_vertical(tables)
    session = VerticalSession(transport, label_holder="bank", partners=["payments", "delivery"], run_id="roles-2")
    session.connect()
    session.align()
    n = int(session.n_aligned or 0)
    train, val = np.arange(0, n // 2), np.arange(n // 2, n)
    seed = np.frombuffer(os.urandom(32), dtype=np.uint8)
    forged = {
        "woe.setup": ({"train_rows": train, "dealer_seed": seed}, {"bank": "payments", "fine_bins": 8}),
        "vgb.setup": ({"train_rows": train, "val_rows": val, "dealer_seed": seed}, {"bank": "payments", "n_bins": 8}),
        "vlr.setup": (
            {"train_rows": train, "val_rows": val, "dealer_seed": seed},
            {
                "bank": "payments",
                "helper": "delivery",
                "others": [],
                "instance": "x",
                "lr": 0.1,
                "l2": 0.0,
                "logit_clip": 8.0,
            },
        ),
    }
    for kind, (arrays, meta) in forged.items():
        reply = parties["payments"].app.handle(Message("roles-2", 9, "coordinator", "payments", kind, arrays, meta))
        assert reply.is_error and "proved that role" in str(reply.meta.get("error")), (kind, reply.meta)
    reply = parties["delivery"].app.handle(
        Message(
            "roles-2",
            9,
            "coordinator",
            "delivery",
            "psi.aligned",
            {"envelope": np.zeros(64, dtype=np.uint8)},
            {"label_holder": "payments"},
        )
    )
    assert reply.is_error and "proved that role" in str(reply.meta.get("error")), reply.meta


# --- minor: SecAgg m_min is fixed when a party shares, not taken from the coordinator at unmasking --------------
def test_secagg_m_min_recorded_at_sharing_cannot_be_lowered_at_unmasking(tmp_path: Path) -> None:
    """8 parties share under m_min = 5. The coordinator then names 4 survivors and claims m_min = 3 at
    unmasking; each party refuses on the count it recorded before anyone dropped (its neighbour-majority
    signature check is a second, independent line)."""
    from _secagg_coordinator import RUN as SECAGG_RUN
    from _secagg_coordinator import Consortium, drive, server

    from sampan.privacy.secagg import SecAggRefused
    from sampan.privacy.secagg.state import FileStateStore

    c = Consortium(8, tmp_path)
    srv = server(c)
    drive(srv, c, until="secagg_consistency")
    assert FileStateStore(tmp_path / "p0").load(srv.label).m_min == 5
    four = c.names[:4]
    requests = srv.consistency_requests()
    for party in four:
        arrays, meta = requests[party]
        c.call("secagg_consistency", party, arrays, {**meta, "survivors": four})
    own = {"c_pk": requests["p0"][0]["own.c_pk"], "s_pk": requests["p0"][0]["own.s_pk"]}
    with pytest.raises(SecAggRefused, match="4 survivors, at least 5 needed"):
        c.clients["p0"].unmask(SECAGG_RUN, srv.label, own, [], [], {}, four, {}, 3)
    assert FileStateStore(tmp_path / "p0").load(srv.label).revealed == {}


def test_the_coordinator_also_reads_a_crl_copied_with_its_old_mtime(tmp_path: Path) -> None:
    """R1-5 on the coordinator's side: its mTLS check of members must see a revocation in a CRL whose copy kept
    the old file's mtime (it cut nobody on the reviewed code)."""
    import shutil

    from sampan.deploy.certs import (
        CertificateAuthenticator,
        create_request,
        init_ca,
        load_cert,
        revoke,
        sign_request,
        spki_pin,
    )
    from sampan.transport.grpc_hub import AuthenticationError

    ca = init_ca(tmp_path / "ca")
    _, csr = create_request("bank", "party", tmp_path / "bank")
    cert_path = sign_request(csr, ca.directory)
    served = tmp_path / "coordinator" / "crl.pem"
    served.parent.mkdir()
    shutil.copy2(ca.crl, served)
    authenticator = CertificateAuthenticator(ca.cert, crl=served, pins={"bank": spki_pin(load_cert(cert_path))})
    assert authenticator.verify(load_cert(cert_path)).name == "bank"
    stamp = served.stat().st_mtime_ns
    revoke(ca.directory, cert_path=cert_path)
    shutil.copyfile(ca.crl, served)
    os.utime(served, ns=(stamp, stamp))  # `cp -p` / `rsync -t` of a list made within the same mtime tick
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticator.verify(load_cert(cert_path))
