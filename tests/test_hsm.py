"""An organisation key held in a PKCS#11 token (SoftHSM2): made in the token, its CSR signed by the consortium CA,
its signatures (run keys, approvals) accepted by the ordinary verifier, and the private key never extractable."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

pkcs11 = pytest.importorskip("pkcs11")

from sampan.crypto.hsm import HsmError, HsmIdentity, Pkcs11Key, generate_key, open_session  # noqa: E402
from sampan.crypto.identity import IdentityError, IdentityVerifier, sign_keys, verify_keys  # noqa: E402
from sampan.deploy.certs import create_request, init_ca, load_cert, sign_request  # noqa: E402
from sampan.deploy.hsm_request import create_hsm_request  # noqa: E402
from sampan.deploy.identity_source import HsmSection, load_identity  # noqa: E402

PIN, SO_PIN, TOKEN = "2468-1357", "9753-8642", "sampan-test"
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
           "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token in a temporary folder (SOFTHSM2_CONF); the module path."""
    module = next((m for m in MODULES if os.path.exists(m)), None)
    if module is None or shutil.which("softhsm2-util") is None:  # make test installs it (tools/install_system_deps.sh)
        pytest.fail("SoftHSM2 is not installed: run `make test` (it installs softhsm2) or apt-get install softhsm2")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
                       check=True, capture_output=True, timeout=60)
        lib = pkcs11.lib(module)
        lib.reinitialize()  # a library loaded earlier in this process would still read another configuration
        yield module


def _key(module: str, label: str, pin: str = PIN) -> Pkcs11Key:
    return Pkcs11Key(module, TOKEN, label, pin)


@pytest.fixture(scope="module")
def consortium(softhsm: str, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A CA; bank_a with an ordinary TLS certificate AND a signing certificate for a key in the token."""
    base = tmp_path_factory.mktemp("consortium")
    ca = init_ca(base / "ca")
    _, tls_csr = create_request("bank_a", "party", base / "bank_a")
    tls_cert = sign_request(tls_csr, ca.directory)
    key = _key(softhsm, "bank_a-org")
    csr = create_hsm_request(key, "bank_a", "party", base / "bank_a", organisation="Bank A")
    signing_cert = sign_request(csr, ca.directory, signing_only=True)
    return SimpleNamespace(base=base, ca=ca, key=key, tls_cert=tls_cert, signing_cert=signing_cert,
                           verifier=IdentityVerifier(load_cert(ca.cert)))


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


def test_the_signing_certificate_is_for_signatures_only(consortium: SimpleNamespace) -> None:
    """Beside the TLS certificate (no clash in the issuance record), but never accepted as a TLS identity."""
    from cryptography import x509

    from sampan.deploy.cert_checks import AuthenticationError, IssuedRecord, spki_pin

    cert = load_cert(consortium.signing_cert)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in usages] == ["1.3.6.1.5.5.7.3.36"]  # documentSigning: not clientAuth
    record = IssuedRecord(consortium.ca.index, load_cert(consortium.ca.cert))
    tls = load_cert(consortium.tls_cert)
    record.check(tls, "bank_a", spki_pin(tls))  # the TLS key is still the name's one pin
    with pytest.raises(AuthenticationError, match="signing-only"):
        record.check(cert, "bank_a", spki_pin(cert))
    # a second signing key for the name is refused as a second TLS key is
    other = create_hsm_request(_key(consortium.key.module, "bank_a-other"), "bank_a", "party",
                               consortium.base / "other")
    from sampan.deploy.certs import CertError

    with pytest.raises(CertError, match="another key"):
        sign_request(other, consortium.ca.directory, signing_only=True)


def test_private_key_cannot_be_extracted(consortium: SimpleNamespace) -> None:
    """ATTACK: a process logged into the token tries every PKCS#11 way to get the private value out."""
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

    with open_session(consortium.key, rw=True) as session:  # logged in with the PIN: the strongest local attacker
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label="bank_a-org")
        assert private[Attribute.SENSITIVE] is True and private[Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.AttributeSensitive):
            private[Attribute.VALUE]  # noqa: B018 - reading the private scalar
        for attribute, value in ((Attribute.EXTRACTABLE, True), (Attribute.SENSITIVE, False)):
            with pytest.raises(pkcs11.PKCS11Error):  # the flags cannot be turned back
                private[attribute] = value
        wrapping = session.generate_key(KeyType.AES, 256, label="attacker-wrap", store=False,
                                        template={Attribute.WRAP: True, Attribute.EXTRACTABLE: True})
        with pytest.raises(pkcs11.PKCS11Error):  # wrapping it out under a key the attacker knows
            wrapping.wrap_key(private, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        with pytest.raises(pkcs11.PKCS11Error):  # a copy that would be extractable
            private.copy({Attribute.EXTRACTABLE: True, Attribute.LABEL: "copy"})
        assert private[Attribute.NEVER_EXTRACTABLE] is True and private[Attribute.LOCAL] is True


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
