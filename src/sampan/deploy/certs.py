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

`CertificateAuthenticator` (in `cert_checks`, re-exported here) is what the coordinator applies to every stream after
gRPC's TLS layer
has verified the chain: the CA signature again, the validity period, the CRL (and that it is still
fresh: its nextUpdate has not passed), the role, membership, and the pin of the member's public key.

The CA folder, its lock and the signed issuance record are in `ca_store`; the CRL, `revoke` and `refresh_crl`
in `ca_revocation` (re-exported here). This module issues: `init_ca`, `create_request`, `sign_request`, `repin`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sampan.deploy.ca_revocation import _write_crl, refresh_crl, revoke
from sampan.deploy.ca_store import (
    CLOCK_SLACK,
    ROLES,
    URI_PREFIX,
    CAFiles,
    _ca_lock,
    _check_name,
    _check_role,
    _load_key,
    _read_record,
    _write_index,
    write_private,
    write_public,
)

# The coordinator- and party-side checks live in cert_checks; re-exported here so existing imports keep working.
from sampan.deploy.cert_checks import (
    CertError,
    CertificateAuthenticator,
    IssuedRecord,
    _attr,
    _now,
    _read_pins,
    cert_identity,
    describe_cert,
    load_cert,
    read_crl,
    spki_pin,
    spki_pin_of_key,
)
from sampan.deploy.coordinator_probe import probe_coordinator
from sampan.deploy.keyfiles import write_private_key
from sampan.files import private_directory

__all__ = [
    "ROLES",
    "CertError",
    "CAFiles",
    "init_ca",
    "create_request",
    "sign_request",
    "revoke",
    "spki_pin",
    "load_cert",
    "cert_identity",
    "CertificateAuthenticator",
    "probe_coordinator",
    "write_private",
    "describe_cert",
    "IssuedRecord",
    "refresh_crl",
    "repin",
    "read_crl",
]

DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning (RFC 9336): not TLS


def init_ca(
    directory: str | Path,
    *,
    name: str = "Sampan consortium CA",
    days: int = 3650,
    force: bool = False,
    passphrase: bytes | None = None,
) -> CAFiles:
    """Create the consortium CA: key (0600, encrypted if a passphrase is given), self-signed certificate,
    empty CRL and empty signed issuance record, in a 0700 folder."""
    files = CAFiles(Path(directory))
    if files.key.exists() and not force:
        raise CertError(f"{files.key} exists; refusing to overwrite a CA key (use force to replace it)")
    private_directory(files.directory)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ca")]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SLACK)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private_key(files.key, key, passphrase)
    write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    with _ca_lock(files):
        _write_index(files, {}, key, 1)
        _write_crl(files, key, cert, {}, number=1)
    return files


def create_request(
    name: str,
    role: str,
    directory: str | Path,
    *,
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    organisation: str | None = None,
    passphrase: bytes | None = None,
) -> tuple[Path, Path]:
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
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attrs))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    private_directory(out)
    write_private_key(key_path, key, passphrase)
    write_public(csr_path, csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def _other_keys(index: Mapping[str, Mapping[str, object]], name: str, pin: str, usage: str = "tls") -> list[str]:
    """Serials of unrevoked certificates the CA issued for `name` to a key other than `pin`, for the same usage
    ("tls", or "signing": an organisation key held in an HSM, `signing_only`)."""
    return sorted(
        serial for serial, e in index.items() if e.get("name") == name and e.get("pin") != pin
        and "revoked_at" not in e and e.get("usage", "tls") == usage
    )


def sign_request(
    csr_path: str | Path,
    ca_directory: str | Path,
    *,
    out: str | Path | None = None,
    days: int = 365,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    rekey: bool = False,
    signing_only: bool = False,
) -> Path:
    """The CA signs a member's CSR after checking its signature, name and role.

    `signing_only`: a certificate for the member's signatures only (extended key usage documentSigning, no
    TLS use), for an organisation key held in an HSM (`sampan.deploy.identity_source`); it sits beside the
    member's TLS certificate and is never a key pin. One signing key per name, as for TLS keys.

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
        return _sign_locked(
            files,
            csr,
            csr_path,
            name,
            role,
            pin,
            ca_key,
            ca_cert,
            out=out,
            days=days,
            not_before=not_before,
            not_after=not_after,
            rekey=rekey,
            signing_only=signing_only,
        )


def _sign_locked(
    files: CAFiles,
    csr: x509.CertificateSigningRequest,
    csr_path: str | Path,
    name: str,
    role: str,
    pin: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    out: str | Path | None,
    days: int,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    rekey: bool,
    signing_only: bool = False,
) -> Path:
    index, generation = _read_record(files)
    clashing = _other_keys(index, name, pin, "signing" if signing_only else "tls")
    if clashing and not rekey:
        raise CertError(
            f"{csr_path}: this CA already issued {name!r} to another key (serial "
            f"{', '.join(clashing)}); a second key for a name is refused. If {name!r} really "
            "changed its key, re-key deliberately (`sampan certs sign --rekey`): that revokes the "
            "old certificate"
        )
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}:{name}")]
    if role == "coordinator":
        names += [n for n in sans if isinstance(n, (x509.DNSName, x509.IPAddress))]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if role == "coordinator" else ExtendedKeyUsageOID.CLIENT_AUTH
    if signing_only:
        usage = DOCUMENT_SIGNING
    now = _now()
    start = not_before or now - CLOCK_SLACK
    end = min(not_after or now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)  # peers refuse a longer one
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out_path = Path(out) if out else Path(csr_path).with_suffix(".crt")
    serial = format(cert.serial_number, "x")
    for old in clashing:  # rekey: the old keys stop being valid in the same step
        index[old]["revoked_at"] = now.isoformat()
        index[old]["superseded_by"] = serial
    index[serial] = {"name": name, "role": role, "not_after": end.isoformat(), "pin": pin, "issued_at": now.isoformat()}
    if signing_only:
        index[serial]["usage"] = "signing"
    _write_index(files, index, ca_key, generation + 1)
    if clashing:
        _write_crl(files, ca_key, ca_cert, {s: e for s, e in index.items() if "revoked_at" in e})
    write_public(out_path, cert.public_bytes(serialization.Encoding.PEM))
    return out_path


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
