"""RR22 PSI id bytes: padding, sort keys and tokens, spu's side-file format both ways, and spu's result mapped to rows.

Why apart: this is pure array work on a party's own ids (no session, no process, no message), the part that
costs memory and time at 10M rows, so it is tested and tuned on its own; `psi_rr22_party` calls it. The side
file is what a party hands its own spu worker: a one-column CSV of each id's bytes, NUL-padded to the width
both parties agreed and hex-encoded (ids hold no NUL, so the padding is unambiguous). Both parties compute the
same token for the same id, so sorting by token gives both one order of the intersection.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from sampan.vertical.psi_points import PsiError, match_tokens

__all__ = ["locate", "mix", "padded", "read_ids", "tokens", "write_ids"]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.full(256, 255, dtype=np.uint8)
_UNHEX[_HEX] = np.arange(16, dtype=np.uint8)
_BLOCK = 1 << 20


def padded(ids: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8: each id's bytes, NUL-padded (ids hold no NUL, so padding is unambiguous)."""
    n, w = len(ids), ids.dtype.itemsize
    out = np.zeros((n, width), dtype=np.uint8)
    out[:, :w] = np.frombuffer(ids.tobytes(), dtype=np.uint8).reshape(n, w)
    return out


def mix(raw: np.ndarray) -> np.ndarray:
    """A 64-bit mix of each padded id (n, width <= 24) uint8: well-spread sort keys, equal for equal ids."""
    n, width = raw.shape
    words = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    words[:, :width] = raw
    lanes = words.view("<u8")
    mixed = np.full(n, 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(lanes.shape[1]):
            mixed ^= lanes[:, j]
            mixed *= np.uint64(0x9E3779B97F4A7C15)
            mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0xFF51AFD7ED558CCD)
        mixed ^= mixed >> np.uint64(33)
    return mixed


def tokens(raw: np.ndarray, mixed: np.ndarray | None = None) -> np.ndarray:
    """(n, 32) uint8 tokens of padded ids: the 64-bit mix first (big-endian, so `match_tokens` sorts on
    well-spread prefixes), then the id itself (equal tokens mean equal ids); SHA-256 for ids over 24 bytes (rare).
    `mixed`, when given, is `mix(raw)` already computed (it is the costly part).

    Both parties compute the same token for the same id, so sorting by token gives both one order."""
    n, width = raw.shape
    if width > 24:
        digests = b"".join(hashlib.sha256(row.tobytes()).digest() for row in raw)
        return np.frombuffer(digests, dtype=np.uint8).reshape(n, 32).copy()
    out = np.zeros((n, 32), dtype=np.uint8)
    out[:, :8] = (mix(raw) if mixed is None else mixed).astype(">u8").view(np.uint8).reshape(n, 8)
    out[:, 8:8 + width] = raw
    return out


def locate(ids: np.ndarray, found: np.ndarray, width: int, party: str) -> tuple[np.ndarray, np.ndarray]:
    """Own rows of spu's result `found` (m, width), in token order, and their tokens.

    Memory: 8 bytes of sort key per own id (computed block by block) plus 32-byte tokens of the result only;
    a 64-bit key collision among own ids (about n^2 / 2^65) falls back to full tokens. Speed: the result's keys
    are sorted before they are looked up, so the lookup walks the own keys in order (a random-order
    `searchsorted` of 5M keys into 10M costs seconds in cache misses); own keys are distinct, so rows are
    distinct iff the result's keys are, which the sorted keys show without sorting the rows again."""
    def wrong() -> PsiError:
        return PsiError(f"party {party!r}: the RR22 result names customers this party does not hold")

    if width <= 24:
        keys = np.empty(len(ids), dtype=np.uint64)
        for start in range(0, len(ids), _BLOCK):
            keys[start:start + _BLOCK] = mix(padded(ids[start:start + _BLOCK], width))
        order = np.argsort(keys)  # any sort: the keys are checked distinct next, so the order is unique
        keys = keys[order]
        if not (len(keys) > 1 and (keys[1:] == keys[:-1]).any()):
            wanted = mix(found)
            ranked = np.argsort(wanted)  # token order: the key is the token's first 8 bytes
            wanted = wanted[ranked]
            if len(wanted) > 1 and not (wanted[1:] != wanted[:-1]).all():
                raise wrong()  # a customer named twice (or a key collision outside own ids)
            pos = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
            if len(keys) == 0 or not (keys[pos] == wanted).all():
                raise wrong()
            rows = order[pos]
            del keys, order, pos
            found = found[ranked]
            if not np.array_equal(padded(ids[rows], width), found):
                raise wrong()
            return rows, tokens(found, wanted)
    own = tokens(padded(ids, width))
    ix, iy = match_tokens(tokens(found), own)
    if len(ix) != len(found):
        raise wrong()
    return iy, own[iy]


def write_ids(path: Path, ids: np.ndarray, width: int) -> None:
    """spu's input: a one-column CSV of hex-encoded padded ids, written block by block."""
    with open(path, "wb") as handle:
        handle.write(b"id\n")
        for start in range(0, len(ids), _BLOCK):
            raw = padded(ids[start:start + _BLOCK], width)
            out = np.empty((len(raw), 2 * width + 1), dtype=np.uint8)
            out[:, 0:2 * width:2] = _HEX[raw >> 4]
            out[:, 1:2 * width:2] = _HEX[raw & 15]
            out[:, -1] = ord("\n")
            handle.write(out.tobytes())


def read_ids(path: Path, width: int, party: str) -> np.ndarray:
    """spu's output CSV back to (m, width) padded id bytes; anything but fixed-width hex lines is an error."""
    body = path.read_bytes()
    first = body.find(b"\n")
    body = body[first + 1:] if first >= 0 else b""
    line = 2 * width + 1
    if len(body) % line:
        raise PsiError(f"party {party!r}: the RR22 worker wrote a malformed result")
    text = np.frombuffer(body, dtype=np.uint8).reshape(-1, line)
    if len(text) and not (text[:, -1] == ord("\n")).all():
        raise PsiError(f"party {party!r}: the RR22 worker wrote a malformed result")
    value = _UNHEX[text[:, :-1]]  # one table look-up per digit; anything but 0-9a-f maps to 255
    if (value > 15).any():
        raise PsiError(f"party {party!r}: the RR22 worker wrote a malformed result")
    return (value[:, 0::2] << 4) | value[:, 1::2]
