"""An organisation key held in a PKCS#11 token (SoftHSM2): made in the token, its CSR signed by the consortium CA,
its signatures (run keys, approvals) accepted by the ordinary verifier; clear errors; party.toml [hsm] and the CLI.
The attacks (extracting the key, using the signing certificate for TLS): tests/attacks/test_hsm_key.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

pkcs11 = pytest.importorskip("pkcs11")

from _softhsm import PIN, TOKEN, softhsm_token  # noqa: E402
from _softhsm import consortium as build_consortium  # noqa: E402

from sampan.crypto.hsm import HsmError, HsmIdentity, Pkcs11Key, generate_key  # noqa: E402
from sampan.crypto.identity import IdentityError, sign_keys, verify_keys  # noqa: E402
from sampan.deploy.identity_source import HsmSection, load_identity  # noqa: E402


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    with softhsm_token(tmp_path_factory.mktemp("softhsm")) as module:
        yield build_consortium(module, tmp_path_factory.mktemp("consortium"))


def _key(module: str, label: str, pin: str = PIN) -> Pkcs11Key:
    return Pkcs11Key(module, TOKEN, label, pin)


def test_hsm_signatures_verify_with_the_ordinary_verifier(consortium: SimpleNamespace) -> None:
    identity = HsmIdentity(consortium.key, consortium.signing_cert.read_bytes())
    try:
        assert (identity.name, identity.role) == ("bank_a", "party")
        keys = {"x25519": os.urandom(32)}
        signed = sign_keys(identity, "run-1", "vertical.channels", "label_holder", keys)
        verify_keys(consortium.verifier, "bank_a", "run-1", "vertical.channels", "label_holder", keys, signed)
        with pytest.raises(IdentityError, match="bad_signature"):  # a substituted key is refused as before
            verify_keys(consortium.verifier, "bank_a", "run-1", "vertical.channels", "label_holder",
                        {"x25519": os.urandom(32)}, signed)
    finally:
        identity.close()


def test_an_approval_signed_in_the_token_verifies(consortium: SimpleNamespace) -> None:
    from sampan.deploy.consent.approval import ConsentRefused, sign_approval, verify_approval
    from sampan.deploy.consent.spec import JobSpec

    spec = JobSpec.model_validate({"job_id": "job-7", "workflow": "horizontal", "code_version": "1",
                                   "parties": ["bank_a"], "data": {"bank_a": {"dataset": "sme", "columns": ["x"]}},
                                   "job": {}, "config_sha256": "0" * 64})
    identity = HsmIdentity(consortium.key, consortium.signing_cert.read_bytes())
    try:
        approval = sign_approval(identity, spec, party="bank_a", decided_by="person:ops@bank_a",
                                 reserved={"epsilon": 0.5, "delta": 1e-6})
    finally:
        identity.close()
    assert verify_approval(approval, spec, consortium.verifier).party == "bank_a"
    other = JobSpec.model_validate({**spec.model_dump(mode="json"),
                                    "data": {"bank_a": {"dataset": "sme", "columns": ["x", "y"]}}})
    with pytest.raises(ConsentRefused):  # one more column: the approval does not cover it
        verify_approval(approval, other, consortium.verifier)


def test_clear_errors(consortium: SimpleNamespace) -> None:
    with pytest.raises(HsmError, match="PIN is wrong"):
        HsmIdentity(_key(consortium.key.module, "bank_a-org", pin="0000-0000"), consortium.signing_cert.read_bytes())
    with pytest.raises(HsmError, match="no token labelled"):
        HsmIdentity(Pkcs11Key(consortium.key.module, "no-such-token", "k", PIN), consortium.signing_cert.read_bytes())
    with pytest.raises(HsmError, match="already holds"):
        generate_key(consortium.key)
    with pytest.raises(HsmError, match="cannot load the PKCS#11 module"):
        HsmIdentity(Pkcs11Key("/nonexistent/libpkcs11.so", TOKEN, "k", PIN), consortium.signing_cert.read_bytes())
    with pytest.raises(IdentityError, match="does not belong"):  # the token's key with another key's certificate
        HsmIdentity(consortium.key, consortium.tls_cert.read_bytes())
    assert PIN not in repr(consortium.key)


def test_party_toml_hsm_section_and_load_identity(consortium: SimpleNamespace, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from sampan.errors import ConfigError

    with pytest.raises(ValidationError, match="pin"):  # the PIN itself never goes in party.toml
        HsmSection.model_validate({"module": consortium.key.module, "token_label": TOKEN, "key_label": "k",
                                   "pin": PIN})
    pin_file = tmp_path / "hsm.pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o644)
    section = HsmSection(module=consortium.key.module, token_label=TOKEN, key_label="bank_a-org",
                         certificate=str(consortium.signing_cert), pin_file=str(pin_file))
    config = SimpleNamespace(party=SimpleNamespace(name="bank_a"), tls=None, hsm=section)
    with pytest.raises(ConfigError, match="readable by others|chmod"):
        load_identity(config)
    pin_file.chmod(0o600)
    identity = load_identity(config)
    try:
        assert isinstance(identity, HsmIdentity) and identity.name == "bank_a"
    finally:
        identity.close()
    monkeypatch.setenv("BANK_A_HSM_PIN", PIN)
    by_env = section.model_copy(update={"pin_file": None, "pin_env": "BANK_A_HSM_PIN"})
    identity = load_identity(SimpleNamespace(party=SimpleNamespace(name="bank_a"), tls=None, hsm=by_env))
    identity.close()
    with pytest.raises(ConfigError, match="issued to 'bank_a'"):
        load_identity(SimpleNamespace(party=SimpleNamespace(name="bank_b"), tls=None, hsm=section))


def test_cli_hsm_keygen_and_signing_only(consortium: SimpleNamespace, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sampan.cli import app

    monkeypatch.setenv("SAMPAN_HSM_PIN", PIN)
    runner = CliRunner()
    out = runner.invoke(app, ["certs", "hsm-keygen", "bank_c", "--module", consortium.key.module, "--token-label",
                              TOKEN, "--key-label", "bank_c-org", "--dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    csr = tmp_path / "bank_c-signing.csr"
    signed = runner.invoke(app, ["certs", "sign", str(csr), "--ca-dir", str(consortium.ca.directory),
                                 "--signing-only"])
    assert signed.exit_code == 0, signed.output
    identity = HsmIdentity(_key(consortium.key.module, "bank_c-org"), csr.with_suffix(".crt").read_bytes())
    try:
        payload = b"approve job 7"
        consortium.verifier.verify("bank_c", identity.certificate_pem, payload, identity.sign(payload))
    finally:
        identity.close()
    again = runner.invoke(app, ["certs", "hsm-keygen", "bank_c", "--module", consortium.key.module, "--token-label",
                                TOKEN, "--key-label", "bank_c-org", "--dir", str(tmp_path / "x")])
    assert again.exit_code != 0 and "already holds" in again.output and "Traceback" not in again.output


def test_party_agent_signs_with_the_hsm_key(consortium: SimpleNamespace, tmp_path: Path) -> None:
    """party.toml with [hsm]: the agent's run-key identity and its consent desk's signer are the token's key."""
    from sampan.deploy.config import load_party_config
    from sampan.deploy.party_agent import PartyAgent

    pin_file = tmp_path / "hsm.pin"
    pin_file.write_text(PIN)
    pin_file.chmod(0o600)
    ca = consortium.ca
    key_file = consortium.base / "bank_a" / "bank_a.key"
    (tmp_path / "party.toml").write_text(f"""
[party]
name = "bank_a"
coordinator = "127.0.0.1:7443"
state_dir = "state"
[tls]
ca = "{ca.cert}"
cert = "{consortium.tls_cert}"
key = "{key_file}"
crl = "{ca.crl}"
[hsm]
module = "{consortium.key.module}"
token_label = "{TOKEN}"
key_label = "bank_a-org"
certificate = "{consortium.signing_cert}"
pin_file = "hsm.pin"
[data.sme]
path = "sme.csv"
[data.sme.schema]
id = "id"
label = "default"
""")
    agent = PartyAgent(load_party_config(tmp_path / "party.toml"))
    identity, verifier = agent._keys()
    signer = agent.consent._signer()
    try:
        assert isinstance(identity, HsmIdentity) and isinstance(signer, HsmIdentity)
        payload = b"run keys of run-9"
        verifier.verify("bank_a", identity.certificate_pem, payload, identity.sign(payload))
        verifier.verify("bank_a", signer.certificate_pem, payload, signer.sign(payload))
    finally:
        identity.close()
        signer.close()
