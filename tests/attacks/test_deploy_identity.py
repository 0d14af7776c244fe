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

from sampan.cli_deploy import certs_app
from sampan.deploy.certs import (
    CertError, CertificateAuthenticator, create_request, init_ca, load_cert, sign_request, spki_pin,
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
