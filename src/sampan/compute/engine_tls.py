"""The certificates of a party's compute engine: a CA private to the party, never the consortium's.

Why a separate CA: the engine's TLS is mutual (every node and every driver shows a certificate the CA signed).
If it trusted the consortium CA, any member holding a consortium certificate (another bank, the coordinator)
could join the party's cluster and run code there. A party-private CA, whose key is used once and then kept
(or dropped, for an ephemeral local engine), makes "holds a certificate the engine accepts" mean "is one of
this party's own machines".

Files in the engine folder (0600 in a 0700 folder): ``ca.pem`` (the engine CA's certificate), ``ca.key``
(kept only when `keep_ca_key`, to add machines later), ``node.pem`` / ``node.key`` (the certificate every node
and driver of the party's cluster presents: serverAuth + clientAuth, SANs for the hosts given), ``auth_token``
(Ray's bearer token for the cluster's nodes and its HTTP runtime-env agent, which Ray's TLS does not cover:
start every node with ``RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<this folder>/auth_token``).

`load_engine_tls` refuses a folder or file that another user owns or may write: whoever can replace ``ca.pem``
can make the engine trust their own certificates, so the mutual TLS is only as private as this folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import stat
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
    token: Path | None = None  # Ray's auth token of the party's cluster (absent in folders made before it)

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
    token = folder / "auth_token"
    tls = EngineTLS(folder / "ca.pem", folder / "node.pem", folder / "node.key", token)
    atomic_write_bytes(token, secrets.token_hex(32).encode(), mode=0o600)
    atomic_write_bytes(tls.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
    atomic_write_bytes(tls.key, _pem_key(node_key), mode=0o600)
    atomic_write_bytes(tls.cert, node_cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
    if keep_ca_key:
        atomic_write_bytes(folder / "ca.key", _pem_key(ca_key), mode=0o600)
    return tls


def load_engine_tls(directory: str | Path, *, field: str = "[compute] tls_dir") -> EngineTLS:
    """The engine files in ``directory`` (made by `issue_engine_certs`), checked present, readable and private:
    the folder and every file owned by this user and writable by nobody else, the key and token readable by
    nobody else, no symbolic links."""
    folder = Path(directory)
    token = folder / "auth_token"
    tls = EngineTLS(folder / "ca.pem", folder / "node.pem", folder / "node.key",
                    token if token.is_file() else None)
    for path in (tls.ca_cert, tls.cert, tls.key):
        if not path.is_file():
            raise ConfigError(f"{field}: {path} is missing; create the engine's certificates with "
                              "`sampan.compute.issue_engine_certs` (a CA private to this party)")
    _check_private(folder, field, secret=False)
    for path in (tls.ca_cert, tls.cert):
        _check_private(path, field, secret=False)
    for secret in (tls.key, tls.token):
        if secret is not None:
            _check_private(secret, field, secret=True)
    try:
        x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
        x509.load_pem_x509_certificate(tls.cert.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{field}: {folder} holds a certificate that is not PEM: {exc}") from None
    return tls


def _check_private(path: Path, field: str, *, secret: bool) -> None:
    """A ConfigError naming ``field`` if ``path`` is a link, another user's, writable by others, or (``secret``)
    readable by others."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"{field}: {path} is a symbolic link; keep the engine's files in the folder itself")
    if info.st_uid != os.getuid():
        raise ConfigError(f"{field}: {path} belongs to another user (uid {info.st_uid}); the engine's files must "
                          "be this party's own")
    if info.st_mode & 0o022:
        raise ConfigError(f"{field}: {path} is writable by other users; chmod go-w it (whoever can write here "
                          "can make the engine trust their own certificates)")
    if secret and info.st_mode & 0o077:
        raise ConfigError(f"{field}: {path} is readable by other users; chmod 600 it")
