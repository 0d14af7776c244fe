"""PSI ids: Unicode normalisation, refusal of unusable ids (named by local row only), and the public id shape.

Why apart: what a party matches on is decided here, before any point is hashed; every refusal names the party
and a row in its own local log, never an id, since ids are what PSI protects.

Why compact: a bank's 10M ids held as Python strings (plus their UTF-8 copies and shapes) cost ~1.5 GB and
seconds of per-item work; here they become one fixed-width NumPy bytes array (``S<w>``, the UTF-8 of the
NFC-normalised, stripped id; 100 MB at 10M ids of 10 characters). Plain printable-ASCII ids, the usual case,
are checked and converted vectorised in blocks; only rows that may change under NFC/strip (non-ASCII,
control characters, edge spaces) take the per-item Python path, so results equal the per-item rule exactly.

Why a length cap (review R15-PSI-1): the fixed width is the longest id's, so one over-long id (a free-text note
pasted into the id column) would make every row as wide as it (n x longest id held, and more per block while
converting). An id over `MAX_ID_BYTES` (256) characters as given, or UTF-8 bytes once normalised, is refused
with an error naming the party (count and first row in its local log only); lengths are read before any
fixed-width copy, and a wide declared dtype (``U100000`` holding short ids) is narrowed to its longest id
first. So a compact array holds at most 256 bytes per id (2.6 GB at 10M ids in the worst case: every row as
wide as a 256-byte id), and each conversion pass touches at most `PASS_CHARS` characters.
"""

from __future__ import annotations

import logging
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.vertical.psi_points import PsiError

__all__ = ["CompactIds", "compact_ids", "id_shape", "normalise_ids"]

log = logging.getLogger("sampan.vertical.psi")

BLOCK = 1 << 20  # rows converted at a time: bounds the transient UCS-4 copy (4 bytes per character)
MAX_ID_BYTES = 256  # longest id accepted, in characters as given and in UTF-8 bytes once normalised
PASS_CHARS = 1 << 24  # characters per vectorised pass: its UCS-4 view and masks stay near 100 MB at any width

_ASCII_SHAPE = bytes(
    ord("9") if chr(c) in string.digits else ord("A") if chr(c) in string.ascii_letters
    else c if 32 <= c < 127 else ord("?") for c in range(256))
_SHAPE_TABLE = np.frombuffer(_ASCII_SHAPE, dtype=np.uint8).copy()
_SHAPE_TABLE[0] = 0  # padding stays padding


def _shape_of(idb: bytes, text: str) -> bytes:
    if idb.isascii():
        return idb.translate(_ASCII_SHAPE)
    return "".join("9" if c.isdigit() else "A" if c.isalpha() else c if " " <= c < "\x7f" else "?"
                   for c in text).encode()


def _public_shape(shape: bytes) -> str:
    text = shape.decode()
    if "A" not in text and "9" not in text:
        text = "?" * len(text)
    return text if len(text) <= 64 else f"{text[:64]}...({len(text)} chars)"


def id_shape(ids: Sequence[str], encoded: Sequence[bytes] | None = None) -> str:
    """The dominant character-class shape of normalised ids: digit -> 9, letter -> A, ASCII punctuation kept.

    Coarse on purpose: it tells "BR00001234" from "00001234" or "0000-1234" without describing any one
    customer. A shape without a letter or digit (an id made only of punctuation) is masked.
    """
    if not ids:
        return ""
    encoded = [s.encode() for s in ids] if encoded is None else encoded
    shape, _ = Counter([_shape_of(b, s) for b, s in zip(encoded, ids, strict=False)]).most_common(1)[0]
    return _public_shape(shape)


@dataclass(frozen=True)
class CompactIds:
    """A party's validated ids: UTF-8 of each normalised id in a fixed-width bytes array, and its public shape."""

    ids: np.ndarray  # dtype S<w>, one row per local row, unique
    shape: str

    def __len__(self) -> int:
        return len(self.ids)


def compact_ids(ids: Any, party: str) -> CompactIds:
    """NFC + strip, then validate (strings, non-empty, no NUL, encodable, unique), held as one ``S<w>`` array.

    The error text reaches the coordinator: it names the check that failed, never counts, row numbers or
    values (those go to this party's local log only)."""
    arr = _as_array(ids, party)
    if len(arr) == 0:
        raise PsiError(f"party {party!r}: has no customer ids to match")
    blocks = [part for s in range(0, len(arr), BLOCK) for part in _compact_block(arr[s:s + BLOCK], s, party)]
    width = max(b.dtype.itemsize for b in blocks)
    out = np.empty(len(arr), dtype=f"S{width}")
    pos = 0
    for b in blocks:
        out[pos:pos + len(b)] = b
        pos += len(b)
    del blocks
    _refuse_duplicates(out, party)
    return CompactIds(out, _dominant_shape(out))


def normalise_ids(ids: Any, party: str) -> tuple[list[str], list[bytes]]:
    """The per-item form (lists of normalised strings and their UTF-8), for small inputs and audits."""
    compact = compact_ids(ids, party).ids
    encoded = compact.tolist()
    return [b.decode() for b in encoded], encoded


def _is_arrow(ids: Any) -> bool:
    return type(ids).__module__.startswith("pyarrow") and hasattr(ids, "to_numpy")


def _as_array(ids: Any, party: str) -> Any:
    """A 1-D numpy array of str (dtype U, S or object), or a pyarrow array (converted block by block later)."""
    if _is_arrow(ids):
        if str(ids.type) not in ("string", "large_string"):
            log.warning("party %s: ids are of arrow type %s, not strings (local log only)", party, ids.type)
            raise PsiError(f"party {party!r}: an id is not a string (row in this party's local log)")
        if ids.null_count:
            raise PsiError(f"party {party!r}: an id is not a string (missing; row in this party's local log)")
        return ids
    if hasattr(ids, "to_numpy") and not isinstance(ids, np.ndarray):  # pandas
        ids = ids.to_numpy()
    arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        raise PsiError(f"party {party!r}: ids must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "S":  # raw bytes: decode to check they are UTF-8 (per block below)
        return arr
    if arr.dtype.kind not in "UO":
        log.warning("party %s: ids are of type %s, not strings (local log only)", party, arr.dtype)
        raise PsiError(f"party {party!r}: an id is not a string (row in this party's local log)")
    return arr


def _refuse_long(lengths: np.ndarray, offset: int, party: str) -> None:
    """Refuse the block if any id is over the cap: before a fixed-width copy as wide as it is made."""
    over = np.flatnonzero(lengths > MAX_ID_BYTES)
    if len(over):
        log.warning("party %s: %d ids longer than %d characters/bytes, first at row %d (local log only)", party,
                    len(over), MAX_ID_BYTES, offset + int(over[0]))
        raise PsiError(f"party {party!r}: customer ids longer than {MAX_ID_BYTES} characters (UTF-8 bytes once "
                       "normalised) are refused (count and rows in this party's local log); is the id column "
                       "the right one?")


def _narrowed(block: np.ndarray, offset: int, party: str) -> np.ndarray:
    """A fixed-width block checked against the cap and cut to its longest id (a wide declared dtype costs nothing)."""
    lengths = np.char.str_len(block) if len(block) else np.zeros(0, np.int64)
    _refuse_long(lengths, offset, party)
    longest = max(int(lengths.max(initial=0)), 1)
    unit = 4 if block.dtype.kind == "U" else 1
    return block.astype(f"{block.dtype.kind}{longest}") if block.dtype.itemsize > longest * unit else block


def _compact_block(block: Any, offset: int, party: str) -> list[np.ndarray]:
    """UTF-8 ``S<w>`` parts of one block: vectorised for clean printable ASCII rows, per item for the rest."""
    if _is_arrow(block):  # lengths first (vectorised), then Python strings for this block only
        import pyarrow.compute as pc

        _refuse_long(pc.utf8_length(block).to_numpy(zero_copy_only=False), offset, party)
        block = block.to_numpy(zero_copy_only=False)
    if block.dtype.kind == "O":
        items = block.tolist()
        try:  # one C-level pass: join refuses a non-string, and a NUL is found in the joined text
            has_nul = "\x00" in "".join(items)
        except TypeError:
            row = next(i for i, s in enumerate(items) if not isinstance(s, str))
            log.warning("party %s: id at row %d is a %s, not a string (local log only)", party, offset + row,
                        type(items[row]).__name__)
            raise PsiError(f"party {party!r}: an id is not a string (row in this party's local log)") from None
        if has_nul:  # a U array would drop a trailing NUL, so it is refused here
            row = next(i for i, s in enumerate(items) if "\x00" in s)
            _normalise_one(items[row], offset + row, party)
        _refuse_long(np.fromiter(map(len, items), dtype=np.int64, count=len(items)), offset, party)
        del items
        block = block.astype(str) if len(block) else np.empty(0, dtype="U1")
    else:
        block = _narrowed(block, offset, party)
    width = max(block.dtype.itemsize // (1 if block.dtype.kind == "S" else 4), 1)
    step = max(1, PASS_CHARS // width)
    return [_compact_pass(block[s:s + step], offset + s, party) for s in range(0, max(len(block), 1), step)]


def _compact_pass(block: np.ndarray, offset: int, party: str) -> np.ndarray:
    """One vectorised pass over rows whose width is at most the cap: decode, check, per-item fallback."""
    if block.dtype.kind == "S":
        try:
            block = np.char.decode(block, "utf-8")
        except UnicodeDecodeError:
            log.warning("party %s: an id in rows %d.. is not valid UTF-8 (local log only)", party, offset)
            raise PsiError(f"party {party!r}: an id is not valid UTF-8 (row in this party's local log)") from None
    width = max(block.dtype.itemsize // 4, 1)
    codes = block.view(np.uint32).reshape(len(block), -1) if len(block) else np.zeros((0, width), np.uint32)
    lengths = np.count_nonzero(codes, axis=1)
    inside = np.arange(codes.shape[1]) < lengths[:, None]
    printable = (codes >= 0x20) & (codes < 0x7F)
    last = codes[np.arange(len(codes)), np.maximum(lengths - 1, 0)]
    clean = ((codes != 0) == inside).all(axis=1) & (printable | ~inside).all(axis=1) & (lengths > 0)
    clean &= (codes[:, 0] != 0x20) & (last != 0x20)
    out = codes.astype(np.uint8).view(f"S{codes.shape[1]}").ravel()
    slow = np.flatnonzero(~clean)
    if len(slow) == 0:
        return out
    fixed = [_normalise_one(str(block[i]), offset + int(i), party) for i in slow]
    _refuse_long(np.fromiter(map(len, fixed), dtype=np.int64, count=len(fixed)), offset, party)  # NFC may widen
    if max(map(len, fixed)) > out.dtype.itemsize:
        out = out.astype(f"S{max(map(len, fixed))}")
    out[slow] = fixed
    return out


def _normalise_one(text: str, row: int, party: str) -> bytes:
    """The per-item rule (NFC, strip, checks) for a row the vectorised path cannot vouch for."""
    norm = unicodedata.normalize("NFC", text).strip()
    if not norm:
        log.warning("party %s: empty id at row %d (local log only)", party, row)
        raise PsiError(f"party {party!r}: empty customer ids (rows in this party's local log)")
    if "\x00" in norm:
        log.warning("party %s: id at row %d contains a NUL character (local log only)", party, row)
        raise PsiError(f"party {party!r}: an id contains a NUL character (row in this party's local log)")
    try:
        return norm.encode()
    except UnicodeEncodeError:
        log.warning("party %s: id at row %d is not valid Unicode (local log only)", party, row)
        raise PsiError(f"party {party!r}: an id is not valid Unicode (lone surrogate; row in this party's local "
                       "log)") from None


def _row_keys(ids: np.ndarray) -> np.ndarray:
    """A 64-bit mix of each fixed-width row: equal rows give equal keys (used to find candidate repeats)."""
    key = np.empty(len(ids), dtype=np.uint64)
    for s in range(0, len(ids), BLOCK):  # the padded copy is one block at a time
        key[s:s + BLOCK] = _block_keys(ids[s:s + BLOCK])
    return key


def _block_keys(ids: np.ndarray) -> np.ndarray:
    width = ids.dtype.itemsize
    padded = -(-width // 8) * 8
    raw = ids.view(np.uint8).reshape(len(ids), width)
    if padded != width:
        raw = np.pad(raw, ((0, 0), (0, padded - width)))
    words = np.ascontiguousarray(raw).view(np.uint64)
    key = np.zeros(len(ids), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in range(words.shape[1]):
            key = (key ^ words[:, col]) * np.uint64(0x9E3779B97F4A7C15)
            key ^= key >> np.uint64(29)
    return key


def _refuse_duplicates(ids: np.ndarray, party: str) -> None:
    """Vectorised uniqueness: sort 64-bit row keys; only rows whose keys repeat are compared exactly."""
    key = _row_keys(ids)
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    if not same.any():
        return
    suspects = np.union1d(order[1:][same], order[:-1][same])  # ascending local rows
    seen: set[bytes] = set()
    repeats = [int(i) for i, b in zip(suspects, ids[suspects].tolist(), strict=True)
               if b in seen or seen.add(b)]  # type: ignore[func-returns-value]
    if repeats:
        log.warning("party %s: %d duplicate customer ids after normalisation, first repeat at row %d (local log "
                    "only)", party, len(repeats), repeats[0])
        raise PsiError(f"party {party!r}: duplicate customer ids after normalisation (rows in this party's local "
                       "log); PSI needs unique ids")


def _dominant_shape(ids: np.ndarray) -> str:
    """`id_shape` over the compact array: ASCII rows mapped by table lookup, the most common shape by key count."""
    width = ids.dtype.itemsize
    shapes = np.empty(len(ids), dtype=f"S{width}")
    for s in range(0, len(ids), BLOCK):
        raw = ids[s:s + BLOCK].view(np.uint8).reshape(-1, width)
        mapped = _SHAPE_TABLE[raw]
        shapes[s:s + BLOCK] = mapped.view(f"S{width}").ravel()
        wide = np.flatnonzero((raw >= 0x80).any(axis=1))
        for i in wide:
            idb = ids[s + i]
            shapes[s + i] = _shape_of(idb, idb.decode())
    key = _row_keys(shapes)
    values, first, counts = np.unique(key, return_index=True, return_counts=True)
    del values
    # Counter.most_common order: the highest count, ties broken by first appearance.
    best = np.lexsort((first, -counts))[0]
    return _public_shape(bytes(shapes[first[best]]))
