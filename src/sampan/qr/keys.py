"""Issuer keys for item codes: an Ed25519 key pair made locally, the private half kept in a 0600 file.

Whoever holds an issuer's private key can mint codes that verify as that issuer's, so it is stored like
Sampan's other signing keys (the audit key in `sampan.runtime.audit_chain`): PKCS#8 PEM, published complete
or not at all with `sampan.files.create_exclusive_bytes` (0600, never over an existing key unless asked), and
refused on load when other local users may read or write it. The file is a small JSON document so that the
issuer's name travels with its key; the public half is shared as 64 hex characters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sampan.errors import ConfigError
from sampan.files import InsecureFileError, atomic_write_bytes, check_private_mode, create_exclusive_bytes

__all__ = ["IssuerKey", "IssuerKeyError", "NAME_PATTERN", "check_name", "generate_issuer_key", "save_issuer_key",
           "load_issuer_key", "public_key_hex", "load_public_keys"]

# Issuer names, serials and seed ids: ASCII letters, digits, '.', '_' and '-' only, so that a name has one
# spelling (no Unicode look-alikes or normal forms) and stays short in the QR code.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
_FORMAT = "sampan-qr-issuer-key/1"
_MAX_KEY_FILE = 4096


class IssuerKeyError(ConfigError):
    """An issuer key or key file that is missing, malformed, readable by others, or not the issuer's."""


def check_name(value: object, field: str, max_len: int, error: type[Exception] = IssuerKeyError) -> str:
    """`value` if it is a non-empty name of at most `max_len` characters from NAME_PATTERN, else `error`."""
    if not isinstance(value, str) or not value or len(value) > max_len or not NAME_PATTERN.fullmatch(value):
        raise error(f"field {field!r} must be 1 to {max_len} characters from A-Z a-z 0-9 . _ - "
                    f"(got {value!r:.80})")
    return value


@dataclass(frozen=True, repr=False)
class IssuerKey:
    """One issuer's private signing key; `issuer` is the public name that item codes carry."""

    issuer: str
    private: Ed25519PrivateKey

    def __post_init__(self) -> None:
        check_name(self.issuer, "issuer", 32)
        if not isinstance(self.private, Ed25519PrivateKey):
            raise IssuerKeyError(f"issuer {self.issuer!r}: the private key must be an Ed25519 key")

    def __repr__(self) -> str:  # never print the secret
        return f"IssuerKey(issuer={self.issuer!r}, key_id={self.key_id!r})"

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def public_raw(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """A short public fingerprint (first 8 bytes of SHA-256 of the public key, hex) for logs and listings."""
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def generate_issuer_key(issuer: str) -> IssuerKey:
    """A fresh key pair from the OS CSPRNG (made here, never fetched from anyone)."""
    return IssuerKey(check_name(issuer, "issuer", 32), Ed25519PrivateKey.generate())


def save_issuer_key(key: IssuerKey, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write `key` 0600, complete or nothing; refuse to replace an existing key file unless asked."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and stat.S_IMODE(parent.stat().st_mode) & 0o002:
        raise IssuerKeyError(f"folder {str(parent)!r} of issuer key file {target.name!r} is writable by other users "
                             f"(another user could plant a file or link there); use a private folder (chmod 700 "
                             f"{parent})")
    pem = key.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode("ascii")
    data = json.dumps({"format": _FORMAT, "issuer": key.issuer, "private_key_pem": pem}).encode() + b"\n"
    try:
        if overwrite:
            atomic_write_bytes(target, data, mode=0o600)
        elif not create_exclusive_bytes(target, data):
            raise IssuerKeyError(f"issuer key file {str(target)!r} exists; refusing to overwrite it")
    except InsecureFileError as exc:
        raise IssuerKeyError(str(exc)) from None
    return target


def load_issuer_key(path: str | os.PathLike[str]) -> IssuerKey:
    """Read a key written by `save_issuer_key`, refusing a file that group or others may read or write."""
    target = Path(path)
    where = f"issuer key file {str(target)!r}"
    try:
        check_private_mode(target, "issuer key")
    except FileNotFoundError:
        raise IssuerKeyError(f"{where} does not exist") from None
    except InsecureFileError as exc:
        raise IssuerKeyError(str(exc)) from None
    with open(target, "rb") as handle:
        raw = handle.read(_MAX_KEY_FILE + 1)
    if len(raw) > _MAX_KEY_FILE:
        raise IssuerKeyError(f"{where} is larger than {_MAX_KEY_FILE} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IssuerKeyError(f"{where} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise IssuerKeyError(f"{where}: field 'format' must be {_FORMAT!r}")
    issuer = check_name(doc.get("issuer"), "issuer", 32)
    pem = doc.get("private_key_pem")
    if not isinstance(pem, str):
        raise IssuerKeyError(f"{where}: field 'private_key_pem' is missing")
    try:
        private = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise IssuerKeyError(f"{where}: field 'private_key_pem' is not a PEM private key ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise IssuerKeyError(f"{where}: field 'private_key_pem' is not an Ed25519 key")
    return IssuerKey(issuer, private)


def public_key_hex(key: IssuerKey | Ed25519PublicKey) -> str:
    """The public half as 64 hex characters: what verifiers are given (the trust list)."""
    public = key.public_key if isinstance(key, IssuerKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def load_public_keys(trusted: Mapping[str, str | bytes | Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """A verifier's trust list: issuer name -> public key (64 hex characters, 32 raw bytes or a key object)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for issuer, value in trusted.items():
        check_name(issuer, "issuer", 32)
        if isinstance(value, Ed25519PublicKey):
            keys[issuer] = value
            continue
        raw = value
        if isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raw = b""
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise IssuerKeyError(f"public key of issuer {issuer!r} must be 64 hex characters or 32 bytes")
        keys[issuer] = Ed25519PublicKey.from_public_bytes(raw)
    return keys
