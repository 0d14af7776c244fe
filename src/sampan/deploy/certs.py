"""The consortium's certificates: a CA, locally made keys and CSRs, signing, revocation, pins, checks.

Flow (each step on the machine of whoever owns the key):

1. the consortium operator runs `init_ca` once: CA key (0600), CA certificate, an empty signed CRL;
2. every member runs `create_request` itself: its ECDSA P-256 key is generated and stays on its
   machine (0600); only the CSR travels to the operator;
3. the operator runs `sign_request`: the certificate names the member (CN), its role (OU: party,
   coordinator or operator) and carries an extended key usage that fits the role (serverAuth for the
   coordinator, clientAuth for the others) — so a party certificate cannot serve as a coordinator;
4. `revoke` adds a serial to the CRL, which coordinators and parties re-read when it changes.

`CertificateAuthenticator` is what the coordinator applies to every stream after gRPC's TLS layer
has verified the chain: the CA signature again, the validity period, the CRL, the role, membership,
and the pin of the member's public key (configured, or recorded on first use).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sampan.files import atomic_write_bytes
from sampan.transport.grpc_hub import AuthenticationError, Identity

__all__ = [
    "ROLES", "CertError", "CAFiles", "init_ca", "create_request", "sign_request", "revoke", "spki_pin", "load_cert",
    "cert_identity", "CertificateAuthenticator", "probe_coordinator", "write_private", "describe_cert",
]

ROLES = ("party", "coordinator", "operator")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
URI_PREFIX = "urn:sampan:"
CLOCK_SLACK = dt.timedelta(minutes=5)


class CertError(ValueError):
    """A certificate file or request that cannot be used; the message says which and why."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_private(path: Path, data: bytes) -> None:
    """Private keys: written atomically, readable by the owner only."""
    atomic_write_bytes(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, 0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise CertError(f"name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise CertError(f"role {role!r} must be one of {', '.join(ROLES)}")


def load_cert(path: str | Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise CertError(f"certificate file {str(path)!r} does not exist") from None
    except ValueError as exc:
        raise CertError(f"{path}: not a PEM certificate ({exc})") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise CertError(f"key file {str(path)!r} does not exist") from None
    except (ValueError, TypeError) as exc:
        raise CertError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{path}: expected an ECDSA key")
    return key


def spki_pin(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's public key (SubjectPublicKeyInfo): stable across re-issues of the same key."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def cert_identity(cert: x509.Certificate) -> tuple[str, str]:
    """(name, role) from CN and OU."""
    name, role = _attr(cert.subject, NameOID.COMMON_NAME), _attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not name or not role:
        raise CertError("certificate lacks a Sampan name (CN) or role (OU)")
    return name, role


def describe_cert(cert: x509.Certificate) -> dict[str, str]:
    name, role = cert_identity(cert)
    return {"name": name, "role": role, "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat(),
            "issuer": cert.issuer.rfc4514_string(), "pin": spki_pin(cert)}


# --- the CA ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CAFiles:
    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def index(self) -> Path:
        return self.directory / "issued.json"


def _read_index(files: CAFiles) -> dict[str, dict[str, object]]:
    if not files.index.exists():
        return {}
    return json.loads(files.index.read_text(encoding="utf-8"))


def init_ca(directory: str | Path, *, name: str = "Sampan consortium CA", days: int = 3650,
            force: bool = False) -> CAFiles:
    """Create the consortium CA: key (0600), self-signed certificate, empty CRL."""
    files = CAFiles(Path(directory))
    if files.key.exists() and not force:
        raise CertError(f"{files.key} exists; refusing to overwrite a CA key (use force to replace it)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ca")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - CLOCK_SLACK)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    write_private(files.key, _key_pem(key))
    write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    write_public(files.index, b"{}")
    _write_crl(files, key, cert, {})
    return files


def _write_crl(files: CAFiles, key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
               revoked: Mapping[str, dict[str, object]], days: int = 30) -> None:
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now - CLOCK_SLACK)
               .next_update(now + dt.timedelta(days=days)))
    for serial, entry in revoked.items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
            .revocation_date(dt.datetime.fromisoformat(str(entry["revoked_at"]))).build())
    crl = builder.sign(key, hashes.SHA256())
    write_public(files.crl, crl.public_bytes(serialization.Encoding.PEM))


def create_request(name: str, role: str, directory: str | Path, *, dns: Iterable[str] = (),
                   ips: Iterable[str] = (), organisation: str | None = None) -> tuple[Path, Path]:
    """A member makes its own key (never leaves this machine, 0600) and a CSR for the CA."""
    _check_name(name)
    _check_role(role)
    out = Path(directory)
    key_path, csr_path = out / f"{name}.key", out / f"{name}.csr"
    if key_path.exists():
        raise CertError(f"{key_path} exists; refusing to overwrite a private key")
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]
    if organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}:{name}")]
    sans += [x509.DNSName(d) for d in dns]
    try:
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    except ValueError as exc:
        raise CertError(str(exc)) from None
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(key, hashes.SHA256()))
    write_private(key_path, _key_pem(key))
    write_public(csr_path, csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def sign_request(csr_path: str | Path, ca_directory: str | Path, *, out: str | Path | None = None, days: int = 365,
                 not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> Path:
    """The CA signs a member's CSR after checking its signature, name and role."""
    files = CAFiles(Path(ca_directory))
    try:
        csr = x509.load_pem_x509_csr(Path(csr_path).read_bytes())
    except FileNotFoundError:
        raise CertError(f"CSR file {str(csr_path)!r} does not exist") from None
    except ValueError as exc:
        raise CertError(f"{csr_path}: not a PEM certificate signing request ({exc})") from None
    if not csr.is_signature_valid:
        raise CertError(f"{csr_path}: the CSR's signature does not verify (corrupted or tampered)")
    name, role = _attr(csr.subject, NameOID.COMMON_NAME), _attr(csr.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not name or not role:
        raise CertError(f"{csr_path}: CSR must carry CN (member name) and OU (role)")
    _check_name(name)
    _check_role(role)
    ca_key, ca_cert = _load_key(files.key), load_cert(files.cert)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}:{name}")]
    if role == "coordinator":
        names += [n for n in sans if isinstance(n, (x509.DNSName, x509.IPAddress))]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if role == "coordinator" else ExtendedKeyUsageOID.CLIENT_AUTH
    now = _now()
    start = not_before or now - CLOCK_SLACK
    end = not_after or now + dt.timedelta(days=days)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out_path = Path(out) if out else Path(csr_path).with_suffix(".crt")
    write_public(out_path, cert.public_bytes(serialization.Encoding.PEM))
    index = _read_index(files)
    index[format(cert.serial_number, "x")] = {"name": name, "role": role, "not_after": end.isoformat(),
                                              "pin": spki_pin(cert)}
    write_public(files.index, json.dumps(index, indent=1, sort_keys=True).encode())
    return out_path


def revoke(ca_directory: str | Path, *, cert_path: str | Path | None = None, serial: str | None = None) -> Path:
    """Add a certificate (by file or hex serial) to the CRL and re-sign it."""
    files = CAFiles(Path(ca_directory))
    if (cert_path is None) == (serial is None):
        raise CertError("give either a certificate file or a serial number to revoke")
    key = format(load_cert(cert_path).serial_number, "x") if cert_path is not None else str(serial).lower()
    index = _read_index(files)
    entry = index.get(key)
    if entry is None:
        raise CertError(f"serial {key} was not issued by this CA (see {files.index})")
    entry["revoked_at"] = _now().isoformat()
    write_public(files.index, json.dumps(index, indent=1, sort_keys=True).encode())
    revoked = {s: e for s, e in index.items() if "revoked_at" in e}
    _write_crl(files, _load_key(files.key), load_cert(files.cert), revoked)
    return files.crl


# --- checks ------------------------------------------------------------------------------------------
class _CRLCache:
    """The CRL, re-read when its file changes; signature checked against the CA."""

    def __init__(self, path: Path | None, ca: x509.Certificate) -> None:
        self.path, self.ca = path, ca
        self._mtime: float | None = None
        self._serials: frozenset[int] = frozenset()
        self.next_update: dt.datetime | None = None

    def revoked(self, serial: int) -> bool:
        if self.path is None:
            return False
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            crl = x509.load_pem_x509_crl(self.path.read_bytes())
            if crl.issuer != self.ca.subject or not crl.is_signature_valid(self.ca.public_key()):  # type: ignore[arg-type]
                raise AuthenticationError("bad_crl", f"CRL {self.path} is not signed by the consortium CA")
            self._serials = frozenset(r.serial_number for r in crl)
            self.next_update = crl.next_update_utc
            self._mtime = mtime
        return serial in self._serials


class CertificateAuthenticator:
    """Coordinator policy for a peer certificate: CA, validity, CRL, role, membership, pin."""

    def __init__(self, ca_cert: str | Path, *, crl: str | Path | None = None,
                 members: Mapping[str, str] | None = None, pins: Mapping[str, str] | None = None,
                 pins_file: str | Path | None = None) -> None:
        self.ca = load_cert(ca_cert)
        self.crl = _CRLCache(Path(crl) if crl else None, self.ca)
        self.members = dict(members or {})
        self.pins = {k: v.lower() for k, v in (pins or {}).items()}
        self.pins_file = Path(pins_file) if pins_file else None
        self._lock = threading.Lock()  # the coordinator checks certificates on several threads

    def verify(self, cert: x509.Certificate) -> Identity:
        try:
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature):
            raise AuthenticationError("unknown_ca", "certificate is not issued by the consortium CA") from None
        now = _now()
        if now < cert.not_valid_before_utc:
            raise AuthenticationError("not_yet_valid", f"certificate is valid only from {cert.not_valid_before_utc}")
        if now > cert.not_valid_after_utc:
            raise AuthenticationError("expired", f"certificate expired at {cert.not_valid_after_utc}")
        try:
            name, role = cert_identity(cert)
        except CertError as exc:
            raise AuthenticationError("bad_certificate", str(exc)) from None
        with self._lock:
            revoked = self.crl.revoked(cert.serial_number)
        if revoked:
            raise AuthenticationError("revoked", f"certificate {cert.serial_number:x} of {name!r} is revoked")
        if self.members and self.members.get(name) != role:
            known = self.members.get(name)
            raise AuthenticationError("not_a_member" if known is None else "wrong_role",
                                      f"{name!r} is not a member of this federation" if known is None else
                                      f"{name!r} is a {known} here but its certificate says {role}")
        pin = spki_pin(cert)
        with self._lock:
            self._check_pin(name, pin)
        return Identity(name, role, pin)

    def _check_pin(self, name: str, pin: str) -> None:
        expected = self.pins.get(name)
        if expected is None and self.pins_file is not None:
            recorded = json.loads(self.pins_file.read_text()) if self.pins_file.exists() else {}
            expected = recorded.get(name)
            if expected is None:  # trust on first use, recorded for every later connection
                recorded[name] = pin
                write_public(self.pins_file, json.dumps(recorded, indent=1, sort_keys=True).encode())
                return
        if expected is not None and expected != pin:
            raise AuthenticationError("pin_mismatch", f"{name!r} presented key {pin[:19]}…, but {expected[:19]}… is "
                                      "pinned for that name (re-pin deliberately if the member changed its key)")

    def authenticate(self, pem_cert: bytes | None, peer: str) -> Identity:
        if not pem_cert:
            raise AuthenticationError("no_certificate", "no client certificate (mutual TLS is required)")
        try:
            cert = x509.load_pem_x509_certificate(pem_cert)
        except ValueError as exc:
            raise AuthenticationError("bad_certificate", f"unreadable certificate: {exc}") from None
        return self.verify(cert)


def probe_coordinator(host: str, port: int, *, ca: Path, cert: Path, key: Path, server_name: str,
                      expected_name: str | None = None, pin: str | None = None, crl: Path | None = None,
                      timeout: float = 5.0) -> dict[str, str]:
    """Before dialing gRPC: check the coordinator's certificate (role, name, pin, CRL) with a plain TLS handshake.

    Also tells this party, in words, when the coordinator refuses *its* certificate (TLS alert),
    which gRPC would only report as "connection closed". Raises AuthenticationError or OSError.
    """
    own = load_cert(cert)
    now = _now()
    if not own.not_valid_before_utc <= now <= own.not_valid_after_utc:
        raise AuthenticationError("expired", f"this party's certificate is valid only from {own.not_valid_before_utc} "
                                  f"to {own.not_valid_after_utc}; ask the consortium CA for a new one")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca))
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                tls.settimeout(0.5)
                try:
                    data = tls.recv(1)  # TLS 1.3: a refused client certificate arrives as an alert after the handshake
                except ssl.SSLError as exc:
                    raise AuthenticationError("refused_by_coordinator",
                                              f"the coordinator refused this party's certificate: {exc.reason}") from None
                except (socket.timeout, TimeoutError):
                    data = None
                except OSError:  # reset right after the handshake
                    data = b""
                if data == b"":
                    raise AuthenticationError("refused_by_coordinator", "the coordinator closed the connection right "
                                              "after the TLS handshake: it refused this party's certificate (another "
                                              "CA, or not accepted there); its log says why")
        except ssl.SSLCertVerificationError as exc:
            raise AuthenticationError("coordinator_untrusted",
                                      f"coordinator certificate not trusted: {exc.verify_message}") from None
    assert der is not None
    peer = x509.load_der_x509_certificate(der)
    name, role = cert_identity(peer)
    if role != "coordinator":
        raise AuthenticationError("wrong_role", f"{host}:{port} presents a {role} certificate, not a coordinator's")
    if expected_name and name != expected_name:
        raise AuthenticationError("wrong_identity", f"{host}:{port} is {name!r}, expected {expected_name!r}")
    if pin and spki_pin(peer) != pin.lower():
        raise AuthenticationError("pin_mismatch", f"coordinator key {spki_pin(peer)[:19]}… is not the pinned "
                                  f"{pin[:19]}…")
    if crl is not None and _CRLCache(crl, load_cert(ca)).revoked(peer.serial_number):
        raise AuthenticationError("revoked", f"the coordinator's certificate {peer.serial_number:x} is revoked")
    return describe_cert(peer)
