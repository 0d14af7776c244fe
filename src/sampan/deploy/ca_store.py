"""The consortium CA's folder: its files (`CAFiles`), the exclusive lock every record-changing operation holds,
the CA-signed issuance record (`issued.json`: entries, generation, signing time), and the key/file helpers.

Shared by issuance (`sampan.deploy.certs`: `init_ca`, `sign_request`) and revocation
(`sampan.deploy.ca_revocation`: `revoke`, `refresh_crl`); the flow and threat model are in `sampan.deploy.certs`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from sampan.crypto.identity import NAME_RE
from sampan.deploy.cert_checks import CertError, _now, _signed_payload
from sampan.deploy.keyfiles import KeyFileError, load_private_key
from sampan.files import PRIVATE_FILE, atomic_write_bytes

__all__ = ["CLOCK_SLACK", "CAFiles", "ROLES", "URI_PREFIX", "write_private", "write_public"]

ROLES = ("party", "coordinator", "operator")
URI_PREFIX = "urn:sampan:"
CLOCK_SLACK = dt.timedelta(minutes=5)


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


def _load_key(path: Path, what: str = "CA key") -> ec.EllipticCurvePrivateKey:
    """A private key, refused if others can read it; decrypted with the passphrase if encrypted."""
    try:
        key = load_private_key(path, what=what)
    except KeyFileError as exc:
        raise CertError(str(exc)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{path}: expected an ECDSA key")
    return key


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


def _write_index(files: CAFiles, index: Mapping[str, object], key: ec.EllipticCurvePrivateKey, generation: int) -> None:
    """The issuance record, generation `generation`, signed by the CA together with its entries and the
    signing time, in one file replaced atomically (a coordinator never reads new entries with an old
    signature; a verifier refuses a generation below one it has seen)."""
    data: dict[str, object] = {"entries": index, "generation": int(generation), "signed_at": _now().isoformat()}
    data["signature"] = key.sign(_signed_payload(data), ec.ECDSA(hashes.SHA256())).hex()
    write_public(files.index, json.dumps(data, indent=1, sort_keys=True).encode())
