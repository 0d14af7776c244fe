"""How SecAgg+ values travel and what is signed: byte arrays, signed key bundles, survivor payloads, per-attempt
secrets.

Why apart: the client and the coordinator must encode these identically; nothing here holds state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.crypto.identity import IdentityError, signed_keys_payload
from sampan.privacy.secagg.params import KEY_BYTES

_MASK_LABEL = "secagg-pairwise-mask"
_ROLE = "client"  # the signer's role in the protocol (signed with its keys)


def _public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _u8(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).copy()


def _raw(array: np.ndarray, size: int | None = None) -> bytes:
    raw = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if size is not None and len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


def _sign(me: str, peer: str) -> int:
    return 1 if me < peer else -1


def _mask_channels(owner: str, owner_secret: bytes, peers: Mapping[str, bytes], label: str) -> SealedChannels:
    """Pairwise mask keys s_uv of `owner` with each peer: both ends (and the coordinator, once it rebuilt a
    dropped party's key) derive the same PRG key from the X25519 agreement."""
    return SealedChannels(
        owner, PartyKeys(X25519PrivateKey.from_private_bytes(owner_secret)), dict(peers), run_id=f"{label}|mask"
    )


def _stack(rows: Sequence[bytes], width: int) -> np.ndarray:
    """Equal-size byte strings as one (n, width) uint8 array: one wire array instead of n."""
    out = np.zeros((len(rows), width), dtype=np.uint8)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} bytes, expected {width}")
        out[i] = np.frombuffer(row, dtype=np.uint8)
    return out


def _rows(array: np.ndarray, count: int, width: int | None = None) -> list[bytes]:
    a = np.ascontiguousarray(array, dtype=np.uint8)
    if a.ndim != 2 or a.shape[0] != count or (width is not None and a.shape[1] != width):
        raise ValueError(f"expected a ({count}, {width or 'w'}) byte array, got shape {a.shape}")
    return [a[i].tobytes() for i in range(count)]


def _pack(rows: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings of any length as (concatenated bytes, lengths)."""
    return _u8(b"".join(rows)), np.array([len(r) for r in rows], dtype=np.int64)


def _unpack(data: np.ndarray, lengths: np.ndarray, count: int) -> list[bytes]:
    raw, sizes = _raw(data), [int(x) for x in np.asarray(lengths).ravel()]
    if len(sizes) != count or any(x < 0 for x in sizes) or sum(sizes) != len(raw):
        raise ValueError(f"expected {count} packed byte strings")
    out, at = [], 0
    for size in sizes:
        out.append(raw[at : at + size])
        at += size
    return out


def _keys_protocol(label: str) -> str:
    return f"secagg.keys/{label}"


def _survivor_payload(
    run_id: str,
    label: str,
    signer: str,
    survivors: Sequence[str],
    round_id: str | None,
    basis: str | None,
    graph: str | None,
    m_min: int | None,
) -> bytes:
    """What a party signs in the consistency round: the survivor set U3 of this run and label, bound to the
    round the attempt belongs to, the digest of the public inputs (the global model) of the vectors, the
    neighbour graph and the minimum number of contributors m_min it enforces, so the coordinator cannot tell
    different parties different rounds, models, graphs or minimums for one attempt."""
    return signed_keys_payload(
        run_id,
        f"secagg.consistency/{label}",
        _ROLE,
        signer,
        {
            "survivors": "\n".join(sorted(survivors)).encode(),
            "round": (round_id or "").encode(),
            "basis": (basis or "").encode(),
            "graph": (graph or "").encode(),
            "m_min": str(m_min or "").encode(),
        },
    )


def _round_keys(run_id: str, round_id: str, basis: str | None) -> list[str]:
    """The RoundRecords an attempt is bound to: its round, and the model its vector was computed on."""
    return [f"{run_id}/round:{round_id}"] + ([f"{run_id}/basis:{basis}"] if basis else [])


@dataclass(frozen=True)
class _Bundle:
    """A party's advertised keys with its certificate and its signature over them."""

    c_pk: bytes
    s_pk: bytes
    b_commit: bytes
    certificate: bytes
    signature: bytes

    def keys(self) -> dict[str, bytes]:
        return {"c_pk": self.c_pk, "s_pk": self.s_pk, "b_commit": self.b_commit}

    def digest(self) -> bytes:
        return hashlib.sha256(
            b"|".join([self.c_pk, self.s_pk, self.b_commit, self.certificate, self.signature])
        ).digest()


def _bundle_arrays(bundles: Sequence[_Bundle], prefix: str = "peer.") -> dict[str, np.ndarray]:
    cert, cert_len = _pack([b.certificate for b in bundles])
    sig, sig_len = _pack([b.signature for b in bundles])
    return {
        f"{prefix}c_pk": _stack([b.c_pk for b in bundles], KEY_BYTES),
        f"{prefix}s_pk": _stack([b.s_pk for b in bundles], KEY_BYTES),
        f"{prefix}b_commit": _stack([b.b_commit for b in bundles], 32),
        f"{prefix}certificate": cert,
        f"{prefix}certificate_len": cert_len,
        f"{prefix}signature": sig,
        f"{prefix}signature_len": sig_len,
    }


def _bundles_from(arrays: Mapping[str, np.ndarray], names: Sequence[str], prefix: str = "peer.") -> dict[str, _Bundle]:
    n = len(names)
    try:
        c = _rows(arrays[f"{prefix}c_pk"], n, KEY_BYTES)
        s = _rows(arrays[f"{prefix}s_pk"], n, KEY_BYTES)
        b = _rows(arrays[f"{prefix}b_commit"], n, 32)
        cert = _unpack(arrays[f"{prefix}certificate"], arrays[f"{prefix}certificate_len"], n)
        sig = _unpack(arrays[f"{prefix}signature"], arrays[f"{prefix}signature_len"], n)
    except KeyError as exc:
        raise IdentityError(None, "unsigned", f"peer keys arrived without {exc.args[0]!r}") from None
    return {p: _Bundle(c[i], s[i], b[i], cert[i], sig[i]) for i, p in enumerate(names)}


@dataclass
class _RoundSecrets:
    c_key: X25519PrivateKey
    s_secret: bytes
    b_seed: bytes

    @property
    def c_public(self) -> bytes:
        return _public(self.c_key)

    @property
    def s_public(self) -> bytes:
        return _public(X25519PrivateKey.from_private_bytes(self.s_secret))

    @property
    def b_commit(self) -> bytes:
        return hashlib.sha256(self.b_seed).digest()

    def digest(self) -> str:
        return hashlib.sha256(self.c_public + self.s_public + self.b_commit).hexdigest()
