"""RR22 PSI id bytes: padding, sort keys and tokens, spu's side-file format both ways, and spu's result mapped to rows.

Why apart: this is pure array work on a party's own ids (no session, no process, no message), the part that
costs memory and time at 10M rows, so it is tested and tuned on its own; `psi_rr22_party` calls it. The side
file is what a party hands its own spu worker: a CSV of two columns, ``id,row``. ``id`` is the id itself when
every byte of it is in a plain set (letters, digits and ``-_.:/@+=~``: no CSV quoting, no space, no ``%``), else
``%`` and the id's bytes in hex, so the key is injective and the same at both parties for the same id whatever
width either pads to; spu compares keys as opaque strings (checked: ``00123`` and ``0123``, ``NA`` and ``null``
stay apart). Plain keys cost spu ~12% less CPU than the former all-hex keys (twice as long). ``row`` is the
id's own row in 8 hex digits: spu writes it back beside each id it found, so the result maps to rows without
sorting the party's own ids; each result line is checked byte for byte against the line this party wrote for
that row. Both parties compute the same token for the same id, so sorting by token gives both one order of the
intersection.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from sampan.vertical.psi_points import PsiError, match_tokens

__all__ = ["locate", "mix", "padded", "read_result", "tokens", "write_ids"]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.full(256, 255, dtype=np.uint8)
_UNHEX[_HEX] = np.arange(16, dtype=np.uint8)
_PLAIN = np.zeros(256, dtype=bool)  # bytes a key may hold as they are (anything else: the id goes as % + hex)
_PLAIN[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/@+=~", dtype=np.uint8)] = True
_HEX4 = _HEX[(np.arange(1 << 16)[:, None] >> np.array([12, 8, 4, 0])) & 15]  # 16 bits -> 4 hex digits
_ESCAPE = ord("%")
ROW_DIGITS = 8  # the row column: 8 hex digits, so at most 2^32 ids per party
_TAIL = ROW_DIGITS + 2  # "," + row digits + "\n"
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


def locate(ids: np.ndarray, found: np.ndarray, width: int, party: str,
           rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Own rows of spu's result `found` (m, width), in token order, and their tokens.

    With `rows` (spu's row column, `read_result`: checked there, and again here), the own ids need no sort:
    only the result's m keys are sorted. Without, the own ids' keys are sorted to find the rows:

    Memory: 8 bytes of sort key per own id (computed block by block) plus 32-byte tokens of the result only;
    a 64-bit key collision among own ids (about n^2 / 2^65) falls back to full tokens. Speed: the result's keys
    are sorted before they are looked up, so the lookup walks the own keys in order (a random-order
    `searchsorted` of 5M keys into 10M costs seconds in cache misses); own keys are distinct, so rows are
    distinct iff the result's keys are, which the sorted keys show without sorting the rows again."""
    def wrong() -> PsiError:
        return PsiError(f"party {party!r}: the RR22 result names customers this party does not hold")

    if rows is not None:
        if len(rows) != len(found) or (len(rows) and (rows.min() < 0 or rows.max() >= len(ids))):
            raise wrong()
        if not np.array_equal(padded(ids[rows], width), found):
            raise wrong()  # (own ids are distinct, and `read_result` refused a row named twice)
        if width <= 24:
            wanted = mix(found)
            ranked = np.argsort(wanted)
            wanted = wanted[ranked]
            if not (len(wanted) > 1 and (wanted[1:] == wanted[:-1]).any()):
                return rows[ranked], tokens(found[ranked], wanted)
        own = tokens(found)  # a 64-bit key collision in the result, or ids over 24 bytes: full tokens
        ranked = np.argsort(own.view(f"S{own.shape[1]}").ravel(), kind="stable")
        own = own[ranked]
        if len(own) > 1 and (own[1:] == own[:-1]).all(axis=1).any():
            raise wrong()
        return rows[ranked], own

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


def _lines(ids: np.ndarray, rows: np.ndarray) -> bytes:
    """The side file's lines ``key,row`` for `ids` (a fixed-width bytes array) at own `rows` (see the docstring)."""
    n, w = len(ids), ids.dtype.itemsize
    raw = np.frombuffer(ids.tobytes(), dtype=np.uint8).reshape(n, w)  # NUL-padded
    if raw[:, -1].all():  # the usual case: every id fills the width (one length): no padding to find
        length = np.full(n, w)
        plain = _PLAIN[raw].all(axis=1)
    else:
        filled = raw != 0
        length = np.where(filled.any(axis=1), w - np.argmax(filled[:, ::-1], axis=1), 0)  # to the last non-NUL
        plain = (_PLAIN[raw] | (np.arange(w) >= length[:, None])).all(axis=1) & (length > 0)
    if plain.all():
        keys, key_len = raw, length
    else:  # an id with any other byte: % and its bytes in hex (the padding's hex is cut off by key_len)
        keys = np.zeros((n, 1 + 2 * w), dtype=np.uint8)
        keys[:, :w] = raw
        escaped = raw[~plain]
        keys[~plain, 0] = _ESCAPE
        keys[~plain, 1::2] = _HEX[escaped >> 4]
        keys[~plain, 2::2] = _HEX[escaped & 15]
        key_len = np.where(plain, length, 1 + 2 * length)
    out = np.empty((n, keys.shape[1] + _TAIL), dtype=np.uint8)
    out[:, :keys.shape[1]] = keys
    tail = out[:, keys.shape[1]:]
    tail[:, 0], tail[:, -1] = ord(","), ord("\n")
    tail[:, 1:5] = _HEX4[(rows >> np.uint64(16)) & np.uint64(0xFFFF)]  # ROW_DIGITS = 8: two 16-bit halves
    tail[:, 5:9] = _HEX4[rows & np.uint64(0xFFFF)]
    if (key_len == keys.shape[1]).all():  # the usual case: ids of one length, all plain
        return out.tobytes()
    used = np.ones((n, keys.shape[1] + _TAIL), dtype=bool)
    used[:, :keys.shape[1]] = np.arange(keys.shape[1]) < key_len[:, None]
    return out[used].tobytes()


def write_ids(path: Path, ids: np.ndarray, width: int) -> None:
    """spu's input: ``id,row`` lines (see the docstring), written block by block. The file does not depend on
    `width` (the width both parties pad to), which only bounds the ids here."""
    if len(ids) >= 1 << (4 * ROW_DIGITS):
        raise PsiError(f"the RR22 backend takes at most {1 << (4 * ROW_DIGITS)} ids per party, got {len(ids)}")
    if ids.dtype.itemsize > width:
        raise ValueError(f"ids of {ids.dtype.itemsize} bytes do not fit the agreed width of {width}")
    with open(path, "wb") as handle:
        handle.write(b"id,row\n")
        for start in range(0, len(ids), _BLOCK):
            block = ids[start:start + _BLOCK]
            handle.write(_lines(block, np.arange(start, start + len(block), dtype=np.uint64)))


def read_result(path: Path, ids: np.ndarray, width: int, party: str) -> tuple[np.ndarray, np.ndarray]:
    """spu's output back to own rows (in spu's order) and their padded ids (m, width).

    Every line must be one this party wrote: the row is read from the line's end, then the whole line is
    compared with the line `write_ids` makes for that row, so a malformed line, a row out of range or a key
    that is not that row's id is an error; a row named twice is one too."""
    body = path.read_bytes()
    first = body.find(b"\n")
    body = body[first + 1:] if first >= 0 else b""
    if not body:
        return np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=np.uint8)

    def malformed() -> PsiError:
        return PsiError(f"party {party!r}: the RR22 worker wrote a malformed result")

    text = np.frombuffer(body, dtype=np.uint8)
    if text[-1] != ord("\n"):
        raise malformed()
    ends = np.flatnonzero(text == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends - starts < _TAIL).any() or (text[ends - ROW_DIGITS - 1] != ord(",")).any():
        raise malformed()
    rows = np.zeros(len(ends), dtype=np.int64)
    for column in range(ROW_DIGITS):  # one digit column at a time: no (m, 8) index array
        digit = _UNHEX[text[ends - ROW_DIGITS + column]]
        if (digit > 15).any():
            raise malformed()
        rows = (rows << 4) | digit
    wrong = PsiError(f"party {party!r}: the RR22 result names customers this party does not hold")
    if (rows >= len(ids)).any():
        raise wrong
    seen = np.zeros(len(ids), dtype=bool)
    seen[rows] = True
    if int(seen.sum()) != len(rows):
        raise wrong  # a row named twice
    del seen
    for start in range(0, len(rows), _BLOCK):
        block = rows[start:start + _BLOCK]
        lo, hi = int(starts[start]), int(ends[start + len(block) - 1]) + 1
        if _lines(ids[block], block.astype(np.uint64)) != body[lo:hi]:
            raise wrong
    return rows, padded(ids[rows], width)
