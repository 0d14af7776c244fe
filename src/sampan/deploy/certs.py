"""The consortium's certificates: a CA, locally made keys and CSRs, signing, revocation, pins, checks.

Flow (each step on the machine of whoever owns the key):

1. the consortium operator runs `init_ca` once: CA key (0600, optionally passphrase-encrypted, in a
   0700 folder), CA certificate, an empty signed CRL and an empty signed issuance record;
2. every member runs `create_request` itself: its ECDSA P-256 key is generated and stays on its
   machine (0600, optionally passphrase-encrypted); only the CSR travels to the operator;
3. the operator runs `sign_request`: the certificate names the member (CN), its role (OU: party,
   coordinator or operator) and carries an extended key usage that fits the role (serverAuth for the
   coordinator, clientAuth for the others) — so a party certificate cannot serve as a coordinator.
   A name is issued to one key only: a CSR for a name the CA already issued to another key is
   refused unless the operator re-keys deliberately (`rekey=True`), which revokes the old certificates;
4. `revoke` adds a serial to the CRL, which coordinators and parties re-read when it changes.

Every CA operation that changes the record or the CRL holds an exclusive lock on `ca/.lock` from reading
the record to writing both (the CA key is loaded, and its passphrase asked, before the lock), so a
revocation made while another operator signs is never lost. Each CRL carries a CRLNumber one above the
previous CRL's, and each issuance record a signed `generation` (one above the previous) and `signed_at`:
verifiers keep the highest number they accepted (persisted in their state folder) and refuse a lower one,
so an older CRL or record put back in place — both still validly signed — cannot un-revoke a
certificate or undo a re-key.

Every issuance and revocation is written to the CA's issuance record (`issued.json`, whose entries the
CA signs). The coordinator takes its members' key pins from that record, never from
whichever key connects first: an impostor whose certificate was signed by mistake cannot take over a
name, and a legitimate re-key (`sign --rekey`) moves the pin with it. A pin fixed in coordinator.toml
or by `repin` (the coordinator's own pins file) overrides the record and must be moved deliberately.

`CertificateAuthenticator` is what the coordinator applies to every stream after gRPC's TLS layer
has verified the chain: the CA signature again, the validity period, the CRL (and that it is still
fresh: its nextUpdate has not passed), the role, membership, and the pin of the member's public key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import ipaddress
import json
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sampan.crypto.identity import NAME_RE, IdentityError, certificate_identity, check_certificate, crl_number
from sampan.deploy.keyfiles import (
    KeyFileError, check_key_mode, is_encrypted, load_private_key, passphrase_for, write_private_key,
)
from sampan.files import PRIVATE_FILE, HighWater, atomic_write_bytes, private_directory
from sampan.transport.grpc_hub import AuthenticationError, Identity

__all__ = [
    "ROLES", "CertError", "CAFiles", "init_ca", "create_request", "sign_request", "revoke", "spki_pin", "load_cert",
    "cert_identity", "CertificateAuthenticator", "probe_coordinator", "write_private", "describe_cert",
    "IssuedRecord", "refresh_crl", "repin", "read_crl",
]

ROLES = ("party", "coordinator", "operator")
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


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
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


def _load_key(path: Path, what: str = "CA key") -> ec.EllipticCurvePrivateKey:
    """A private key, refused if others can read it; decrypted with the passphrase if encrypted."""
    try:
        key = load_private_key(path, what=what)
    except KeyFileError as exc:
        raise CertError(str(exc)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{path}: expected an ECDSA key")
    return key


def spki_pin(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's public key (SubjectPublicKeyInfo): stable across re-issues of the same key."""
    return spki_pin_of_key(cert.public_key())


def spki_pin_of_key(key: object) -> str:
    spki = key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def cert_identity(cert: x509.Certificate) -> tuple[str, str]:
    """(name, role) from CN and OU."""
    try:
        return certificate_identity(cert)
    except IdentityError as exc:
        raise CertError(exc.detail) from None


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

    @property
    def lock(self) -> Path:
        return self.directory / ".lock"


@contextlib.contextmanager
def _ca_lock(files: CAFiles) -> Iterator[None]:
    """Exclusive lock on the CA folder from reading the issuance record to writing it and the CRL."""
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _canonical_entries(entries: Mapping[str, object]) -> bytes:
    return json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()


def _signed_payload(data: Mapping[str, object]) -> bytes:
    """What the CA signs in issued.json: entries, generation and signed_at (older records: the entries alone)."""
    if "generation" not in data:
        return _canonical_entries(data["entries"])  # type: ignore[arg-type]
    return _canonical_entries({k: data[k] for k in ("entries", "generation", "signed_at")})


def _read_record(files: CAFiles) -> tuple[dict[str, dict[str, object]], int]:
    """The CA's own issuance record: (entries, generation)."""
    if not files.index.exists():
        return {}, 0
    data = json.loads(files.index.read_text(encoding="utf-8"))
    if "entries" in data and "signature" in data:
        return data["entries"], int(data.get("generation", 0))
    return data, 0  # (older records: unsigned)


def _read_index(files: CAFiles) -> dict[str, dict[str, object]]:
    return _read_record(files)[0]


def _write_index(files: CAFiles, index: Mapping[str, object], key: ec.EllipticCurvePrivateKey,
                 generation: int) -> None:
    """The issuance record, generation `generation`, signed by the CA together with its entries and the
    signing time, in one file replaced atomically (a coordinator never reads new entries with an old
    signature; a verifier refuses a generation below one it has seen)."""
    data: dict[str, object] = {"entries": index, "generation": int(generation), "signed_at": _now().isoformat()}
    data["signature"] = key.sign(_signed_payload(data), ec.ECDSA(hashes.SHA256())).hex()
    write_public(files.index, json.dumps(data, indent=1, sort_keys=True).encode())


def init_ca(directory: str | Path, *, name: str = "Sampan consortium CA", days: int = 3650,
            force: bool = False, passphrase: bytes | None = None) -> CAFiles:
    """Create the consortium CA: key (0600, encrypted if a passphrase is given), self-signed certificate,
    empty CRL and empty signed issuance record, in a 0700 folder."""
    files = CAFiles(Path(directory))
    if files.key.exists() and not force:
        raise CertError(f"{files.key} exists; refusing to overwrite a CA key (use force to replace it)")
    private_directory(files.directory)
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
    write_private_key(files.key, key, passphrase)
    write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    with _ca_lock(files):
        _write_index(files, {}, key, 1)
        _write_crl(files, key, cert, {}, number=1)
    return files


def _next_crl_number(files: CAFiles) -> int:
    """One above the CA's current CRL's number (1 for the first CRL, or one without a number)."""
    try:
        current = x509.load_pem_x509_crl(files.crl.read_bytes())
    except (OSError, ValueError):
        return 1
    return (crl_number(current) or 0) + 1


def _write_crl(files: CAFiles, key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
               revoked: Mapping[str, dict[str, object]], days: float = 30, *, number: int | None = None) -> None:
    """Sign and publish a CRL numbered one above the previous (call under `_ca_lock`)."""
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now - CLOCK_SLACK)
               .next_update(now + dt.timedelta(days=days))
               .add_extension(x509.CRLNumber(number or _next_crl_number(files)), critical=False))
    for serial, entry in revoked.items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
            .revocation_date(dt.datetime.fromisoformat(str(entry["revoked_at"]))).build())
    crl = builder.sign(key, hashes.SHA256())
    write_public(files.crl, crl.public_bytes(serialization.Encoding.PEM))


def refresh_crl(ca_directory: str | Path, *, days: float = 30) -> Path:
    """Re-sign the CRL with a new nextUpdate (coordinators refuse to start runs on a CRL past it)."""
    files = CAFiles(Path(ca_directory))
    key = _load_key(files.key)
    with _ca_lock(files):
        revoked = {s: e for s, e in _read_index(files).items() if "revoked_at" in e}
        _write_crl(files, key, load_cert(files.cert), revoked, days)
    return files.crl


def create_request(name: str, role: str, directory: str | Path, *, dns: Iterable[str] = (),
                   ips: Iterable[str] = (), organisation: str | None = None,
                   passphrase: bytes | None = None) -> tuple[Path, Path]:
    """A member makes its own key (never leaves this machine; 0600 in a 0700 folder, encrypted if a
    passphrase is given) and a CSR for the CA."""
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
    private_directory(out)
    write_private_key(key_path, key, passphrase)
    write_public(csr_path, csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def _other_keys(index: Mapping[str, Mapping[str, object]], name: str, pin: str) -> list[str]:
    """Serials of unrevoked certificates the CA issued for `name` to a key other than `pin`."""
    return sorted(serial for serial, e in index.items()
                  if e.get("name") == name and e.get("pin") != pin and "revoked_at" not in e)


def sign_request(csr_path: str | Path, ca_directory: str | Path, *, out: str | Path | None = None, days: int = 365,
                 not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                 rekey: bool = False) -> Path:
    """The CA signs a member's CSR after checking its signature, name and role.

    A name belongs to one key: a CSR for a name already issued to another (unrevoked) key is refused
    — an impostor's request for an existing member's name, or a typo — unless `rekey`, the operator's
    deliberate re-key, which revokes the name's other certificates in the same step. Renewing a
    certificate for the same key needs no flag.
    """
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
    pin = spki_pin_of_key(csr.public_key())
    ca_key, ca_cert = _load_key(files.key), load_cert(files.cert)  # (a passphrase prompt: before the lock)
    with _ca_lock(files):
        return _sign_locked(files, csr, csr_path, name, role, pin, ca_key, ca_cert, out=out, days=days,
                            not_before=not_before, not_after=not_after, rekey=rekey)


def _sign_locked(files: CAFiles, csr: x509.CertificateSigningRequest, csr_path: str | Path, name: str, role: str,
                 pin: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, *,
                 out: str | Path | None, days: int, not_before: dt.datetime | None, not_after: dt.datetime | None,
                 rekey: bool) -> Path:
    index, generation = _read_record(files)
    clashing = _other_keys(index, name, pin)
    if clashing and not rekey:
        raise CertError(f"{csr_path}: this CA already issued {name!r} to another key (serial "
                        f"{', '.join(clashing)}); a second key for a name is refused. If {name!r} really "
                        "changed its key, re-key deliberately (`sampan certs sign --rekey`): that revokes the "
                        "old certificate")
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
    end = min(not_after or now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)  # peers refuse a longer one
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
    serial = format(cert.serial_number, "x")
    for old in clashing:  # rekey: the old keys stop being valid in the same step
        index[old]["revoked_at"] = now.isoformat()
        index[old]["superseded_by"] = serial
    index[serial] = {"name": name, "role": role, "not_after": end.isoformat(), "pin": pin,
                     "issued_at": now.isoformat()}
    _write_index(files, index, ca_key, generation + 1)
    if clashing:
        _write_crl(files, ca_key, ca_cert, {s: e for s, e in index.items() if "revoked_at" in e})
    write_public(out_path, cert.public_bytes(serialization.Encoding.PEM))
    return out_path


def revoke(ca_directory: str | Path, *, cert_path: str | Path | None = None, serial: str | None = None) -> Path:
    """Add a certificate (by file or hex serial) to the CRL and re-sign it."""
    files = CAFiles(Path(ca_directory))
    if (cert_path is None) == (serial is None):
        raise CertError("give either a certificate file or a serial number to revoke")
    key = format(load_cert(cert_path).serial_number, "x") if cert_path is not None else str(serial).lower()
    ca_key = _load_key(files.key)  # (a passphrase prompt: before the lock)
    with _ca_lock(files):
        index, generation = _read_record(files)
        entry = index.get(key)
        if entry is None:
            raise CertError(f"serial {key} was not issued by this CA (see {files.index})")
        entry.setdefault("revoked_at", _now().isoformat())
        revoked = {s: e for s, e in index.items() if "revoked_at" in e}
        # The CRL first: a watcher that notices the change between the two writes then cuts the member on
        # the CRL it records in the audit log, never on the issuance record alone with the old CRL logged.
        _write_crl(files, ca_key, load_cert(files.cert), revoked)
        _write_index(files, index, ca_key, generation + 1)
    return files.crl


# --- checks ------------------------------------------------------------------------------------------
def read_crl(path: Path, ca: x509.Certificate) -> x509.CertificateRevocationList:
    """The CRL at `path`, its signature checked against the CA (raises AuthenticationError otherwise)."""
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuthenticationError("bad_crl", f"cannot read the CRL {path}: {exc}") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise AuthenticationError("bad_crl", f"CRL {path} is not signed by the consortium CA")
    return crl


class _CRLCache:
    """The CRL, re-read when its file's contents change (SHA-256, not mtime: `cp -p`, `rsync -t` and `tar x`
    keep an old mtime on a new list); signature checked against the CA; its nextUpdate kept.

    Its CRLNumber must be present and not below the highest accepted (kept in `high`, persisted by the
    coordinator in its state folder): an older signed CRL put back would un-revoke certificates."""

    def __init__(self, path: Path | None, ca: x509.Certificate, high: HighWater | None = None) -> None:
        self.path, self.ca = path, ca
        self.high = high or HighWater()
        self._digest: bytes | None = None
        self._serials: frozenset[int] = frozenset()
        self.next_update: dt.datetime | None = None
        self.generation = 0  # bumped whenever a new CRL is loaded

    def refresh(self) -> bool:
        """Re-read the CRL if its file changed; True if a new one was loaded."""
        if self.path is None:
            return False
        try:
            digest = hashlib.sha256(self.path.read_bytes()).digest()
        except OSError as exc:
            raise AuthenticationError("bad_crl", f"cannot read the CRL {self.path}: {exc}") from None
        if digest == self._digest:
            return False
        crl = read_crl(self.path, self.ca)
        number, highest = crl_number(crl), self.high.get("crl_number")
        if number is None:
            raise AuthenticationError("bad_crl", f"the CRL {self.path} has no CRL number (made by an older version): "
                                      "re-sign it with `sampan certs crl` and copy it here")
        if number < highest:
            raise AuthenticationError("crl_rollback", f"the CRL {self.path} has number {number}, below the number "
                                      f"{highest} already accepted: an older list put back (it would un-revoke "
                                      "certificates); copy the CA's current crl.pem here")
        self.high.advance("crl_number", number)
        self._serials = frozenset(r.serial_number for r in crl)
        self.next_update = crl.next_update_utc
        self._digest = digest
        self.generation += 1
        return True

    @property
    def serials(self) -> frozenset[int]:
        return self._serials

    def revoked(self, serial: int) -> bool:
        if self.path is None:
            return False
        self.refresh()
        return serial in self._serials

    def check_fresh(self, now: dt.datetime | None = None) -> None:
        """Refuse a CRL whose nextUpdate has passed: revocations after it may be missing."""
        if self.path is None:
            return
        self.refresh()
        now = now or _now()
        if self.next_update is None or now > self.next_update:
            raise AuthenticationError("crl_expired", f"the CRL {self.path} expired at {self.next_update} (its "
                                      "nextUpdate): revocations since then may be missing. Ask the CA operator for a "
                                      "fresh one (`sampan certs crl`) and copy it here")


class IssuedRecord:
    """The CA's signed issuance record (issued.json): which key each name was issued to.

    Re-read when the file's contents change; a record whose signature does not verify under the CA is
    refused, and so is one whose signed generation is below the highest accepted (kept in `high`, persisted
    by the coordinator): an older record put back would undo a re-key or a revocation.
    """

    def __init__(self, path: Path, ca: x509.Certificate, high: HighWater | None = None) -> None:
        self.path, self.ca = Path(path), ca
        self.high = high or HighWater()
        self._stamp: bytes | None = None
        self.entries: dict[str, dict[str, object]] = {}
        self.generation = 0  # counts loads (as _CRLCache.generation), not the record's own number

    def refresh(self) -> bool:
        try:
            raw = self.path.read_bytes()
            stamp = hashlib.sha256(raw).digest()
            data = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise AuthenticationError("bad_issued", f"cannot read the CA's issuance record: {exc}") from None
        if stamp == self._stamp:
            return False
        try:
            entries = data["entries"]
            self.ca.public_key().verify(bytes.fromhex(data["signature"]), _signed_payload(data),  # type: ignore[call-arg]
                                        ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
            number = int(data.get("generation", 0))
        except (KeyError, ValueError, InvalidSignature, TypeError, AttributeError):
            raise AuthenticationError("bad_issued", f"the issuance record {self.path} is not signed by the "
                                      "consortium CA (an unsigned or edited record: copy the CA's issued.json)") from None
        highest = self.high.get("issued_generation")
        if number < highest:
            raise AuthenticationError("issued_rollback", f"the issuance record {self.path} has generation {number}, "
                                      f"below the generation {highest} already accepted: an older record put back "
                                      "(it would undo a re-key or revocation); copy the CA's current issued.json here")
        self.high.advance("issued_generation", number)
        self.entries, self._stamp = {str(k): dict(v) for k, v in entries.items()}, stamp
        self.generation += 1
        return True

    def check(self, cert: x509.Certificate, name: str, pin: str) -> None:
        """The certificate must be the CA's current issuance for `name`: listed, unrevoked, the name's one key."""
        self.refresh()
        entry = self.entries.get(format(cert.serial_number, "x"))
        if entry is None or entry.get("name") != name or entry.get("pin") != pin:
            raise AuthenticationError("not_issued", f"certificate {cert.serial_number:x} of {name!r} is not in the "
                                      "CA's issuance record (copy the CA's current issued.json here)")
        if "revoked_at" in entry:
            raise AuthenticationError("revoked", f"certificate {cert.serial_number:x} of {name!r} was revoked at "
                                      f"{entry['revoked_at']} (issuance record)")
        now = _now().isoformat()
        current = {str(e.get("pin")) for e in self.entries.values()
                   if e.get("name") == name and "revoked_at" not in e and str(e.get("not_after", now)) >= now}
        if current != {pin}:
            raise AuthenticationError("ambiguous_name", f"the CA issued {name!r} to {len(current)} different keys; "
                                      "none is accepted until the CA re-keys it (`sampan certs sign --rekey`)")


def _read_pins(path: Path | None) -> dict[str, str]:
    """Pins set deliberately by `repin` ({"repinned": {...}}). A flat file is a pins.json that older versions
    filled on first use: exactly what cannot be trusted, so it is ignored (with a warning)."""
    if path is None or not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("repinned"), dict):
        logging.getLogger("sampan.deploy.security").warning(
            "ignoring %s: its pins were recorded on first use by an older version; pins now come from members.pin, "
            "`sampan certs repin` or the CA's issuance record", path)
        return {}
    return {str(k): str(v).lower() for k, v in data["repinned"].items()}


def repin(pins_file: str | Path, name: str, cert_path: str | Path, ca_cert: str | Path) -> str:
    """A coordinator operator accepts a member's legitimate new key: checks the new certificate against the
    CA and records its pin in the coordinator's pins file (0600). Returns the new pin."""
    ca = load_cert(ca_cert)
    cert = load_cert(cert_path)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CertError(f"{cert_path} is not issued by the consortium CA {ca_cert}") from None
    cert_name, _ = cert_identity(cert)
    if cert_name != name:
        raise CertError(f"{cert_path} is {cert_name!r}'s certificate, not {name!r}'s")
    pins = _read_pins(Path(pins_file))
    pins[name] = spki_pin(cert)
    private_directory(Path(pins_file).parent)
    write_private(Path(pins_file), json.dumps({"repinned": pins}, indent=1, sort_keys=True).encode())
    return pins[name]


class CertificateAuthenticator:
    """Coordinator policy for a peer certificate: CA, validity, CRL, role, membership, pin.

    Pins: a pin in coordinator.toml wins, then the coordinator's pins file (`repin`), then the CA's signed
    issuance record. With none of them a member is refused: a key is never trusted because it came first.
    """

    def __init__(self, ca_cert: str | Path, *, crl: str | Path | None = None,
                 members: Mapping[str, str] | None = None, pins: Mapping[str, str] | None = None,
                 pins_file: str | Path | None = None, issued: str | Path | None = None,
                 state: str | Path | None = None) -> None:
        self.ca = load_cert(ca_cert)
        high = HighWater(state)  # highest CRL number and record generation accepted (persisted if `state`)
        self.crl = _CRLCache(Path(crl) if crl else None, self.ca, high)
        self.members = dict(members or {})
        self.pins = {k: v.lower() for k, v in (pins or {}).items()}
        self.pins_file = Path(pins_file) if pins_file else None
        self.issued = IssuedRecord(Path(issued), self.ca, high) if issued else None
        self._lock = threading.Lock()  # the coordinator checks certificates on several threads

    def verify(self, cert: x509.Certificate) -> Identity:
        try:  # the checks every member certificate passes (shared with the run-key signatures)
            name, role = check_certificate(cert, self.ca, signing=False)
        except IdentityError as exc:
            raise AuthenticationError(exc.reason, exc.detail) from None
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
            self._check_pin(cert, name, pin)
        return Identity(name, role, pin)

    def _check_pin(self, cert: x509.Certificate, name: str, pin: str) -> None:
        expected = self.pins.get(name) or _read_pins(self.pins_file).get(name)
        if expected is not None:
            if expected != pin:
                raise AuthenticationError("pin_mismatch", f"{name!r} presented key {pin[:19]}…, but {expected[:19]}… "
                                          "is pinned for that name (if the member re-keyed legitimately: "
                                          f"`sampan certs repin {name}`)")
            return
        if self.issued is None:
            raise AuthenticationError("no_pin", f"no pin for {name!r}: set members.pin in coordinator.toml, or point "
                                      "tls.issued at the CA's issuance record (keys are never trusted on first use)")
        self.issued.check(cert, name, pin)

    def refresh(self) -> bool:
        """Re-read the CRL and the issuance record if they changed; True if either did."""
        with self._lock:
            changed = self.crl.refresh()
            if self.issued is not None:
                changed = self.issued.refresh() or changed
        return changed

    @property
    def generation(self) -> tuple[int, int]:
        """Changes whenever a new CRL or issuance record is loaded, by whichever check loaded it: a watcher
        compares it with the generation it last acted on (never a one-shot "changed" signal, which the first
        connection attempt after a revocation would consume)."""
        with self._lock:
            return (self.crl.generation, self.issued.generation if self.issued is not None else 0)

    def check_fresh(self) -> None:
        """Raise AuthenticationError('crl_expired') if the CRL's nextUpdate has passed."""
        with self._lock:
            self.crl.check_fresh()

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
                      timeout: float = 5.0, state: Path | None = None) -> dict[str, str]:
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
    try:
        check_key_mode(Path(key), "this member's private key")
    except KeyFileError as exc:
        raise CertError(str(exc)) from None
    encrypted = is_encrypted(Path(key).read_bytes())
    context.load_cert_chain(certfile=str(cert), keyfile=str(key),
                            password=(lambda: passphrase_for(Path(key))) if encrypted else None)
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
    if crl is not None and _CRLCache(crl, load_cert(ca), HighWater(state)).revoked(peer.serial_number):
        raise AuthenticationError("revoked", f"the coordinator's certificate {peer.serial_number:x} is revoked")
    return describe_cert(peer)
