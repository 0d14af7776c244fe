"""Who holds a run key: organisation identities, signed per-run keys, and their check against the consortium CA.

Why: every party-to-party message goes through the coordinator, and the coordinator is also the
dealer of correlated randomness. If it could substitute a party's per-run public keys (the X25519
key of the sealed channels, SecAgg's keys), it would sit in the middle of every sealed channel and,
as dealer, open every masked value. So each party signs its per-run public keys — bound to the run
id, the protocol, its protocol role and its name (`signed_keys_payload`) — with its organisation's
certificate key (ECDSA P-256, the key of its mutual-TLS certificate), and every peer checks that
signature, and the certificate against the consortium CA (chain, validity dates, revocation, name,
role, key usage; the CA itself must be a CA certificate inside its own validity, and no member
certificate may outlive it), before it derives any channel or mask from the key. The CRL's
nextUpdate is checked at every check, and a CRL file is re-read at every check.

Threat model: the coordinator and the network may be malicious — drop, replay, reorder or rewrite
any relayed message — but hold neither a member's certificate key nor the CA key. A substituted key
then comes with no signature, a signature that does not verify, a certificate the CA did not issue,
or another member's certificate; each is refused with an `IdentityError` naming the peer. A key
replayed from another run or protocol is refused because the payload binds both. Not covered: a
stolen member or CA key, and a coordinator that withholds messages (denial of service).

What each role learns: every peer and the coordinator learn each party's certificate (name, role,
organisation, certificate public key, serial, validity: public within the consortium) and its per-run
public keys, which are public by design. No secret leaves a party.

Simulated runs (tests, the demo, `sampan run`) use an in-memory CA made per run
(`simulated_consortium`): it issues one certificate per member and its key is dropped, so nobody in
the process — the in-process coordinator included — can mint another member's certificate later.
There is deliberately no process-wide default identity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import struct
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sampan.errors import ProtocolError

__all__ = [
    "IdentityError", "PartyIdentity", "IdentityVerifier", "SignedKeys", "signed_keys_payload", "sign_keys",
    "verify_keys", "certificate_identity", "check_certificate", "check_authority", "load_crl",
    "NAME_RE", "crl_number",
]

_DOMAIN = b"sampan/signed-keys/v1\n"
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning (RFC 9336)
URI_PREFIX = "urn:sampan:"
# A member name (CN). Always checked with `fullmatch` ('$' would accept a trailing newline: 'bank\n').
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class IdentityError(ProtocolError, ValueError):
    """A peer's certificate or key signature that must not be trusted; says which peer and why.

    `reason` is a short code (unknown_ca, expired, not_yet_valid, revoked, wrong_name, wrong_role,
    bad_key_usage, bad_certificate, bad_signature, unsigned, bad_crl, stale_crl, crl_rollback, bad_key, bad_ca,
    ca_expired, ca_not_yet_valid, outlives_ca).
    """

    def __init__(self, peer: str | None, reason: str, detail: str) -> None:
        self.peer, self.reason, self.detail = peer, reason, detail
        super().__init__(f"peer {peer!r} is not authenticated ({reason}): {detail}" if peer else
                         f"{reason}: {detail}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def certificate_identity(cert: x509.Certificate, peer: str | None = None) -> tuple[str, str]:
    """(name, role) from the certificate's CN and OU."""
    name, role = _attr(cert.subject, NameOID.COMMON_NAME), _attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not name or not role:
        raise IdentityError(peer, "bad_certificate", "certificate lacks a Sampan name (CN) or role (OU)")
    if not NAME_RE.fullmatch(name):
        raise IdentityError(peer, "bad_certificate", f"certificate name (CN) {name!r} is not a Sampan member name")
    return name, role


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    """The CRL's CRLNumber extension (None without one): orders CRLs, so an older one can be refused."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return None


def load_certificate(data: bytes | x509.Certificate, peer: str | None = None) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    try:
        return x509.load_pem_x509_certificate(bytes(data))
    except ValueError as exc:
        raise IdentityError(peer, "bad_certificate", f"unreadable certificate: {exc}") from None


def load_crl(data: bytes, ca: x509.Certificate, *, now: dt.datetime | None = None,
             source: str = "CRL") -> x509.CertificateRevocationList:
    """A CRL, checked: signed by the consortium CA and not past its nextUpdate.

    A stale list could hide a revocation.
    """
    try:
        crl = x509.load_pem_x509_crl(bytes(data))
    except ValueError as exc:
        raise IdentityError(None, "bad_crl", f"{source} is not a PEM CRL ({exc})") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise IdentityError(None, "bad_crl", f"{source} is not signed by the consortium CA")
    next_update = crl.next_update_utc
    if next_update is not None and (now or _now()) > next_update:
        raise IdentityError(None, "stale_crl", f"{source} expired at {next_update.isoformat()} (nextUpdate); "
                            "ask the consortium operator for a current one")
    return crl


def check_authority(ca: x509.Certificate, *, now: dt.datetime | None = None, peer: str | None = None) -> None:
    """The trust anchor itself: a CA certificate (BasicConstraints ca=True, keyCertSign if KeyUsage is
    present) inside its own validity. An expired CA vouches for nobody, however long its members'
    certificates claim to run."""
    _check_is_ca(ca, peer)
    at = now or _now()
    if at < ca.not_valid_before_utc:
        raise IdentityError(peer, "ca_not_yet_valid", f"the consortium CA is valid only from {ca.not_valid_before_utc}")
    if at > ca.not_valid_after_utc:
        raise IdentityError(peer, "ca_expired", f"the consortium CA expired at {ca.not_valid_after_utc}; "
                            "the consortium operator must issue a new CA and certificates")


_ISSUED_CACHE_SIZE = 4096  # certificates per verifier whose CA signature is remembered


def _check_is_ca(ca: x509.Certificate, peer: str | None = None) -> None:
    try:
        basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise IdentityError(peer, "bad_ca", "the trusted consortium certificate is not a CA certificate "
                            "(BasicConstraints ca=True missing)")
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise IdentityError(peer, "bad_ca", "the trusted consortium certificate may not sign certificates")


def check_certificate(cert: x509.Certificate, ca: x509.Certificate, *, peer: str | None = None,
                      role: str | None = None, revoked: frozenset[int] = frozenset(),
                      now: dt.datetime | None = None, signing: bool = True,
                      issuer_checked: bool = False) -> tuple[str, str]:
    """The checks every member certificate passes: issued by a valid CA (`check_authority`), in date and not
    outliving the CA, not revoked, named, right role.

    `peer` is the name the certificate must carry (CN), `role` the role it must carry (OU). With
    `signing`, the certificate must also allow digital signatures on a P-256 key. `issuer_checked`: the
    caller has already verified the CA's signature on these exact certificate bytes (a cache); every other
    check, dates and revocation included, still runs. Returns (name, role).
    """
    if not issuer_checked:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise IdentityError(peer, "unknown_ca", "certificate is not issued by the consortium CA") from None
    at = now or _now()
    check_authority(ca, now=at, peer=peer)
    if cert.not_valid_after_utc > ca.not_valid_after_utc:
        raise IdentityError(peer, "outlives_ca", f"certificate is valid until {cert.not_valid_after_utc}, after its "
                            f"CA expires ({ca.not_valid_after_utc}); the CA did not vouch for that long")
    if at < cert.not_valid_before_utc:
        raise IdentityError(peer, "not_yet_valid", f"certificate is valid only from {cert.not_valid_before_utc}")
    if at > cert.not_valid_after_utc:
        raise IdentityError(peer, "expired", f"certificate expired at {cert.not_valid_after_utc}")
    name, cert_role = certificate_identity(cert, peer)
    if cert.serial_number in revoked:
        raise IdentityError(peer, "revoked", f"certificate {cert.serial_number:x} of {name!r} is revoked")
    if peer is not None and name != peer:
        raise IdentityError(peer, "wrong_name", f"certificate is issued to {name!r}, not to {peer!r}")
    if role is not None and cert_role != role:
        raise IdentityError(peer, "wrong_role", f"certificate is for a {cert_role}, not a {role}")
    if signing:
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is None or not usage.digital_signature:
            raise IdentityError(peer, "bad_key_usage", "certificate does not allow digital signatures")
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise IdentityError(peer, "bad_key", "certificate key is not ECDSA P-256")
    return name, cert_role


@dataclass(frozen=True)
class PartyIdentity:
    """One organisation's certificate and its private key: what signs its per-run keys. Lives only in its process."""

    name: str
    role: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    def __post_init__(self) -> None:
        name, role = certificate_identity(self.certificate, self.name)
        if (name, role) != (self.name, self.role):
            raise IdentityError(self.name, "wrong_name", f"own certificate names {name!r} ({role}), "
                                f"not {self.name!r} ({self.role})")
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if self.private_key.public_key().public_bytes(*spki) != self.certificate.public_key().public_bytes(*spki):
            raise IdentityError(self.name, "bad_key", "the private key does not belong to the certificate")

    @classmethod
    def from_pem(cls, certificate_pem: bytes, key_pem: bytes, *, password: bytes | None = None) -> PartyIdentity:
        """From a member's TLS certificate and key (deployment: the party agent's own files)."""
        cert = load_certificate(certificate_pem)
        try:
            key = serialization.load_pem_private_key(key_pem, password=password)
        except (ValueError, TypeError) as exc:
            raise IdentityError(None, "bad_key", f"not a PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise IdentityError(None, "bad_key", "the certificate key must be ECDSA P-256")
        name, role = certificate_identity(cert)
        return cls(name, role, cert, key)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, payload: bytes) -> bytes:
        """ECDSA-SHA256 (DER) over `payload`."""
        return self.private_key.sign(payload, ec.ECDSA(hashes.SHA256()))


class IdentityVerifier:
    """The consortium CA (and CRL) a party checks its peers' certificates and key signatures against.

    The CRL's nextUpdate is checked at every check, not only when the list is read, so a list that goes
    stale during a run stops authenticating peers. A CRL file is re-read at every check and re-parsed
    whenever its bytes change (compared by SHA-256, not by mtime: a copy that keeps the old mtime —
    `cp -p`, `rsync -t`, `tar x` — still takes effect).

    CRLs are ordered by their CRLNumber: the highest number accepted is kept (in `state`, a file of the
    party's state folder, when given, so it survives restarts) and a CRL with a lower number — an older,
    still validly signed list put back in place to un-revoke a certificate — is refused (`crl_rollback`).
    Once a numbered CRL was accepted, one without a number counts as 0 and is refused too.

    `signing_names` (R14-ENT-1): the names the CA issued an organisation signing certificate to (documentSigning,
    a key held in an HSM), read from the CA's signed issuance record (`sampan.deploy.identity_source.
    issued_signing_names`). For those names `verify` accepts only a signing certificate's signatures: the TLS
    key is a file on the member's machine, and whoever copies it must not sign run keys or approvals. Without
    `signing_names` (no issuance record configured) a TLS certificate's signatures are accepted for every name.
    """

    def __init__(self, ca: x509.Certificate, crl: x509.CertificateRevocationList | None = None, *,
                 crl_path: str | Path | None = None, state: str | Path | None = None,
                 signing_names: Callable[[], Collection[str]] | None = None) -> None:
        from sampan.files import HighWater

        self._signing_names = signing_names
        _check_is_ca(ca)  # its dates are checked at every check (`check_certificate`): it may expire mid-run
        self.ca = ca
        self._high = HighWater(state)
        self._crl_path = Path(crl_path) if crl_path else None
        self._crl_digest: bytes | None = None
        self._issued: dict[bytes, x509.Certificate] = {}  # certificate bytes whose CA signature verified
        self._lock = threading.Lock()
        self._revoked: frozenset[int] = frozenset()
        self._next_update: dt.datetime | None = None
        self._source = "CRL"
        if crl is not None:
            self._load(crl.public_bytes(serialization.Encoding.PEM), "CRL")

    @classmethod
    def from_files(cls, ca: str | Path, crl: str | Path | None = None, *, state: str | Path | None = None,
                   signing_names: Callable[[], Collection[str]] | None = None) -> IdentityVerifier:
        """Deployment: the consortium CA file and, if configured, the CRL file (re-read at every check);
        `state`: where the highest CRL number accepted is kept."""
        try:
            ca_cert = x509.load_pem_x509_certificate(Path(ca).read_bytes())
        except (OSError, ValueError) as exc:
            raise IdentityError(None, "bad_certificate", f"consortium CA {str(ca)!r} cannot be read: {exc}") from None
        check_authority(ca_cert)  # an expired CA is refused at run open, not at the first peer
        verifier = cls(ca_cert, crl_path=crl, state=state, signing_names=signing_names)
        verifier.revoked_serials()  # a bad or stale CRL is refused now, not at the first peer
        return verifier

    def _load(self, data: bytes, source: str) -> None:
        crl = load_crl(data, self.ca, source=source)
        number, highest = crl_number(crl) or 0, self._high.get("crl_number")
        if number < highest:
            raise IdentityError(None, "crl_rollback", f"{source} has CRL number {number}, below the number {highest} "
                                "already accepted: an older list (it could un-revoke a certificate); copy the CA's "
                                "current crl.pem here")
        self._high.advance("crl_number", number)
        self._revoked = frozenset(r.serial_number for r in crl)
        self._next_update = crl.next_update_utc
        self._crl_digest, self._source = hashlib.sha256(data).digest(), source

    def revoked_serials(self) -> frozenset[int]:
        """The revoked serials, from a CRL signed by the CA and current now (IdentityError otherwise)."""
        with self._lock:
            if self._crl_path is not None:
                try:
                    data = self._crl_path.read_bytes()
                except OSError as exc:
                    raise IdentityError(None, "bad_crl", f"CRL {str(self._crl_path)!r} cannot be read: {exc}") from None
                if hashlib.sha256(data).digest() != self._crl_digest:
                    self._load(data, f"CRL {self._crl_path}")
            if self._next_update is not None and _now() > self._next_update:
                raise IdentityError(None, "stale_crl", f"{self._source} expired at {self._next_update.isoformat()} "
                                    "(nextUpdate); ask the consortium operator for a current one")
            return self._revoked

    def check(
        self, peer: str, certificate: bytes | x509.Certificate, *, role: str | None = "party"
    ) -> x509.Certificate:
        """The peer's certificate, checked (CA, dates, CRL, name == peer, role, key usage)."""
        raw = certificate if isinstance(certificate, bytes) else None
        cached = self._issued.get(raw) if raw is not None else None
        cert = cached if cached is not None else load_certificate(certificate, peer)
        check_certificate(cert, self.ca, peer=peer, role=role, revoked=self.revoked_serials(),
                          issuer_checked=cached is not None)
        if raw is not None and cached is None and len(self._issued) < _ISSUED_CACHE_SIZE:
            self._issued[raw] = cert  # parsing and the CA's signature are the costly, immutable part
        return cert

    def verify(self, peer: str, certificate_pem: bytes, payload: bytes, signature: bytes, *,
               role: str | None = "party") -> x509.Certificate:
        """Raise IdentityError naming `peer` unless `signature` over `payload` is by `peer`'s valid certificate."""
        cert = self.check(peer, certificate_pem, role=role)
        if self._signing_names is not None and peer in self._signing_names() and not signing_only(cert):
            raise IdentityError(peer, "not_signing_certificate", f"{peer!r} holds an organisation signing "
                                "certificate (documentSigning, its key in an HSM): its signatures must come from "
                                "that certificate, not from its TLS certificate (whose key is a file)")
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)  # check_certificate(signing=True)
        try:
            key.verify(bytes(signature), bytes(payload), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise IdentityError(peer, "bad_signature", "the signature over its keys does not verify: the keys were "
                                "substituted or altered in transit") from None
        return cert


def signing_only(cert: x509.Certificate) -> bool:
    """Whether `cert` is an organisation signing certificate (extended key usage documentSigning)."""
    try:
        return DOCUMENT_SIGNING in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


# --- signed per-run keys -------------------------------------------------------------------------
def _field(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def signed_keys_payload(run_id: str, protocol: str, role: str, name: str, keys: Mapping[str, bytes]) -> bytes:
    """The canonical bytes a party signs: domain, run id, protocol, its protocol role, its name, its public keys.

    Length-prefixed fields, keys sorted by label, so two encodings are equal only if every field is.
    `protocol` separates uses (e.g. "vertical.channels", "secagg.keys/<label>"); `role` is the signer's
    role in that protocol (e.g. "label_holder", "partner", "client").
    """
    parts = [_DOMAIN, _field(run_id.encode()), _field(protocol.encode()), _field(role.encode()),
             _field(name.encode()), struct.pack(">I", len(keys))]
    for label in sorted(keys):
        parts += [_field(label.encode()), _field(bytes(keys[label]))]
    return b"".join(parts)


@dataclass(frozen=True)
class SignedKeys:
    """A party's endorsement of its per-run keys: its certificate (PEM) and its signature over the payload."""

    certificate_pem: bytes
    signature: bytes

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """As uint8 arrays for a `sampan.wire.Message` (keys `<prefix>certificate`, `<prefix>signature`)."""
        return {f"{prefix}certificate": np.frombuffer(self.certificate_pem, dtype=np.uint8),
                f"{prefix}signature": np.frombuffer(self.signature, dtype=np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], peer: str, prefix: str = "") -> SignedKeys:
        try:
            cert, sig = arrays[f"{prefix}certificate"], arrays[f"{prefix}signature"]
        except KeyError:
            raise IdentityError(peer, "unsigned", "its keys arrived without a certificate and signature") from None
        as_bytes = [np.ascontiguousarray(a, dtype=np.uint8).tobytes() for a in (cert, sig)]
        return cls(as_bytes[0], as_bytes[1])


def sign_keys(identity: PartyIdentity, run_id: str, protocol: str, role: str, keys: Mapping[str, bytes]) -> SignedKeys:
    """Sign this party's per-run public keys (see `signed_keys_payload`)."""
    payload = signed_keys_payload(run_id, protocol, role, identity.name, keys)
    return SignedKeys(identity.certificate_pem, identity.sign(payload))


def verify_keys(verifier: IdentityVerifier, peer: str, run_id: str, protocol: str, role: str,
                keys: Mapping[str, bytes], signed: SignedKeys) -> x509.Certificate:
    """Check that `peer` signed exactly these keys for this run, protocol and role; IdentityError otherwise."""
    payload = signed_keys_payload(run_id, protocol, role, peer, keys)
    return verifier.verify(peer, signed.certificate_pem, payload, signed.signature)


def __getattr__(name: str) -> object:
    """The simulated consortium lives in `sampan.crypto.simulated_ca`; still importable from here."""
    if name in ("SimulatedCA", "simulated_consortium"):
        from sampan.crypto import simulated_ca

        return getattr(simulated_ca, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
