"""PSI ids: Unicode normalisation, refusal of unusable ids (named by local row only), and the public id shape.

Why apart: what a party matches on is decided here, before any point is hashed; every refusal names the party
and a row in its own local log, never an id, since ids are what PSI protects.
"""

from __future__ import annotations

import logging
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from sampan.vertical.psi_points import PsiError

__all__ = ["id_shape", "normalise_ids"]

log = logging.getLogger("sampan.vertical.psi")

_ASCII_SHAPE = bytes(
    ord("9") if chr(c) in string.digits else ord("A") if chr(c) in string.ascii_letters
    else c if 32 <= c < 127 else ord("?") for c in range(256))


def _shape_of(idb: bytes, text: str) -> bytes:
    if idb.isascii():
        return idb.translate(_ASCII_SHAPE)
    return "".join("9" if c.isdigit() else "A" if c.isalpha() else c if " " <= c < "\x7f" else "?"
                   for c in text).encode()


def id_shape(ids: Sequence[str], encoded: Sequence[bytes] | None = None) -> str:
    """The dominant character-class shape of normalised ids: digit -> 9, letter -> A, ASCII punctuation kept.

    Coarse on purpose: it tells "BR00001234" from "00001234" or "0000-1234" without describing any one
    customer. A shape without a letter or digit (an id made only of punctuation) is masked.
    """
    if not ids:
        return ""
    encoded = [s.encode() for s in ids] if encoded is None else encoded
    shape, _ = Counter([_shape_of(b, s) for b, s in zip(encoded, ids, strict=False)]).most_common(1)[0]
    text = shape.decode()
    if "A" not in text and "9" not in text:
        text = "?" * len(text)
    return text if len(text) <= 64 else f"{text[:64]}...({len(text)} chars)"


def normalise_ids(ids: Any, party: str) -> tuple[list[str], list[bytes]]:
    """NFC + strip, then validate: strings, non-empty, encodable, unique.

    The error text reaches the coordinator: it names the check that failed, never counts, row numbers or
    values (those go to this party's local log only)."""
    arr = np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        raise PsiError(f"party {party!r}: ids must be a 1-D array, got shape {arr.shape}")
    raw = arr.tolist()
    if not raw:
        raise PsiError(f"party {party!r}: has no customer ids to match")
    nfc = unicodedata.normalize
    try:
        norm = [nfc("NFC", s).strip() for s in raw]
    except TypeError:
        row = next(i for i, s in enumerate(raw) if not isinstance(s, str))
        log.warning("party %s: id at row %d is a %s, not a string (local log only)", party, row,
                    type(raw[row]).__name__)
        raise PsiError(f"party {party!r}: an id is not a string (row in this party's local log)") from None
    if not all(norm):
        blank = [i for i, s in enumerate(norm) if not s]
        log.warning("party %s: %d empty ids, first at row %d (local log only)", party, len(blank), blank[0])
        raise PsiError(f"party {party!r}: empty customer ids (rows in this party's local log)")
    try:
        encoded = [s.encode() for s in norm]
    except UnicodeEncodeError:
        row = next(i for i, s in enumerate(norm) if not _encodable(s))
        log.warning("party %s: id at row %d is not valid Unicode (local log only)", party, row)
        raise PsiError(f"party {party!r}: an id is not valid Unicode (lone surrogate; row in this party's local "
                       "log)") from None
    if len(set(encoded)) != len(encoded):
        seen: set[bytes] = set()
        repeats = [i for i, b in enumerate(encoded) if b in seen or seen.add(b)]  # type: ignore[func-returns-value]
        log.warning("party %s: %d duplicate customer ids after normalisation, first repeat at row %d (local log "
                    "only)", party, len(repeats), repeats[0])
        raise PsiError(f"party {party!r}: duplicate customer ids after normalisation (rows in this party's local "
                       "log); PSI needs unique ids")
    return norm, encoded


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True

