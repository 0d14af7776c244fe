"""Finding 16: a newcomer's identity can no longer be hijacked.

On commit 1064fb2 `certs sign` signed a second certificate for an existing name without a word, and the
coordinator pinned whichever key connected first: an impostor signed first was welcomed and the genuine
member refused. Now the CA refuses a second key for a name unless the operator re-keys deliberately
(`--rekey`, which revokes the old certificate), the coordinator takes its pins from the CA's signed
issuance record (never from first use), and `sampan certs repin` moves an explicit pin after a
legitimate re-key.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from sampan.cli.deploy import certs_app
from sampan.deploy.certs import (
    CertError,
    CertificateAuthenticator,
    create_request,
    init_ca,
    load_cert,
    sign_request,
    spki_pin,
)
from sampan.deploy.config import load_coordinator_config
from sampan.deploy.local import write_federation
from sampan.transport.grpc_hub import AuthenticationError

runner = CliRunner()


def test_the_ca_refuses_an_impostors_csr_for_an_existing_members_name(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert runner.invoke(certs_app, ["init", "--dir", str(ca)]).exit_code == 0
    for who in ("genuine", "impostor"):
        result = runner.invoke(certs_app, ["request", "bank_c", "--dir", str(tmp_path / who)])
        assert result.exit_code == 0, result.output
    genuine = runner.invoke(certs_app, ["sign", str(tmp_path / "genuine" / "bank_c.csr"), "--ca-dir", str(ca)])
    assert genuine.exit_code == 0, genuine.output
    impostor = runner.invoke(certs_app, ["sign", str(tmp_path / "impostor" / "bank_c.csr"), "--ca-dir", str(ca)])
    assert impostor.exit_code == 2 and "already issued 'bank_c' to another key" in impostor.output, impostor.output
    assert not (tmp_path / "impostor" / "bank_c.crt").exists()
    # Renewing the same key needs no flag; it is the same member.
    again = sign_request(tmp_path / "genuine" / "bank_c.csr", ca, out=tmp_path / "genuine" / "renewed.crt")
    assert load_cert(again).public_key() == load_cert(tmp_path / "genuine" / "bank_c.crt").public_key()


def test_an_impostor_signed_first_no_longer_wins_the_pin(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    members = {"bank_c": "party"}
    # The coordinator has no CRL copy at all: the pins alone must decide.
    auth = CertificateAuthenticator(ca.cert, members=members, pins_file=tmp_path / "state" / "pins.json",
                                    issued=ca.index)
    _, csr = create_request("bank_c", "party", tmp_path / "impostor")
    impostor = load_cert(sign_request(csr, ca.directory))          # signed first, by mistake
    assert auth.verify(impostor).name == "bank_c"                    # ... and connects first
    _, csr = create_request("bank_c", "party", tmp_path / "genuine")
    with pytest.raises(CertError, match="another key"):
        sign_request(csr, ca.directory)
    genuine = load_cert(sign_request(csr, ca.directory, rekey=True))  # the CA operator re-keys to the real member
    assert auth.verify(genuine).name == "bank_c"                     # the genuine member is welcomed
    with pytest.raises(AuthenticationError) as refused:
        auth.verify(impostor)                                        # the impostor is out, CRL or not
    assert refused.value.code == "revoked"
    crl = x509.load_pem_x509_crl(ca.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(impostor.serial_number) is not None
    assert not (tmp_path / "state" / "pins.json").exists()          # nothing was pinned on first use
    # A pins.json that an older version filled on first use (with the impostor's key) is not trusted either.
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "pins.json").write_text(json.dumps({"bank_c": spki_pin(impostor)}))
    assert auth.verify(genuine).name == "bank_c"


def test_an_edited_issuance_record_is_refused(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    _, csr = create_request("bank_c", "party", tmp_path / "genuine")
    genuine = load_cert(sign_request(csr, ca.directory))
    _, csr = create_request("bank_x", "party", tmp_path / "impostor")
    impostor = load_cert(sign_request(csr, ca.directory))
    record = json.loads(ca.index.read_text())
    serial = format(impostor.serial_number, "x")
    record["entries"][serial]["name"] = "bank_c"  # whoever can write the coordinator's copy tries to re-point it
    record["entries"] = {k: v for k, v in record["entries"].items() if k != format(genuine.serial_number, "x")}
    ca.index.write_text(json.dumps(record))
    auth = CertificateAuthenticator(ca.cert, members={"bank_c": "party"}, issued=ca.index)
    with pytest.raises(AuthenticationError) as refused:
        auth.verify(genuine)
    assert refused.value.code == "bad_issued"


def test_a_legitimate_rekey_is_repinned_deliberately(tmp_path: Path) -> None:
    files = write_federation(tmp_path / "fed", {"bank_c": {}})
    config = load_coordinator_config(files.coordinator_config)
    pins = Path(config.coordinator.state_dir) / "pins.json"
    old = load_cert(tmp_path / "fed" / "bank_c" / "bank_c.crt")
    # The coordinator operator fixed bank_c's key explicitly (e.g. after an earlier incident).
    pins.parent.mkdir(parents=True, exist_ok=True)
    auth_args = dict(crl=config.tls.crl, members={"bank_c": "party"}, pins_file=pins, issued=config.tls.issued)
    _, csr = create_request("bank_c", "party", tmp_path / "new-key")
    new = load_cert(sign_request(csr, files.ca_dir, rekey=True))
    result = runner.invoke(certs_app, ["repin", "bank_c", "--cert", str(tmp_path / "new-key" / "bank_c.crt"),
                                       "--config", str(files.coordinator_config)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(pins.stat().st_mode) == 0o600
    auth = CertificateAuthenticator(config.tls.ca, **auth_args)  # type: ignore[arg-type]
    assert auth.verify(new).name == "bank_c"
    with pytest.raises(AuthenticationError):
        auth.verify(old)
    stranger = init_ca(tmp_path / "other")
    _, csr = create_request("bank_c", "party", tmp_path / "stranger")
    foreign = sign_request(csr, stranger.directory)
    result = runner.invoke(certs_app, ["repin", "bank_c", "--cert", str(foreign), "--config",
                                       str(files.coordinator_config)])
    assert result.exit_code == 2 and "not issued by the consortium CA" in result.output


# --- adversarial review R4: names with a trailing newline, and the CA's lock ------------------------------
def _raw_csr(path: Path, cn: str, ou: str = "party") -> Path:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)]))
        .sign(key, hashes.SHA256()))
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


def test_the_ca_refuses_a_trailing_newline_variant_of_an_issued_name(tmp_path: Path) -> None:
    """'bank_c\\n' matched a '$'-anchored name pattern and escaped the duplicate-name refusal; names are
    now checked with fullmatch (CA and every certificate check)."""
    ca = init_ca(tmp_path / "ca")
    _, csr = create_request("bank_c", "party", tmp_path / "genuine")
    sign_request(csr, ca.directory)
    with pytest.raises(CertError, match="must be 1-64"):
        sign_request(_raw_csr(tmp_path / "evil.csr", "bank_c\n"), ca.directory)


def test_a_certificate_whose_name_has_a_trailing_newline_is_refused_by_peers() -> None:
    from sampan.crypto.identity import IdentityError, SimulatedCA

    with pytest.raises(IdentityError, match="not a Sampan member name"):
        SimulatedCA().issue("bank_c\n")  # even the holder's own identity refuses such a certificate


def test_a_case_variant_is_a_different_name_and_lookalikes_are_refused(tmp_path: Path) -> None:
    """'BANK_C' is signed, but names are compared exactly everywhere (members, pins, allow-lists)."""
    ca = init_ca(tmp_path / "ca")
    _, csr = create_request("bank_c", "party", tmp_path / "genuine")
    sign_request(csr, ca.directory)
    sign_request(_raw_csr(tmp_path / "case.csr", "BANK_C"), ca.directory)
    with pytest.raises(CertError):
        sign_request(_raw_csr(tmp_path / "uni.csr", "bank_\u0441"), ca.directory)  # Cyrillic 'с'


def test_a_revocation_during_a_signing_is_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sign_request` read issued.json, then loaded the CA key (a passphrase prompt), then wrote the record
    back: a `revoke` in between was lost (and the next CRL un-revoked it). The CA key is now loaded first
    and the record read and written under an exclusive lock on ca/.lock."""
    import sampan.deploy.certs as certs
    from sampan.deploy.certs import read_crl, refresh_crl, revoke

    ca = init_ca(tmp_path / "ca")
    _, csr = create_request("bank_a", "party", tmp_path / "a")
    stolen = load_cert(sign_request(csr, ca.directory))
    _, csr_b = create_request("bank_b", "party", tmp_path / "b")
    real = certs._load_key
    fired: list[bool] = []

    def slow_key(path, what="CA key"):  # type: ignore[no-untyped-def]
        if not fired:  # a colleague revokes the stolen key while this signing waits for the key
            fired.append(True)
            revoke(ca.directory, serial=format(stolen.serial_number, "x"))
        return real(path, what)

    monkeypatch.setattr(certs, "_load_key", slow_key)
    sign_request(csr_b, ca.directory)
    monkeypatch.setattr(certs, "_load_key", real)
    refresh_crl(ca.directory)  # routine nextUpdate refresh, from the record
    assert stolen.serial_number in {r.serial_number for r in read_crl(ca.crl, load_cert(ca.cert))}


def test_concurrent_signings_and_revocations_are_all_recorded(tmp_path: Path) -> None:
    """Threads signing and revoking at once: every issuance and every revocation ends up in the record and CRL."""
    import threading

    from sampan.deploy.certs import read_crl, revoke

    ca = init_ca(tmp_path / "ca")
    victims = []
    for i in range(4):
        _, csr = create_request(f"old_{i}", "party", tmp_path / f"o{i}")
        victims.append(load_cert(sign_request(csr, ca.directory)))
    csrs = [create_request(f"new_{i}", "party", tmp_path / f"n{i}")[1] for i in range(4)]
    jobs = [threading.Thread(target=sign_request, args=(c, ca.directory)) for c in csrs]
    jobs += [threading.Thread(target=revoke, args=(ca.directory,), kwargs={"serial": format(v.serial_number, "x")})
             for v in victims]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    record = json.loads(ca.index.read_text())
    names = {e["name"] for e in record["entries"].values()}
    assert {f"new_{i}" for i in range(4)} <= names
    revoked = {r.serial_number for r in read_crl(ca.crl, load_cert(ca.cert))}
    assert {v.serial_number for v in victims} <= revoked
    assert record["generation"] == 1 + 4 + 4 + 4  # init, 4 + 4 signings, 4 revocations: one step each
