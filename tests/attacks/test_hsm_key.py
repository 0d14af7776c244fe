"""ATTACKS on the HSM-held organisation key (sampan.crypto.hsm, SoftHSM2): a process logged into the token with
the PIN tries every PKCS#11 way to get the private key out; the signing-only certificate is presented as a TLS
identity; a second signing key is requested for the same member name."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

pkcs11 = pytest.importorskip("pkcs11")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _softhsm import PIN, TOKEN, softhsm_token  # noqa: E402
from _softhsm import consortium as build_consortium  # noqa: E402

from sampan.crypto.hsm import Pkcs11Key, open_session  # noqa: E402
from sampan.deploy.cert_checks import AuthenticationError, IssuedRecord, spki_pin  # noqa: E402
from sampan.deploy.certs import CertError, load_cert, sign_request  # noqa: E402
from sampan.deploy.hsm_request import create_hsm_request  # noqa: E402


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    with softhsm_token(tmp_path_factory.mktemp("softhsm")) as module:
        yield build_consortium(module, tmp_path_factory.mktemp("consortium"))


def test_private_key_cannot_be_extracted(consortium: SimpleNamespace) -> None:
    """A process logged into the token (the strongest local attacker short of the token itself)."""
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

    with open_session(consortium.key, rw=True) as session:
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


def test_signing_certificate_is_not_a_tls_identity(consortium: SimpleNamespace) -> None:
    """Beside the TLS certificate (no clash in the issuance record), but never accepted by the coordinator."""
    from cryptography import x509

    cert = load_cert(consortium.signing_cert)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in usages] == ["1.3.6.1.5.5.7.3.36"]  # documentSigning: not clientAuth
    record = IssuedRecord(consortium.ca.index, load_cert(consortium.ca.cert))
    tls = load_cert(consortium.tls_cert)
    record.check(tls, "bank_a", spki_pin(tls))  # the TLS key is still the name's one pin
    with pytest.raises(AuthenticationError, match="signing-only"):
        record.check(cert, "bank_a", spki_pin(cert))


def test_second_signing_key_for_a_name_is_refused(consortium: SimpleNamespace) -> None:
    other = create_hsm_request(Pkcs11Key(consortium.key.module, TOKEN, "bank_a-other", PIN), "bank_a", "party",
                               consortium.base / "other")
    with pytest.raises(CertError, match="another key"):
        sign_request(other, consortium.ca.directory, signing_only=True)
