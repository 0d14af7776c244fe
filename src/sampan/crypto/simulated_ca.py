"""An in-memory consortium CA for simulated runs and tests, with the certificate profile of `sampan certs`.

Why separate: deployments never mint certificates in process; only simulations do (one CA per run, its key
dropped after issuing, so nobody in the process can mint another member's certificate later).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sampan.crypto.identity import URI_PREFIX, IdentityVerifier, PartyIdentity, _now

__all__ = ["SimulatedCA", "simulated_consortium"]


class SimulatedCA:
    """An in-memory consortium CA for simulated runs and tests: same certificate profile as `sampan certs`."""

    def __init__(self, name: str = "Sampan simulated consortium CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))
        self._revoked: dict[int, dt.datetime] = {}
        self._crl_number = 0
        self._issued: set[str] = set()
        self._lock = threading.Lock()

    def issue(self, name: str, role: str = "party", *, not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None, digital_signature: bool = True,
              key: ec.EllipticCurvePrivateKey | None = None, reissue: bool = False) -> PartyIdentity:
        """A member certificate and key (CN = name, OU = role), valid from a minute ago for a day unless told.

        One certificate per name: a second one is refused unless `reissue` (a test that deliberately makes
        a second, e.g. expired, certificate for a member) — as `sampan certs sign` refuses a second key.
        """
        with self._lock:
            if name in self._issued and not reissue:
                raise ValueError(f"this simulated CA already issued a certificate for {name!r} (reissue=True for a "
                                 "deliberate second one)")
            self._issued.add(name)
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if role == "coordinator" else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=1))
            .not_valid_after(not_after or now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=digital_signature, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=not digital_signature,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}:{name}")]),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        return PartyIdentity(name, role, cert, key)

    def revoke(self, certificate: x509.Certificate) -> None:
        with self._lock:
            self._revoked[certificate.serial_number] = _now()

    def crl(self) -> x509.CertificateRevocationList:
        now = _now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.certificate.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=1)))
        with self._lock:
            self._crl_number += 1
            builder = builder.add_extension(x509.CRLNumber(self._crl_number), critical=False)
            for serial, when in self._revoked.items():
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
        return builder.sign(self.key, hashes.SHA256())

    def verifier(self) -> IdentityVerifier:
        """A verifier trusting this CA, with the CRL as of now."""
        return IdentityVerifier(self.certificate, self.crl())


def simulated_consortium(names: Mapping[str, str] | list[str] | tuple[str, ...], *,
                         ca: SimulatedCA | None = None) -> tuple[IdentityVerifier, dict[str, PartyIdentity]]:
    """A verifier and one identity per member for a simulated run: `names` lists members, or maps name -> role.

    A fresh CA per call unless `ca` is given, so a simulated run trusts only its own members; its key
    is dropped on return, so no further certificate can be issued for the run. Give each party only
    its own identity, and every party the shared verifier.
    """
    authority = ca or SimulatedCA()
    roles = dict(names) if isinstance(names, Mapping) else {n: "party" for n in names}
    identities = {name: authority.issue(name, role) for name, role in roles.items()}
    return authority.verifier(), identities
