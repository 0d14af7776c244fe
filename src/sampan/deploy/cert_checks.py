"""Certificate checks on the coordinator and party side: CRL and issuance-record reading and verification,
the coordinator's `CertificateAuthenticator` (the party's `probe_coordinator` is in coordinator_probe.py, the CA in
certs.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sampan.crypto.identity import IdentityError, certificate_identity, check_certificate, crl_number
from sampan.errors import ConfigError
from sampan.files import HighWater
from sampan.transport.grpc_hub import AuthenticationError, Identity

__all__ = [
    "CertError", "load_cert", "spki_pin", "cert_identity", "describe_cert", "read_crl", "IssuedRecord",
    "CertificateAuthenticator",
]

class CertError(ConfigError):
    """A certificate file or request that cannot be used; the message says which and why."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_cert(path: str | Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise CertError(f"certificate file {str(path)!r} does not exist") from None
    except ValueError as exc:
        raise CertError(f"{path}: not a PEM certificate ({exc})") from None


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


def _canonical_entries(entries: Mapping[str, object]) -> bytes:
    return json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()


def _signed_payload(data: Mapping[str, object]) -> bytes:
    """What the CA signs in issued.json: entries, generation and signed_at (older records: the entries alone)."""
    if "generation" not in data:
        return _canonical_entries(data["entries"])  # type: ignore[arg-type]
    return _canonical_entries({k: data[k] for k in ("entries", "generation", "signed_at")})


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
            ca_key = self.ca.public_key()
            if not isinstance(ca_key, ec.EllipticCurvePublicKey):  # the CA signs with ECDSA; anything else: refused
                raise TypeError(f"the CA key is {type(ca_key).__name__}, not an EC key")
            ca_key.verify(bytes.fromhex(data["signature"]), _signed_payload(data), ec.ECDSA(hashes.SHA256()))
            number = int(data.get("generation", 0))
        except (KeyError, ValueError, InvalidSignature, TypeError, AttributeError):
            raise AuthenticationError("bad_issued", f"the issuance record {self.path} is not signed by the consortium "
                                      "CA (an unsigned or edited record: copy the CA's issued.json)") from None
        highest = self.high.get("issued_generation")
        if number < highest:
            raise AuthenticationError(
                "issued_rollback",
                f"the issuance record {self.path} has generation {number}, "
                f"below the generation {highest} already accepted: an older record put back "
                "(it would undo a re-key or revocation); copy the CA's current issued.json here",
            )
        self.high.advance("issued_generation", number)
        self.entries, self._stamp = {str(k): dict(v) for k, v in entries.items()}, stamp
        self.generation += 1
        return True

    def signing_names(self) -> frozenset[str]:
        """Names the CA issued an (unrevoked) organisation signing certificate to: their signatures must come
        from it, not from their TLS certificate (`IdentityVerifier(signing_names=...)`). An expired one still
        counts (fail closed: renew it); only the CA's revocation hands signing back to the TLS key."""
        self.refresh()
        return frozenset(str(e.get("name")) for e in self.entries.values()
                         if e.get("usage") == "signing" and "revoked_at" not in e)

    def check(self, cert: x509.Certificate, name: str, pin: str) -> None:
        """The certificate must be the CA's current issuance for `name`: listed, unrevoked, the name's one key."""
        self.refresh()
        entry = self.entries.get(format(cert.serial_number, "x"))
        if entry is None or entry.get("name") != name or entry.get("pin") != pin:
            raise AuthenticationError(
                "not_issued",
                f"certificate {cert.serial_number:x} of {name!r} is not in the "
                "CA's issuance record (copy the CA's current issued.json here)",
            )
        if entry.get("usage") == "signing":
            raise AuthenticationError(
                "not_issued",
                f"certificate {cert.serial_number:x} of {name!r} is a signing-only certificate, not for TLS",
            )
        if "revoked_at" in entry:
            raise AuthenticationError(
                "revoked",
                f"certificate {cert.serial_number:x} of {name!r} was revoked at "
                f"{entry['revoked_at']} (issuance record)",
            )
        now = _now().isoformat()
        current = {
            str(e.get("pin"))
            for e in self.entries.values()
            if e.get("name") == name and "revoked_at" not in e and str(e.get("not_after", now)) >= now
            and e.get("usage") != "signing"  # an HSM-held signing key beside the TLS key is not a second pin
        }
        if current != {pin}:
            raise AuthenticationError(
                "ambiguous_name",
                f"the CA issued {name!r} to {len(current)} different keys; "
                "none is accepted until the CA re-keys it (`sampan certs sign --rekey`)",
            )


def _read_pins(path: Path | None) -> dict[str, str]:
    """Pins set deliberately by `repin` ({"repinned": {...}}). A flat file is a pins.json that older versions
    filled on first use: exactly what cannot be trusted, so it is ignored (with a warning)."""
    if path is None or not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("repinned"), dict):
        logging.getLogger("sampan.deploy.security").warning(
            "ignoring %s: its pins were recorded on first use by an older version; pins now come from members.pin, "
            "`sampan certs repin` or the CA's issuance record",
            path,
        )
        return {}
    return {str(k): str(v).lower() for k, v in data["repinned"].items()}


class CertificateAuthenticator:
    """Coordinator policy for a peer certificate: CA, validity, CRL, role, membership, pin.

    Pins: a pin in coordinator.toml wins, then the coordinator's pins file (`repin`), then the CA's signed
    issuance record. With none of them a member is refused: a key is never trusted because it came first.
    """

    def __init__(
        self,
        ca_cert: str | Path,
        *,
        crl: str | Path | None = None,
        members: Mapping[str, str] | None = None,
        pins: Mapping[str, str] | None = None,
        pins_file: str | Path | None = None,
        issued: str | Path | None = None,
        state: str | Path | None = None,
    ) -> None:
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
            raise AuthenticationError(
                "not_a_member" if known is None else "wrong_role",
                f"{name!r} is not a member of this federation"
                if known is None
                else f"{name!r} is a {known} here but its certificate says {role}",
            )
        pin = spki_pin(cert)
        with self._lock:
            self._check_pin(cert, name, pin)
        return Identity(name, role, pin)

    def _check_pin(self, cert: x509.Certificate, name: str, pin: str) -> None:
        expected = self.pins.get(name) or _read_pins(self.pins_file).get(name)
        if expected is not None:
            if expected != pin:
                raise AuthenticationError(
                    "pin_mismatch",
                    f"{name!r} presented key {pin[:19]}…, but {expected[:19]}… "
                    "is pinned for that name (if the member re-keyed legitimately: "
                    f"`sampan certs repin {name}`)",
                )
            return
        if self.issued is None:
            raise AuthenticationError(
                "no_pin",
                f"no pin for {name!r}: set members.pin in coordinator.toml, or point "
                "tls.issued at the CA's issuance record (keys are never trusted on first use)",
            )
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
