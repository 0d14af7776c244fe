"""Watermark keys: 32 secret bytes made locally with `secrets`, stored as a small JSON file 0600.

The key seeds every carrier (sampan.watermark.carriers); whoever holds it can detect and embed the mark
(and remove it exactly), so it is kept like Sampan's other private keys: written 0600 beside nothing else,
and a key file that other local users can read is refused on load. The key does NOT stop forging or
removal by someone holding marked images: the pattern is fixed and periodic, so one marked image lets
anyone copy it onto another image and four with the same payload let anyone subtract it (see the package
note, tests/attacks/test_revw_*.py). Keep it secret so others cannot detect, nor mark images at will.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from sampan.files import InsecureFileError, atomic_write_bytes, check_private_mode, create_exclusive_bytes
from sampan.watermark.errors import WatermarkKeyError

__all__ = ["WatermarkKey", "generate_key", "save_key", "load_key", "KEY_BYTES"]

KEY_BYTES = 32
_FORMAT = "sampan-watermark-key/1"
_MAX_KEY_FILE = 4096


@dataclass(frozen=True)
class WatermarkKey:
    """A secret watermark key; `key_id` is a public label (never derived from the secret)."""

    secret: bytes
    key_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != KEY_BYTES:
            raise WatermarkKeyError(f"watermark key field 'secret' must be {KEY_BYTES} bytes")
        if not isinstance(self.key_id, str) or not self.key_id or len(self.key_id) > 128:
            raise WatermarkKeyError("watermark key field 'key_id' must be a non-empty string of at most 128 chars")

    def __repr__(self) -> str:  # never print the secret
        return f"WatermarkKey(key_id={self.key_id!r}, secret=<{KEY_BYTES} bytes>)"


def generate_key(key_id: str | None = None) -> WatermarkKey:
    """A fresh key from the OS CSPRNG; the id is random too unless given."""
    return WatermarkKey(secrets.token_bytes(KEY_BYTES), key_id or f"wm-{secrets.token_hex(6)}")


def save_key(key: WatermarkKey, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write `key` as JSON, mode 0600 (complete or nothing); refuse to replace an existing file unless asked."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and stat.S_IMODE(parent.stat().st_mode) & 0o002:
        raise WatermarkKeyError(f"folder {str(parent)!r} of watermark key file {target.name!r} is writable by other "
                                f"users; use a private folder (chmod 700 {parent})")
    data = json.dumps({"format": _FORMAT, "key_id": key.key_id,
                       "secret": base64.b64encode(key.secret).decode("ascii")}).encode() + b"\n"
    try:
        if overwrite:
            atomic_write_bytes(target, data, mode=0o600)
        elif not create_exclusive_bytes(target, data):
            raise WatermarkKeyError(f"watermark key file {str(target)!r} exists; refusing to overwrite it")
    except InsecureFileError as exc:
        raise WatermarkKeyError(str(exc)) from None
    return target


def load_key(path: str | os.PathLike[str]) -> WatermarkKey:
    """Read a key written by `save_key`, refusing a file that group or others may read or write."""
    target = Path(path)
    try:
        check_private_mode(target, "watermark key")
    except FileNotFoundError:
        raise WatermarkKeyError(f"watermark key file {str(target)!r} does not exist") from None
    except InsecureFileError as exc:
        raise WatermarkKeyError(str(exc)) from None
    with open(target, "rb") as handle:
        raw = handle.read(_MAX_KEY_FILE + 1)
    if len(raw) > _MAX_KEY_FILE:
        raise WatermarkKeyError(f"watermark key file {str(target)!r} is larger than {_MAX_KEY_FILE} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WatermarkKeyError(f"watermark key file {str(target)!r} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise WatermarkKeyError(f"watermark key file {str(target)!r}: field 'format' must be {_FORMAT!r}")
    secret = doc.get("secret")
    if not isinstance(secret, str):
        raise WatermarkKeyError(f"watermark key file {str(target)!r}: field 'secret' is missing")
    try:
        secret_bytes = base64.b64decode(secret, validate=True)
    except ValueError:
        raise WatermarkKeyError(f"watermark key file {str(target)!r}: field 'secret' is not base64") from None
    key_id = doc.get("key_id")
    if not isinstance(key_id, str):
        raise WatermarkKeyError(f"watermark key file {str(target)!r}: field 'key_id' is missing")
    try:
        return WatermarkKey(secret_bytes, key_id)
    except WatermarkKeyError as exc:
        raise WatermarkKeyError(f"watermark key file {str(target)!r}: {exc}") from None
