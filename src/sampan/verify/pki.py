"""VerifierCA: the consortium CA the verifier runs for an evaluation, and the bad certificates its TLS tests use.

The platform under test is told to trust this CA (`ProjectCreate.ca_pem`); the verifier's own party connects
with a certificate from it. The TLS security tests then present what a platform must refuse: an expired or
not-yet-valid certificate, one from another CA, a self-signed one, a revoked one (the CRL is a PEM file the
platform loads), and a forged one: issued by an impostor CA with the consortium CA's exact subject but another
key (``forged_issuer``), which only a real signature check refuses (a platform that matches issuer names passes
every other bad variant). The CA itself is `sampan.crypto.SimulatedCA` (same profile as `sampan certs`: ECDSA P-256, CN
= name, OU = role, clientAuth/serverAuth by role); this module adds server certificates with DNS/IP names and
writes every PEM into a private (0700) folder, keys 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sampan.crypto.simulated_ca import SimulatedCA
from sampan.files import atomic_write_bytes, private_directory

Variant = Literal["good", "expired", "not_yet_valid", "wrong_ca", "revoked", "self_signed", "forged_issuer"]
VARIANTS: tuple[Variant, ...] = ("good", "expired", "not_yet_valid", "wrong_ca", "revoked", "self_signed",
                                 "forged_issuer")
Usage = Literal["client", "server"]


@dataclass(frozen=True)
class IssuedCert:
    """One certificate and its key, in memory (PEM) and on disk (``cert_file``, ``key_file`` 0600); repr/str
    never show the key (an assertion message or a log line holding an IssuedCert must not print it)."""

    name: str
    variant: Variant
    usage: Usage
    certificate: x509.Certificate
    cert_pem: str
    key_pem: str = field(repr=False)
    cert_file: Path
    key_file: Path

    @property
    def files(self) -> tuple[str, str]:
        """(cert file, key file) as strings: what `ssl.load_cert_chain` and `BenchmarkClient(client_cert=)` take."""
        return str(self.cert_file), str(self.key_file)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class VerifierCA:
    """The verifier's consortium CA for one evaluation, writing its files under ``folder`` (a fresh private temp
    folder if None, removed by close() or when the CA is garbage-collected). ``ca_pem``/``ca_file``: what the
    platform trusts; ``crl_pem``/``crl_file``: its revocations."""

    def __init__(self, folder: str | Path | None = None, name: str = "Sampan verifier consortium CA") -> None:
        self.folder = private_directory(folder if folder is not None else tempfile.mkdtemp(prefix="sampan-vca-"))
        # a temp folder of ours holds private keys: removed when the CA is closed or garbage-collected
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True) if folder is None else None
        self._ca = SimulatedCA(name)
        self._wrong = SimulatedCA("Not the consortium CA")  # issues the wrong-CA variants
        self._impostor = SimulatedCA(name)  # same subject as the consortium CA, another key: forged_issuer
        self.ca_pem = _pem(self._ca.certificate).decode()
        self.wrong_ca_pem = _pem(self._wrong.certificate).decode()
        self.ca_file = atomic_write_bytes(self.folder / "ca.pem", self.ca_pem.encode(), mode=0o644)
        self.wrong_ca_file = atomic_write_bytes(self.folder / "wrong-ca.pem", self.wrong_ca_pem.encode(), mode=0o644)
        self.crl_file = self.folder / "crl.pem"
        self._write_crl()

    def close(self) -> None:
        """Remove the folder if this CA made it (a temp folder); a folder the caller gave is left alone."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> VerifierCA:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def certificate(self) -> x509.Certificate:
        return self._ca.certificate

    @property
    def crl_pem(self) -> str:
        return self._ca.crl().public_bytes(serialization.Encoding.PEM).decode()

    def _write_crl(self) -> None:
        atomic_write_bytes(self.crl_file, self.crl_pem.encode(), mode=0o644)

    def revoke(self, issued: IssuedCert) -> None:
        """Revoke ``issued`` and rewrite crl.pem (a platform that re-reads its CRL refuses it from now on)."""
        self._ca.revoke(issued.certificate)
        self._write_crl()

    def issue(self, name: str, *, usage: Usage = "client", variant: Variant = "good",
              hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> IssuedCert:
        """A certificate for ``name``: a party's client certificate (CN = name, clientAuth) or a server's
        (serverAuth, SAN = ``hosts``), in one of the VARIANTS a TLS test needs."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown certificate variant {variant!r} (one of {', '.join(VARIANTS)})")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_before, not_after = now - dt.timedelta(minutes=1), now + dt.timedelta(days=1)
        if variant == "expired":
            not_before, not_after = now - dt.timedelta(days=2), now - dt.timedelta(days=1)
        elif variant == "not_yet_valid":
            not_before, not_after = now + dt.timedelta(days=1), now + dt.timedelta(days=2)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                "coordinator" if usage == "server" else "party")])
        if variant == "self_signed":
            issuer_name, signer = subject, key
        elif variant == "wrong_ca":
            issuer_name, signer = self._wrong.certificate.subject, self._wrong.key
        elif variant == "forged_issuer":
            issuer_name, signer = self._ca.certificate.subject, self._impostor.key
        else:
            issuer_name, signer = self._ca.certificate.subject, self._ca.key
        names: list[x509.GeneralName] = []
        if usage == "server":
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
        else:
            names.append(x509.UniformResourceIdentifier(f"sampan://party:{name}"))
        eku = ExtendedKeyUsageOID.SERVER_AUTH if usage == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(signer, hashes.SHA256()))
        stem = f"{usage}-{name}-{variant}-{cert.serial_number:x}"[:120]
        cert_file = atomic_write_bytes(self.folder / f"{stem}.crt", _pem(cert), mode=0o644)
        key_file = atomic_write_bytes(self.folder / f"{stem}.key", _key_pem(key), mode=0o600)
        issued = IssuedCert(name, variant, usage, cert, _pem(cert).decode(), _key_pem(key).decode(), cert_file,
                            key_file)
        if variant == "revoked":
            self.revoke(issued)
        return issued

    def client_cert(self, party: str, variant: Variant = "good") -> IssuedCert:
        """The verifier-operated party's certificate (``variant`` for the negative TLS tests)."""
        return self.issue(party, usage="client", variant=variant)

    def server_cert(self, host: str = "127.0.0.1", variant: Variant = "good") -> IssuedCert:
        """A server certificate for ``host`` (and localhost/127.0.0.1), e.g. for a platform run locally."""
        hosts = tuple(dict.fromkeys((host, "127.0.0.1", "localhost")))
        return self.issue(host, usage="server", variant=variant, hosts=hosts)

    def variants(self, party: str) -> dict[Variant, IssuedCert]:
        """One client certificate of every variant for ``party`` (the TLS test matrix)."""
        return {variant: self.client_cert(party, variant) for variant in VARIANTS}


__all__ = ["VerifierCA", "IssuedCert", "VARIANTS", "Variant"]
