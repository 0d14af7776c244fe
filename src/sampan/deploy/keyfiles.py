"""Private key files at rest: written 0600, refused when others can read them, optionally passphrase-encrypted.

Threat model: another local user (or a backup job, a shared volume) reading a member's private key
file. A key file whose group/world bits are set is refused when loaded, with the chmod that fixes it;
`SAMPAN_INSECURE_KEY_MODE=1` overrides that refusal for a throw-away test setup only (logged as an
error every time). A key may be encrypted at rest with a passphrase (PKCS#8 with the best encryption
`cryptography` offers); the passphrase comes from `SAMPAN_KEY_PASSPHRASE`, else an interactive prompt,
and the decrypted key exists only in this process's memory.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from sampan.errors import ConfigError
from sampan.files import InsecureFileError, atomic_write_bytes, check_private_mode

__all__ = ["KeyFileError", "PASSPHRASE_ENV", "INSECURE_ENV", "key_pem", "write_private_key", "load_private_key",
           "unencrypted_pem", "is_encrypted", "passphrase_from_env", "passphrase_for", "check_key_mode"]

log = logging.getLogger("sampan.deploy.security")
PASSPHRASE_ENV = "SAMPAN_KEY_PASSPHRASE"
INSECURE_ENV = "SAMPAN_INSECURE_KEY_MODE"


class KeyFileError(ConfigError):
    """A private key file that cannot be used: missing, readable by others, wrong passphrase, not a key."""


def key_pem(key: PrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def write_private_key(path: Path, key: PrivateKeyTypes, passphrase: bytes | None = None) -> None:
    """Atomically, created 0600 (never world-readable, not even for an instant)."""
    atomic_write_bytes(path, key_pem(key, passphrase), 0o600)


def is_encrypted(pem: bytes) -> bool:
    return b"ENCRYPTED" in pem.split(b"\n", 1)[0]


def passphrase_from_env() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def passphrase_for(path: Path) -> bytes:
    value = passphrase_from_env()
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"passphrase for {path}: ").encode()
    raise KeyFileError(f"{path} is encrypted: set ${PASSPHRASE_ENV} or run interactively to type its passphrase")


def check_key_mode(path: Path, what: str = "private key") -> None:
    try:
        check_private_mode(path, what)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {str(path)!r} does not exist") from None
    except InsecureFileError as exc:
        if os.environ.get(INSECURE_ENV) == "1":
            log.error("INSECURE: %s (accepted only because %s=1)", exc, INSECURE_ENV)
            return
        raise KeyFileError(str(exc)) from None


def load_private_key(path: str | Path, *, passphrase: bytes | None = None,
                     what: str = "private key") -> PrivateKeyTypes:
    """Load a PEM private key after checking that only its owner can read it; decrypt it if encrypted."""
    path = Path(path)
    check_key_mode(path, what)
    data = path.read_bytes()
    secret = (passphrase or passphrase_for(path)) if is_encrypted(data) else None
    try:
        return serialization.load_pem_private_key(data, password=secret)
    except TypeError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    except ValueError as exc:
        why = "wrong passphrase, or not a PEM private key" if secret else "not a PEM private key"
        raise KeyFileError(f"{path}: {why} ({exc})") from None


def unencrypted_pem(path: str | Path, *, what: str = "private key") -> bytes:
    """The key as unencrypted PEM, in memory only (gRPC's TLS takes no passphrase); checks as `load_private_key`."""
    path = Path(path)
    check_key_mode(path, what)
    data = path.read_bytes()
    if not is_encrypted(data):
        return data
    return key_pem(load_private_key(path, what=what))
