"""End-to-end sealed envelopes between parties, and pairwise shared randomness.

Why: in a Sampan run every message goes through the coordinator (hub topology, one open port per
organisation). Vertical protocols still need party-to-party messages whose contents the coordinator
must not read — the coordinator is also the Beaver dealer, so a masked opening it could read would
undo the masking. Each party therefore makes a fresh X25519 key pair per run; every pair of parties
derives a shared secret (X25519 + HKDF-SHA256 bound to the run id and both names) and seals its
messages with ChaCha20-Poly1305. The coordinator relays ciphertext it cannot open or alter.

Threat model: the coordinator relays the public keys and may be malicious. A key it substitutes
would put it in the middle of every channel, so a party derives channels only from peer keys whose
signature by the peer's certificate it has checked (`sampan.crypto.identity`: consortium CA, CRL, name,
role); `SealedChannels` itself trusts the keys it is given. Keys live only for one run and only in memory.

The same pairwise secret also seeds a ChaCha20 keystream (`prg`), so two parties can draw identical
random masks without sending them.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sampan.errors import ProtocolError
from sampan.wire import Message, decode, encode

__all__ = ["ChannelError", "PartyKeys", "SealedChannels", "prg_bytes", "prg_uint64", "new_seed"]

_NONCE = 12
_ARRAYS_MAGIC = b"SMPA"
# Compact framing for sealed arrays (the hot path of secure training): code -> dtype.
_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u8"), 2: np.dtype("<i8"), 3: np.dtype("<f8"), 4: np.dtype("u1"), 5: np.dtype("<i4"),
}
_CODES = {dt: code for code, dt in _DTYPES.items()}
_MAX_ARRAYS = 64


class ChannelError(ProtocolError, ValueError):
    """A sealed envelope that does not open: wrong peer, tampered bytes or an unknown party."""


def new_seed() -> bytes:
    """32 bytes from the OS CSPRNG: a key for `prg_uint64`."""
    return os.urandom(32)


def prg_bytes(key: bytes, label: str, n: int) -> bytes:
    """`n` pseudorandom bytes: the ChaCha20 keystream under `key`, with a nonce derived from `label`.

    Distinct labels give independent streams; the same (key, label) always gives the same stream, which
    is how two holders of a key agree on masks without sending them.
    """
    if len(key) != 32:
        raise ValueError("PRG key must be 32 bytes")
    nonce = hashlib.sha256(label.encode()).digest()[:16]
    # The first 4 nonce bytes are ChaCha20's block counter: start it at zero.
    nonce = b"\0\0\0\0" + nonce[4:]
    enc = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()
    return enc.update(bytes(n))


def prg_uint64(key: bytes, label: str, n: int) -> np.ndarray:
    """`n` uniform elements of the ring Z_2^64 from `prg_bytes`."""
    return np.frombuffer(prg_bytes(key, label, 8 * n), dtype="<u8").astype(np.uint64, copy=False)


@dataclass
class PartyKeys:
    """A party's key pair for one run (never stored)."""

    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> PartyKeys:
        return cls(X25519PrivateKey.generate())

    @property
    def public_bytes(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class SealedChannels:
    """One party's sealed channels to every peer in a run.

    `roles` maps each party (this one included) to the protocol role it proved by signing its run key
    (`sampan.crypto.identity`); protocols that trust a role ask `require_role`, never a role the
    coordinator merely names in a request.
    """

    def __init__(self, me: str, keys: PartyKeys, peers: Mapping[str, bytes], run_id: str, *,
                 roles: Mapping[str, str] | None = None) -> None:
        self.me, self.run_id = me, run_id
        self.roles: dict[str, str] = dict(roles or {})
        self._aead: dict[str, ChaCha20Poly1305] = {}
        self._prg_keys: dict[str, bytes] = {}
        for peer, public in peers.items():
            if peer == me:
                continue
            try:
                shared = keys.private.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
            except ValueError as exc:
                raise ChannelError(f"party {me!r}: public key of {peer!r} is invalid: {exc}") from exc
            pair = "|".join(sorted((me, peer)))
            material = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                            info=f"sampan/v1/{run_id}/{pair}".encode()).derive(shared)
            self._aead[peer] = ChaCha20Poly1305(material[:32])
            self._prg_keys[peer] = material[32:]

    @property
    def peers(self) -> list[str]:
        return sorted(self._aead)

    def require_role(self, name: str, role: str, what: str) -> str:
        """`name`, if it proved `role` when these channels were made; ChannelError naming both otherwise."""
        if self.roles.get(name) != role:
            proved = sorted(n for n, r in self.roles.items() if r == role)
            raise ChannelError(f"party {self.me!r} refuses {what}: the request names {name!r} as the {role}, but "
                               f"{proved or 'no party'} proved that role with a signed run key")
        return name

    def _cipher(self, peer: str) -> ChaCha20Poly1305:
        try:
            return self._aead[peer]
        except KeyError:
            raise ChannelError(f"party {self.me!r} has no channel to {peer!r} (peers: {self.peers})") from None

    def seal(self, recipient: str, message: Message) -> np.ndarray:
        """Encrypt `message` for `recipient`; the result is a uint8 array that travels in any Message."""
        nonce = os.urandom(_NONCE)
        aad = f"{self.run_id}|{self.me}->{recipient}".encode()
        sealed = self._cipher(recipient).encrypt(nonce, encode(message), aad)
        return np.frombuffer(nonce + sealed, dtype=np.uint8)

    def open(self, sender: str, envelope: np.ndarray) -> Message:
        """Decrypt an envelope from `sender`; tampering or a wrong sender raises ChannelError."""
        blob = np.ascontiguousarray(envelope, dtype=np.uint8).tobytes()
        aad = f"{self.run_id}|{sender}->{self.me}".encode()
        try:
            plain = self._cipher(sender).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag:
            raise ChannelError(
                f"party {self.me!r}: envelope claimed to be from {sender!r} does not authenticate") from None
        message = decode(plain)
        if message.sender != sender or message.recipient != self.me:
            raise ChannelError(f"party {self.me!r}: envelope from {sender!r} names "
                               f"{message.sender!r}->{message.recipient!r}")
        return message

    def seal_arrays(self, recipient: str, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Like `seal`, for a few named numeric arrays in a compact frame (no JSON): the per-batch path."""
        parts = [_ARRAYS_MAGIC, struct.pack("<B", len(arrays))]
        for name, value in arrays.items():
            array = np.ascontiguousarray(value)
            code = _CODES.get(array.dtype.newbyteorder("<") if array.dtype.byteorder == "=" else array.dtype)
            raw = name.encode()
            if code is None or not 0 < len(raw) < 256 or array.ndim > 4 or len(arrays) > _MAX_ARRAYS:
                raise ChannelError(
                    f"party {self.me!r}: array {name!r} ({array.dtype}, {array.ndim}-d) cannot be sealed")
            parts += [struct.pack("<B", len(raw)), raw, struct.pack("<BB", code, array.ndim),
                      struct.pack(f"<{array.ndim}Q", *array.shape), array.astype(_DTYPES[code], copy=False).tobytes()]
        nonce = os.urandom(_NONCE)
        aad = f"{self.run_id}|{self.me}->{recipient}|arrays".encode()
        sealed = self._cipher(recipient).encrypt(nonce, b"".join(parts), aad)
        return np.frombuffer(nonce + sealed, dtype=np.uint8)

    def open_arrays(self, sender: str, envelope: np.ndarray) -> dict[str, np.ndarray]:
        blob = np.ascontiguousarray(envelope, dtype=np.uint8).tobytes()
        aad = f"{self.run_id}|{sender}->{self.me}|arrays".encode()
        try:
            plain = self._cipher(sender).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag:
            raise ChannelError(
                f"party {self.me!r}: envelope claimed to be from {sender!r} does not authenticate") from None
        return _parse_arrays(plain, sender)

    def prg(self, peer: str, label: str, n: int) -> np.ndarray:
        """Ring elements both this party and `peer` can draw, and nobody else."""
        try:
            key = self._prg_keys[peer]
        except KeyError:
            raise ChannelError(f"party {self.me!r} has no channel to {peer!r}") from None
        return prg_uint64(key, label, n)


def _parse_arrays(plain: bytes, sender: str) -> dict[str, np.ndarray]:
    """Parse an authenticated compact frame, checking every length (an authentic peer can still be buggy)."""
    def bad(why: str) -> ChannelError:
        return ChannelError(f"sealed arrays from {sender!r} are malformed: {why}")

    if plain[:4] != _ARRAYS_MAGIC or len(plain) < 5:
        raise bad("bad magic")
    count, pos, out = plain[4], 5, {}
    for _ in range(count):
        if pos >= len(plain):
            raise bad("truncated")
        n = plain[pos]
        name = plain[pos + 1:pos + 1 + n].decode("utf-8", errors="strict")
        pos += 1 + n
        if pos + 2 > len(plain):
            raise bad("truncated")
        code, ndim = plain[pos], plain[pos + 1]
        pos += 2
        if code not in _DTYPES or ndim > 4 or name in out:
            raise bad(f"array {name!r}")
        shape = struct.unpack_from(f"<{ndim}Q", plain, pos)
        pos += 8 * ndim
        dtype = _DTYPES[code]
        nbytes = int(np.prod(shape, dtype=np.uint64)) * dtype.itemsize if ndim else dtype.itemsize
        if pos + nbytes > len(plain):
            raise bad(f"array {name!r} runs past the end")
        out[name] = np.frombuffer(plain, dtype=dtype, count=nbytes // dtype.itemsize, offset=pos).reshape(shape).copy()
        pos += nbytes
    if pos != len(plain):
        raise bad("trailing bytes")
    return out
