"""TOTP seeds sealed at rest: AES-256-GCM under a key kept in a file outside the database.

Why: a console account's TOTP seed is a shared secret; kept in the clear in `cp_users.totp_secret`, anyone with
a copy of the database (a store backup, a replica, a dump) can compute every code, and the second factor stops
helping the moment a password hash from the same copy is cracked (R14-ENT-3). Sealed, the database (and a
`sampan store backup` archive) holds only ciphertext; the key lives in a 0600 file beside the store's audit key:
next to a SQLite store (`<db>.totp-key`), else under ~/.config/sampan/totp-keys/, or wherever
$SAMPAN_TOTP_KEY says. The ciphertext is bound to the account's id (associated data), so a database writer
cannot move one person's seed to another account.

Format: base64url (no padding) of nonce (12 bytes) || AES-GCM(the seed's 20 raw bytes): 64 characters, the
column's width. A 32-character value is a seed stored before sealing (base32, in the clear); it is still
accepted and becomes sealed at the next enrolment.

Not covered: an attacker holding both the database and the key file (keep the key file out of database
backups: copy it separately, as you do the audit key); a restore on another machine without the key file
cannot open the seeds, and the affected accounts must enrol their authenticator again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

from sqlalchemy.engine import Engine

__all__ = ["TotpSeal", "totp_key_path", "SealError"]

_LEGACY_LENGTH = 32  # pyotp.random_base32(): 32 base32 characters = 20 bytes
_MEMORY_KEYS: dict[str, bytes] = {}
_LOCK = threading.Lock()


class SealError(Exception):
    """A sealed seed that this key cannot open (wrong or missing key file, or an edited value)."""


def totp_key_path(url: str) -> Path | None:
    """Where the TOTP key of the store at `url` lives; None for an in-memory store (a key of this process)."""
    if os.environ.get("SAMPAN_TOTP_KEY"):
        return Path(os.environ["SAMPAN_TOTP_KEY"]).expanduser()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///") + ".totp-key").expanduser()
    if url.startswith("sqlite"):
        return None
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "sampan" / "totp-keys"
    return base / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".key")


def _load_or_create(path: Path) -> bytes:
    from sampan.files import InsecureFileError, check_private_mode

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = os.urandom(32)
        from sampan.files import create_exclusive_bytes

        if create_exclusive_bytes(path, base64.b64encode(key) + b"\n"):  # else another process made it: use theirs
            return key
    try:
        check_private_mode(path, "TOTP key")
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (OSError, InsecureFileError, ValueError) as exc:
        raise SealError(f"TOTP key file {str(path)!r}: {exc}") from None
    if len(key) != 32:
        raise SealError(f"TOTP key file {str(path)!r} does not hold a 32-byte key")
    return key


class TotpSeal:
    """Seals and opens one store's TOTP seeds; the key is read (or made) at first use."""

    def __init__(self, path: Path | None, memory_id: str = "") -> None:
        self.path, self._memory_id = path, memory_id
        self._key: bytes | None = None

    @classmethod
    def for_engine(cls, engine: Engine, path: str | Path | None = None) -> TotpSeal:
        url = engine.url.render_as_string(hide_password=True)
        return cls(Path(path).expanduser() if path else totp_key_path(url), url)

    def _aead(self) -> object:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if self._key is None:
            if self.path is None:
                with _LOCK:
                    self._key = _MEMORY_KEYS.setdefault(self._memory_id, os.urandom(32))
            else:
                self._key = _load_or_create(self.path)
        return AESGCM(self._key)

    @staticmethod
    def _aad(user_id: int) -> bytes:
        return f"sampan-totp-v1:{int(user_id)}".encode()

    def seal(self, user_id: int, secret: str) -> str:
        """The stored form of the base32 seed `secret` for account `user_id`."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
        aead = self._aead()
        assert isinstance(aead, AESGCM)
        nonce = os.urandom(12)
        return base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, raw, self._aad(user_id))).decode().rstrip("=")

    def open(self, user_id: int, stored: str) -> str:
        """The base32 seed from its stored form (a legacy clear seed is returned as it is)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(stored) == _LEGACY_LENGTH:
            return stored
        aead = self._aead()
        assert isinstance(aead, AESGCM)
        try:
            data = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
            raw = aead.decrypt(data[:12], data[12:], self._aad(user_id))
        except (InvalidTag, ValueError) as exc:
            raise SealError("this account's authenticator seed cannot be opened with this store's TOTP key "
                            f"({type(exc).__name__}; restored without its key file?)") from None
        return base64.b32encode(raw).decode().rstrip("=")
