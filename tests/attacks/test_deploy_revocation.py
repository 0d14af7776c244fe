"""Finding 17: revocation reaches live connections, and a stale CRL stops runs from starting.

On commit 1064fb2 the CRL was consulted only when a stream opened: a revoked member stayed connected and
joined a new run six seconds after the CRL was published. Now the coordinator watches the CRL (and the
CA's issuance record), re-checks every live stream when either changes and cuts the revoked ones
(their outstanding requests fail at once), re-checks everyone when a run starts, and refuses to start a
run on a CRL whose nextUpdate has passed. Real coordinator and party agents over gRPC on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _deploy_federation import ThreadFederation, run_config, wait_until

from sampan.deploy.certs import refresh_crl, revoke

pytestmark = pytest.mark.slow


def test_a_revoked_member_is_cut_mid_run_and_cannot_join_the_next_run(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, coordinator={"connect_timeout_s": 3})
    try:
        long_run = fed.submit(run_config("long", run={"name": "long", "rounds": 400, "seed": 3}))
        assert wait_until(lambda: fed.coordinator.status(*_status(long_run)).meta["round"] >= 1, 60)
        revoke(fed.files.ca_dir, cert_path=fed.files.root / "bank_lionrock" / "bank_lionrock.crt")

        status = fed.wait(long_run)
        assert status["status"] == "failed" and "revoked" in status["error"], status
        assert status["round"] < 400
        assert wait_until(lambda: "bank_lionrock" in fed.fatal)  # the agent was told why, and stopped retrying
        assert "revoked" in fed.fatal["bank_lionrock"]
        assert "bank_lionrock" not in fed.coordinator.hub.connected()

        next_run = fed.submit(run_config("next"))
        status = fed.wait(next_run)
        assert status["status"] == "failed" and "bank_lionrock" in status["error"], status
        assert fed.kinds("bank_lionrock", next_run) == []
        ok = fed.submit(run_config("without", deploy={"parties": ["bank_harbour", "bank_kowloon"]}))
        assert fed.wait(ok)["status"] == "completed"  # the others were never disturbed
    finally:
        fed.close()


def test_a_run_does_not_start_on_an_expired_crl(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path)
    try:
        refresh_crl(fed.files.ca_dir, days=-1 / 1440)  # nextUpdate a minute ago: revocations may be missing
        stale = fed.submit(run_config("stale"))
        status = fed.wait(stale)
        assert status["status"] == "failed" and "expired" in status["error"] and "CRL" in status["error"], status
        assert all(fed.kinds(p, stale) == [] for p in fed.agents)
        fed.coordinator.security.flush()
        kinds = [e.kind for e in fed.coordinator.store.events("security")]
        assert "crl_expired" in kinds
        refresh_crl(fed.files.ca_dir, days=30)
        assert fed.wait(fed.submit(run_config("fresh")))["status"] == "completed"
    finally:
        fed.close()


def _status(run_id: str):  # type: ignore[no-untyped-def]
    from _deploy_federation import OPERATOR

    from sampan.wire import Message

    return OPERATOR, Message("", 0, "ops", "coordinator", "s", meta={"run_id": run_id})



# --- adversarial review R4: the watcher's "changed" signal, and rollback of the CRL / issuance record -------
def test_revoked_stream_is_cut_even_if_another_member_connected_before_the_watcher_ran(tmp_path: Path) -> None:
    """Every certificate check re-reads the CRL; the watcher compares load generations, so a connection
    attempt between publication and the watcher's tick no longer hides the change from it."""
    import time

    from sampan.deploy.certs import revoke as revoke_cert

    fed = ThreadFederation(tmp_path, coordinator={"crl_check_s": 3600})  # the watcher tick is driven by hand
    try:
        assert "bank_lionrock" in fed.coordinator.hub.connected()
        revoke_cert(fed.files.ca_dir, cert_path=fed.files.root / "bank_lionrock" / "bank_lionrock.crt")
        other = fed.files.root / "bank_harbour" / "bank_harbour.crt"
        fed.coordinator.authenticator.authenticate(other.read_bytes(), "ipv4:127.0.0.1:4242")  # loads the new CRL
        cut = fed.coordinator.check_revocations()
        time.sleep(1.0)
        assert "bank_lionrock" in cut and "bank_lionrock" not in fed.coordinator.hub.connected()
    finally:
        fed.close()


def _member(tmp: Path, ca, name: str, who: str, **kw):  # type: ignore[no-untyped-def]
    from sampan.deploy.certs import create_request, load_cert, sign_request

    _, csr = create_request(name, "party", tmp / who)
    return load_cert(sign_request(csr, ca.directory, **kw))


def test_an_older_signed_crl_put_back_does_not_unrevoke(tmp_path: Path) -> None:
    """CRLs carry a CRLNumber; the coordinator keeps the highest accepted (in its state folder, so a restart
    keeps it too) and refuses a lower one."""
    from sampan.deploy.certs import CertificateAuthenticator, init_ca, spki_pin
    from sampan.transport.grpc_hub import AuthenticationError

    ca = init_ca(tmp_path / "ca")
    cert = _member(tmp_path, ca, "bank_c", "genuine")
    crl_copy = tmp_path / "coord" / "crl.pem"
    crl_copy.parent.mkdir(mode=0o700)
    old = ca.crl.read_bytes()                                          # the empty CRL, signed, valid 30 days
    crl_copy.write_bytes(old)
    state = tmp_path / "coord" / "state" / "high.json"

    def authenticator() -> CertificateAuthenticator:
        return CertificateAuthenticator(ca.cert, crl=crl_copy, members={"bank_c": "party"},
                                        pins={"bank_c": spki_pin(cert)}, state=state)  # pins isolate the CRL check

    auth = authenticator()
    assert auth.verify(cert).name == "bank_c"
    revoke(ca.directory, serial=format(cert.serial_number, "x"))
    crl_copy.write_bytes(ca.crl.read_bytes())
    with pytest.raises(AuthenticationError, match="revoked"):
        auth.verify(cert)                                              # the coordinator has seen the revocation
    crl_copy.write_bytes(old)                                          # rollback to the older signed CRL
    with pytest.raises(AuthenticationError, match="below the number"):
        auth.verify(cert)
    with pytest.raises(AuthenticationError, match="below the number"):
        authenticator().verify(cert)                                   # a restarted coordinator refuses it too


def test_the_issuance_record_rolled_back_to_before_a_rekey_is_refused(tmp_path: Path) -> None:
    """issued.json carries a signed, increasing generation: the record (and CRL) from before a `--rekey`,
    both still validly signed, cannot re-admit the superseded (stolen) key."""
    import shutil

    from sampan.deploy.certs import CertificateAuthenticator, init_ca
    from sampan.transport.grpc_hub import AuthenticationError

    ca = init_ca(tmp_path / "ca")
    old_cert = _member(tmp_path, ca, "bank_c", "old")
    snap, coord = tmp_path / "snapshot", tmp_path / "coord"
    snap.mkdir()
    coord.mkdir()
    for folder in (snap, coord):
        shutil.copy(ca.index, folder / "issued.json")
        shutil.copy(ca.crl, folder / "crl.pem")
    auth = CertificateAuthenticator(ca.cert, crl=coord / "crl.pem", members={"bank_c": "party"},
                                    issued=coord / "issued.json")
    _member(tmp_path, ca, "bank_c", "new", rekey=True)                 # stolen key -> rekey
    shutil.copy(ca.index, coord / "issued.json")
    shutil.copy(ca.crl, coord / "crl.pem")
    auth.refresh()
    with pytest.raises(AuthenticationError):
        auth.verify(old_cert)
    shutil.copy(snap / "issued.json", coord / "issued.json")           # both still validly signed
    with pytest.raises(AuthenticationError, match="issued_rollback|below the generation"):
        auth.refresh()
    shutil.copy(snap / "crl.pem", coord / "crl.pem")
    with pytest.raises(AuthenticationError):
        auth.verify(old_cert)


def test_a_party_refuses_an_older_crl_for_its_peers_keys(tmp_path: Path) -> None:
    """The party side (`IdentityVerifier`, used for vertical and SecAgg run keys) keeps the highest CRL number
    in its state folder and refuses an older list."""
    from cryptography.hazmat.primitives import serialization

    from sampan.crypto.identity import IdentityError, IdentityVerifier
    from sampan.deploy.certs import init_ca

    ca = init_ca(tmp_path / "ca")
    cert = _member(tmp_path, ca, "bank_c", "genuine")
    crl = tmp_path / "party" / "crl.pem"
    crl.parent.mkdir(mode=0o700)
    old = ca.crl.read_bytes()
    revoke(ca.directory, serial=format(cert.serial_number, "x"))
    crl.write_bytes(ca.crl.read_bytes())
    state = tmp_path / "party" / "state" / "high.json"
    verifier = IdentityVerifier.from_files(ca.cert, crl, state=state)
    with pytest.raises(IdentityError, match="revoked"):
        verifier.check("bank_c", cert.public_bytes(serialization.Encoding.PEM))
    crl.write_bytes(old)
    with pytest.raises(IdentityError, match="crl_rollback"):
        IdentityVerifier.from_files(ca.cert, crl, state=state)         # the next run's verifier, same state


def test_a_revocation_published_between_the_certificate_check_and_hello_is_not_missed(tmp_path: Path) -> None:
    """The certificate is checked before HELLO; a revocation (and the watcher's pass) landing in between found
    no live stream to cut, and the stream then went live with the revoked certificate. The hub now checks the
    certificate again after HELLO."""
    import threading

    from sampan.deploy.certs import revoke as revoke_cert

    fed = ThreadFederation(tmp_path, start=False, coordinator={"crl_check_s": 3600})  # watcher driven by hand
    real = fed.coordinator.hub.authenticator
    fired: list[bool] = []
    lock = threading.Lock()

    class RevokeAfterFirstCheck:
        """Passes bank_lionrock's first check, then the CA revokes it and the watcher runs, before HELLO."""

        def authenticate(self, pem, peer):  # type: ignore[no-untyped-def]
            identity = real.authenticate(pem, peer)
            with lock:
                first = identity.name == "bank_lionrock" and not fired
                fired.append(True) if first else None
            if first:
                revoke_cert(fed.files.ca_dir, cert_path=fed.files.root / "bank_lionrock" / "bank_lionrock.crt")
                fed.coordinator.check_revocations()  # the watcher's tick: nothing live to cut yet
            return identity

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(real, name)

    fed.coordinator.hub.authenticator = RevokeAfterFirstCheck()  # type: ignore[assignment]
    try:
        fed.coordinator.start()
        fed.threads.append(threading.Thread(target=fed.coordinator.serve, args=(fed.stop,), daemon=True))
        for name, agent in fed.agents.items():
            fed.threads.append(threading.Thread(target=fed._serve, args=(name, agent), daemon=True))
        for t in fed.threads:
            t.start()
        hub = fed.coordinator.hub
        assert wait_until(lambda: fired and "revoked" in hub.last_refusal.get("bank_lionrock", ""), 30), \
            hub.last_refusal
        assert wait_until(lambda: "bank_harbour" in hub.connected(), 30)
        assert "bank_lionrock" not in hub.connected()
    finally:
        fed.close()
