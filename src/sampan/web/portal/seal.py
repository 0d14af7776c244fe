"""Bench tokens sealed at rest: AES-256-GCM under a key file (0600) in the portal's folder, bound to the project.

Why: the token an applicant gives the portal opens its benchmark API; kept in the clear, any copy of the database
(a backup, a replica, a dump) would hand it out. Sealed, the database holds only ciphertext; the key lives in
`<portal folder>/bench-token.key`, outside the database, created once with 0600 and refused when others can read
it. The project id is the associated data, so a database writer cannot move one project's token to another.
The token is opened only to hand it to the qualification check and the evaluation runner; it is never returned by
a `Portal` method, logged or written to the audit log.
Not covered: an attacker with both the database and the key file (keep the key out of database backups).
`sampan.web.totp_seal` seals TOTP seeds the same way; its format is fixed to 20-byte base32 seeds, so the portal
has this small sibling instead of reusing it.
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

from sampan.files import InsecureFileError, check_private_mode, create_exclusive_bytes, private_directory

__all__ = ["BenchTokenSeal", "SealError", "KEY_FILE"]

KEY_FILE = "bench-token.key"


class SealError(Exception):
    """A sealed token this key cannot open (wrong or missing key file, or an edited value)."""


class BenchTokenSeal:
    """Seals and opens the projects' bench tokens; the key is read (or made) at first use."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / KEY_FILE
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def _load(self) -> bytes:
        with self._lock:
            if self._key is not None:
                return self._key
            if not self.path.exists():
                private_directory(self.path.parent)
                key = os.urandom(32)
                if create_exclusive_bytes(self.path, base64.b64encode(key) + b"\n"):
                    self._key = key
                    return key
            try:
                check_private_mode(self.path, "bench token key")
                key = base64.b64decode(self.path.read_bytes().strip(), validate=True)
            except (OSError, InsecureFileError, ValueError) as exc:
                raise SealError(f"bench token key file {str(self.path)!r}: {exc}") from None
            if len(key) != 32:
                raise SealError(f"bench token key file {str(self.path)!r} does not hold a 32-byte key")
            self._key = key
            return key

    @staticmethod
    def _aad(project_id: int) -> bytes:
        return f"sampan-portal-bench-token-v1:{int(project_id)}".encode()

    def seal(self, project_id: int, token: str) -> str:
        """The stored form of `token` for project `project_id`: base64url(nonce || AES-GCM ciphertext)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        sealed = AESGCM(self._load()).encrypt(nonce, token.encode(), self._aad(project_id))
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, project_id: int, stored: str) -> str:
        """The token from its stored form; SealError when the key or the value does not fit."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            data = base64.urlsafe_b64decode(stored.encode())
            return AESGCM(self._load()).decrypt(data[:12], data[12:], self._aad(project_id)).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealError(f"project {project_id}'s bench token cannot be opened with this portal's key "
                            f"({type(exc).__name__}): enter the token again") from None
