"""The certificates of a party's compute engine: a CA private to the party, never the consortium's.

Why a separate CA: the engine's TLS is mutual (every node and every driver shows a certificate the CA signed).
If it trusted the consortium CA, any member holding a consortium certificate (another bank, the coordinator)
could join the party's cluster and run code there. A party-private CA, whose key is used once and then kept
(or dropped, for an ephemeral local engine), makes "holds a certificate the engine accepts" mean "is one of
this party's own machines".

Files in the engine folder (0600 in a 0700 folder): ``ca.pem`` (the engine CA's certificate), ``ca.key``
(kept only when `keep_ca_key`, to add machines later), ``node.pem`` / ``node.key`` (the certificate every node
and driver of the party's cluster presents: serverAuth + clientAuth, SANs for the hosts given).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sampan.errors import ConfigError
from sampan.files import atomic_write_bytes, private_directory

__all__ = ["EngineTLS", "issue_engine_certs", "load_engine_tls"]

_DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class EngineTLS:
    """Paths Ray's TLS settings name (RAY_TLS_SERVER_CERT / _KEY / RAY_TLS_CA_CERT)."""

    ca_cert: Path
    cert: Path
    key: Path

    def environment(self) -> dict[str, str]:
        """The environment variables that turn on Ray's mutual TLS with these files."""
        return {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(self.cert), "RAY_TLS_SERVER_KEY": str(self.key),
                "RAY_TLS_CA_CERT": str(self.ca_cert)}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "compute-engine")])


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue_engine_certs(directory: str | Path, *, party: str = "party", hosts: Sequence[str] = _DEFAULT_HOSTS,
                       days: int = 365, keep_ca_key: bool = False) -> EngineTLS:
    """Create a party-private engine CA and the node certificate its cluster presents, in ``directory``.

    ``hosts`` are the addresses the party's engine nodes listen on (private interfaces; 127.0.0.1 for a
    one-machine engine). The CA key is written only with ``keep_ca_key`` (to issue for more machines later);
    otherwise it exists only in this call, so nobody can mint another engine certificate afterwards.
    """
    folder = private_directory(directory)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{party} compute engine CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256()))
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        x509.CertificateBuilder().subject_name(_name(f"{party} compute engine node")).issuer_name(ca_name)
        .public_key(node_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(_san(hosts), critical=False)
        .sign(ca_key, hashes.SHA256()))
    tls = EngineTLS(folder / "ca.pem", folder / "node.pem", folder / "node.key")
    atomic_write_bytes(tls.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
    atomic_write_bytes(tls.key, _pem_key(node_key), mode=0o600)
    atomic_write_bytes(tls.cert, node_cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
    if keep_ca_key:
        atomic_write_bytes(folder / "ca.key", _pem_key(ca_key), mode=0o600)
    return tls


def load_engine_tls(directory: str | Path, *, field: str = "[compute] tls_dir") -> EngineTLS:
    """The engine files in ``directory`` (made by `issue_engine_certs`), checked present and readable."""
    folder = Path(directory)
    tls = EngineTLS(folder / "ca.pem", folder / "node.pem", folder / "node.key")
    for path in (tls.ca_cert, tls.cert, tls.key):
        if not path.is_file():
            raise ConfigError(f"{field}: {path} is missing; create the engine's certificates with "
                              "`sampan.compute.issue_engine_certs` (a CA private to this party)")
    try:
        x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
        x509.load_pem_x509_certificate(tls.cert.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{field}: {folder} holds a certificate that is not PEM: {exc}") from None
    if tls.key.stat().st_mode & 0o077:
        raise ConfigError(f"{field}: {tls.key} is readable by other users; chmod 600 it")
    return tls
