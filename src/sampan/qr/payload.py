"""Signed item codes: one serial, its issuer and expiry, in a compact canonical binary form signed with Ed25519.

Why a fixed binary layout and base45: the Ed25519 signature alone is 64 bytes, so the QR code stays small only
if nothing else is spent. Base45 (RFC 9285) uses exactly the QR alphanumeric alphabet, which the QR encoder
packs at 5.5 bits a character (8.25 bits a byte, against 10.7 for base64 in byte mode). A typical code
(12-character serial, 8-character issuer) is about 140 characters: a version 8 symbol at error level Q.

Layout (all integers big-endian), signed as DOMAIN + body, then `sig` (64 bytes) appended:

    version  1 byte   0x01
    flags    1 byte   bit 0: expiry is a date (days since 1970-01-01), else seconds since the epoch (UTC)
                      bit 1: a copy-detection seed id follows; any other bit set is refused
    issuer   1-byte length + 1..32 ASCII characters [A-Za-z0-9._-]
    serial   1-byte length + 1..64 characters, same alphabet
    expiry   4 bytes (days or seconds, per flag bit 0)
    cdp id   1-byte length + 1..32 characters (only with flag bit 1)

Canonical: each `ItemCode` has exactly one encoding and each accepted text exactly one decoding; the decoder
refuses an unknown version, unknown flag bits, a bad length, a character outside the alphabet, trailing bytes,
non-canonical base45 and anything but the prefix `SQ:` before it. A date expiry means "valid through that UTC
day"; a datetime expiry must be timezone-aware and is kept to whole seconds.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sampan.errors import ProtocolError
from sampan.qr.keys import IssuerKey, IssuerKeyError, check_name, load_public_keys

__all__ = ["ItemCode", "ItemCodeError", "MalformedCodeError", "UnknownIssuerError", "BadSignatureError",
           "ExpiredCodeError", "PREFIX", "VERSION", "DOMAIN", "sign", "verify", "decode_unverified",
           "encode_body", "base45_encode", "base45_decode"]

PREFIX = "SQ:"
VERSION = 1
DOMAIN = b"sampan-qr-item-code/1\x00"  # a signature over an item code is never valid for another Sampan message
SIGNATURE_BYTES = 64
MAX_ISSUER, MAX_SERIAL, MAX_SEED_ID = 32, 64, 32
_FLAG_DATE, _FLAG_CDP = 0x01, 0x02
_EPOCH_DATE = dt.date(1970, 1, 1)
_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_INDEX = {c: i for i, c in enumerate(_B45)}


class ItemCodeError(ProtocolError):
    """An item code that cannot be accepted; the subclass says why and the message names the field or issuer."""


class MalformedCodeError(ItemCodeError, ValueError):
    """Text that is not a canonical Sampan item code (bad prefix, alphabet, length, version, field or tail)."""


class UnknownIssuerError(ItemCodeError):
    """A code naming an issuer the verifier has no public key for."""


class BadSignatureError(ItemCodeError):
    """A code whose signature does not verify under its issuer's key: forged, altered, or signed by another key."""


class ExpiredCodeError(ItemCodeError):
    """A correctly signed code past its expiry."""


@dataclass(frozen=True)
class ItemCode:
    """What an item code says: serial, issuer, expiry and (optionally) the id of its copy-detection seed."""

    serial: str
    issuer: str
    expiry: dt.date | dt.datetime
    cdp_seed_id: str | None = None

    def __post_init__(self) -> None:
        check_name(self.serial, "serial", MAX_SERIAL, MalformedCodeError)
        check_name(self.issuer, "issuer", MAX_ISSUER, MalformedCodeError)
        if self.cdp_seed_id is not None:
            check_name(self.cdp_seed_id, "cdp_seed_id", MAX_SEED_ID, MalformedCodeError)
        expiry = self.expiry
        if isinstance(expiry, dt.datetime):
            if expiry.tzinfo is None or expiry.utcoffset() is None:
                raise MalformedCodeError("field 'expiry' must be a date or a timezone-aware datetime (got a naive "
                                         "datetime: its instant is ambiguous)")
            expiry = expiry.astimezone(dt.UTC).replace(microsecond=0)
            if not 0 <= int(expiry.timestamp()) <= 0xFFFFFFFF:
                raise MalformedCodeError("field 'expiry' must lie between 1970 and 2106")
            object.__setattr__(self, "expiry", expiry)
        elif isinstance(expiry, dt.date):
            if expiry < _EPOCH_DATE:
                raise MalformedCodeError("field 'expiry' must not be before 1970-01-01")
        else:
            raise MalformedCodeError(f"field 'expiry' must be a date or datetime (got {type(expiry).__name__})")

    def expired(self, now: dt.datetime | None = None) -> bool:
        """True once `now` (aware; default: the current UTC time) is past the expiry."""
        now = _aware_now(now)
        if isinstance(self.expiry, dt.datetime):
            return now >= self.expiry
        return now.astimezone(dt.UTC).date() > self.expiry


def _aware_now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("'now' must be a timezone-aware datetime")
    return now


# --- base45 (RFC 9285), strict ------------------------------------------------------------------------------
def base45_encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = n % 45, n // 45
        d, e = n % 45, n // 45
        out += [_B45[c], _B45[d], _B45[e]]
    if len(data) % 2:
        c, d = data[-1] % 45, data[-1] // 45
        out += [_B45[c], _B45[d]]
    return "".join(out)


def base45_decode(text: str) -> bytes:
    """Decode base45, refusing anything another encoder could not have produced (so the text is canonical)."""
    if len(text) % 3 == 1:
        raise MalformedCodeError(f"base45 text has a dangling character (length {len(text)})")
    try:
        values = [_B45_INDEX[c] for c in text]
    except KeyError as exc:
        raise MalformedCodeError(f"character {exc.args[0]!r} is not in the base45 alphabet") from None
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025
        if n > 0xFFFF:
            raise MalformedCodeError(f"base45 group at character {i} is out of range")
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise MalformedCodeError("the last base45 group is out of range")
        out.append(n)
    return bytes(out)


# --- canonical body ------------------------------------------------------------------------------------------
def _field(value: str) -> bytes:
    raw = value.encode("ascii")
    return bytes([len(raw)]) + raw


def encode_body(code: ItemCode) -> bytes:
    """The canonical bytes of `code` (what is signed, after DOMAIN)."""
    flags = _FLAG_CDP if code.cdp_seed_id is not None else 0
    if isinstance(code.expiry, dt.datetime):
        expiry = int(code.expiry.timestamp())
    else:
        flags |= _FLAG_DATE
        expiry = (code.expiry - _EPOCH_DATE).days
    body = bytes([VERSION, flags]) + _field(code.issuer) + _field(code.serial) + struct.pack(">I", expiry)
    if code.cdp_seed_id is not None:
        body += _field(code.cdp_seed_id)
    return body


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise MalformedCodeError(f"item code ends inside field {field!r}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def name(self, field: str, max_len: int) -> str:
        size = self.take(1, field)[0]
        raw = self.take(size, field)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedCodeError(f"field {field!r} is not ASCII") from None
        return check_name(text, field, max_len, MalformedCodeError)


def _decode_body(body: bytes) -> ItemCode:
    reader = _Reader(body)
    version = reader.take(1, "version")[0]
    if version != VERSION:
        raise MalformedCodeError(f"item code version {version} is not supported (this verifier reads version "
                                 f"{VERSION})")
    flags = reader.take(1, "flags")[0]
    if flags & ~(_FLAG_DATE | _FLAG_CDP):
        raise MalformedCodeError(f"field 'flags' has unknown bits set ({flags:#04x})")
    issuer = reader.name("issuer", MAX_ISSUER)
    serial = reader.name("serial", MAX_SERIAL)
    (number,) = struct.unpack(">I", reader.take(4, "expiry"))
    expiry: dt.date | dt.datetime
    if flags & _FLAG_DATE:
        try:
            expiry = _EPOCH_DATE + dt.timedelta(days=number)
        except OverflowError:
            raise MalformedCodeError(f"field 'expiry' ({number} days) is out of range") from None
    else:
        expiry = dt.datetime.fromtimestamp(number, dt.UTC)
    seed_id = reader.name("cdp_seed_id", MAX_SEED_ID) if flags & _FLAG_CDP else None
    if reader.pos != len(body):
        raise MalformedCodeError(f"item code has {len(body) - reader.pos} trailing bytes")
    code = ItemCode(serial=serial, issuer=issuer, expiry=expiry, cdp_seed_id=seed_id)
    if encode_body(code) != body:  # belt and braces: one code, one encoding
        raise MalformedCodeError("item code is not in canonical form")
    return code


def _split(text: str) -> tuple[bytes, bytes]:
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise MalformedCodeError(f"not a Sampan item code: it must start with {PREFIX!r}")
    raw = base45_decode(text[len(PREFIX):])
    if len(raw) <= SIGNATURE_BYTES:
        raise MalformedCodeError(f"item code is too short ({len(raw)} bytes) to hold a signature")
    return raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]


def sign(code: ItemCode, key: IssuerKey) -> str:
    """The QR text of `code`, signed with its issuer's key (refused if the key belongs to another issuer)."""
    if key.issuer != code.issuer:
        raise IssuerKeyError(f"the code names issuer {code.issuer!r} but the key belongs to {key.issuer!r}")
    body = encode_body(code)
    return PREFIX + base45_encode(body + key.sign(DOMAIN + body))


def decode_unverified(text: str) -> ItemCode:
    """Parse without checking the signature: only for showing what a code claims, never for trusting it."""
    return _decode_body(_split(text)[0])


def verify(text: str, public_keys: Mapping[str, Ed25519PublicKey | bytes | str], *,
           now: dt.datetime | None = None) -> ItemCode:
    """The code in `text` if it is canonical, signed by its issuer's trusted key and not expired; else an
    ItemCodeError saying which check failed (malformed, unknown issuer, bad signature, expired)."""
    body, signature = _split(text)
    code = _decode_body(body)
    trusted = load_public_keys({k: v for k, v in public_keys.items() if k == code.issuer})
    if code.issuer not in trusted:
        raise UnknownIssuerError(f"item code {code.serial!r} names issuer {code.issuer!r}, which this verifier "
                                 f"does not trust (no public key)")
    try:
        trusted[code.issuer].verify(signature, DOMAIN + body)
    except InvalidSignature:
        raise BadSignatureError(f"item code {code.serial!r}: the signature does not verify under the key of issuer "
                                f"{code.issuer!r} (forged, altered, or signed with another key)") from None
    if code.expired(now):
        raise ExpiredCodeError(f"item code {code.serial!r} of issuer {code.issuer!r} expired on {code.expiry}")
    return code
