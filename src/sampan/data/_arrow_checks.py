"""Vectorised column checks on Arrow batches, with problems tallied over a whole stream.

The streaming loader (`sampan.data.stream`) sees a table one record batch at a time, so each check here
turns one batch's column into clean float64 values (or codes, or canonical id texts) with pyarrow.compute
and NumPy, and adds what is wrong to a `Tally` that remembers the count, the first rows and a few distinct
examples over every batch. The messages are exactly those of the whole-table checks in `_columns` (the
operator reads the same sentence whichever path read the file); tests compare the two paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sampan.data._columns import (
    _FALSE,
    _LABEL_ONE,
    _LABEL_ZERO,
    _TRUE,
    MAX_SHOWN,
    Problem,
    _as_text,
    examples_text,
    plural,
    rows_text,
)
from sampan.data.missing import HOW_TO_FIX

__all__ = ["Tally", "normalise", "apply_markers", "missing_of", "canonical_text", "check_numeric",
           "check_binary", "check_category", "missing_message"]

# what Python's float() reads that a CSV writer produces: 1, -1.5, .5, 5., 1e-3, inf, infinity, nan
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf(inity)?|nan)$"


class Tally:
    """One kind of problem in one column over every batch: how many rows, the first few, distinct examples."""

    def __init__(self, limit: int = 3) -> None:
        self.count = 0
        self.first: list[int] = []
        self.seen: list[str] = []
        self.limit = limit

    def add(self, mask: np.ndarray, offset: int, values: pa.Array | None = None) -> None:
        """Count the rows of ``mask`` (a batch starting at row ``offset``); note examples from ``values``."""
        k = int(np.count_nonzero(mask))
        if k == 0:
            return
        if len(self.first) < MAX_SHOWN:
            self.first += [int(i) + offset for i in np.flatnonzero(mask)[: MAX_SHOWN - len(self.first)]]
        self.count += k
        if values is not None and len(self.seen) <= self.limit:
            for v in pc.unique(values.filter(pa.array(mask))).to_pylist():  # unique keeps first-seen order
                r = repr(v)
                if r not in self.seen:
                    self.seen.append(r)
                if len(self.seen) > self.limit:
                    break

    @property
    def rows(self) -> str:
        return rows_text(self.first, self.count)

    @property
    def examples(self) -> str:
        return examples_text(self.seen, self.limit)


def missing_message(column: str, tally: Tally, role: str | None = None) -> Problem:
    """The `_columns.missing_problem` sentence for a tally of missing cells."""
    if role == "label":
        fix = "a label may never be missing: drop those rows (or label them) before the run"
    elif role == "id":
        fix = "every row needs its id"
    else:
        fix = HOW_TO_FIX
    label = f"column '{column}'" + (f" ({role})" if role else "")
    return Problem(column, tally.count,
                   f"{label} has {plural(tally.count, 'missing/NaN value')} ({tally.rows}); {fix}")


def normalise(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One plain array: dictionaries decoded, large/view strings and binary as string, decimals as float64."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return arr.cast(pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        try:
            return arr.cast(pa.string())
        except pa.ArrowInvalid:  # not UTF-8: decoded with replacement, as the whole-table path does
            return pa.array([None if v is None else v.decode("utf-8", "replace") for v in arr.to_pylist()],
                            type=pa.string())
    if pa.types.is_decimal(t):
        return arr.cast(pa.float64())
    return arr


def _numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _np_bool(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(a, False).to_numpy(zero_copy_only=False), dtype=bool)


def _floats(arr: pa.Array) -> np.ndarray:
    """A numeric (or boolean) column as float64, NaN where null. Integers beyond 2**53 (nanosecond times,
    BIGINT keys) round to the nearest float64, as the whole-table path reads them: an unsafe cast, since the
    safe one raises a bare `ArrowInvalid` quoting the cell (review R15-DATA-4)."""
    return np.asarray(arr.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64)


def apply_markers(arr: pa.Array, markers: Iterable[str] | None, numeric: bool = False) -> pa.Array:
    """Cells whose (trimmed) text is a declared marker set to null; a numeric marker also matches numeric
    cells equal to it (`_columns.apply_markers`). With ``numeric`` (a float/int column) it also matches text
    cells that are numbers equal to it: a CSV re-read as text after a late type change (`sources.Retype`)
    must treat `-999.0` as the marker `-999` exactly as the typed read did (review R15-DATA-2)."""
    texts = sorted({m.strip() for m in markers or ()})
    if not texts:
        return arr
    numbers = []
    for m in texts:
        try:
            numbers.append(float(m))
        except ValueError:
            pass
    value_set = pa.array(numbers, type=pa.float64())
    if pa.types.is_string(arr.type):
        trimmed = pc.utf8_trim_whitespace(arr)
        hit = pc.is_in(trimmed, value_set=pa.array(texts, type=pa.string()))
        if numeric and numbers:
            number = pc.fill_null(pc.match_substring_regex(trimmed, _NUMBER, ignore_case=True), False)
            parsed = pc.if_else(number, trimmed, pa.scalar(None, pa.string())).cast(pa.float64())
            hit = pc.or_(pc.fill_null(hit, False), pc.fill_null(pc.is_in(parsed, value_set=value_set), False))
    elif _numeric_type(arr.type):
        if not numbers:
            return arr
        hit = pc.is_in(arr.cast(pa.float64(), safe=False), value_set=value_set)
    else:
        return arr
    return pc.if_else(pc.fill_null(hit, False), pa.scalar(None, arr.type), arr)


def missing_of(arr: pa.Array) -> np.ndarray:
    """True where a cell is null, NaN or blank text."""
    if pa.types.is_null(arr.type):
        return np.ones(len(arr), dtype=bool)
    if pa.types.is_string(arr.type):
        return _np_bool(pc.or_kleene(pc.is_null(arr), pc.equal(pc.utf8_trim_whitespace(arr), "")))
    if pa.types.is_floating(arr.type):
        return _np_bool(pc.is_null(arr, nan_is_null=True))
    return _np_bool(pc.is_null(arr))


def canonical_text(arr: pa.Array, missing: np.ndarray) -> pa.Array:
    """Canonical text of each cell ('' where missing): trimmed text, 3.0 -> "3" (`_columns.as_text`)."""
    t = arr.type
    if pa.types.is_string(t):
        out = pc.utf8_trim_whitespace(arr)
    elif pa.types.is_integer(t):
        out = arr.cast(pa.string())
    elif pa.types.is_floating(t):
        v = _floats(arr)
        whole = ~missing & (v == np.floor(np.where(missing, 0.0, v))) & (np.abs(np.where(missing, 0.0, v)) < 2.0**62)
        if whole.all() or (whole | missing).all():
            out = pa.array(np.where(whole, v, 0.0).astype(np.int64)).cast(pa.string())
        else:
            out = pa.array([_as_text(x) for x in v], type=pa.string())
    elif pa.types.is_null(t):
        out = pa.array([""] * len(arr), type=pa.string())
    else:  # booleans ("True"), dates and others: Python's text, as the whole-table path
        out = pa.array(["" if x is None else _as_text(x) for x in arr.to_pylist()], type=pa.string())
    if missing.any():
        out = pc.if_else(pa.array(missing), "", out)
    return pc.fill_null(out, "")


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def id_hashes(text: pa.Array) -> np.ndarray:
    """64-bit FNV-1a of each text's UTF-8 bytes (length mixed in, then a murmur finaliser), vectorised over
    the batch: one gather per byte position. The loader keeps 8 bytes a row to find repeated ids over every
    batch; equal hashes are only a hint, settled on the texts themselves."""
    n = len(text)
    buffers = text.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=n + 1, offset=text.offset * 4).astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None and buffers[2].size else \
        np.zeros(1, dtype=np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    # rows in order of length: at byte k only the rows longer than k (a suffix) are touched, so the work is the
    # batch's bytes, not rows x the longest id (one 1 MB id no longer costs 1 MB passes over every row)
    order = np.argsort(lengths, kind="stable")
    by_length, first_byte = lengths[order], starts[order]
    g = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    for k in range(int(lengths.max(initial=0))):
        live = int(np.searchsorted(by_length, k, side="right"))  # rows order[live:] have a byte k
        g[live:] = (g[live:] ^ data[first_byte[live:] + k].astype(np.uint64)) * _FNV_PRIME
    h = np.empty(n, dtype=np.uint64)
    h[order] = g
    h ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


def check_numeric(arr: pa.Array, kind: str, offset: int, tallies: dict[str, Tally]) -> np.ndarray:
    """Float or int feature: float64 values (NaN where missing); tallies ``missing``, ``bad`` (non-numeric
    text or infinite) and, for ``int``, ``fraction``."""
    n = len(arr)
    t = arr.type
    bad = np.zeros(n, dtype=bool)
    if pa.types.is_string(t):
        text = pc.utf8_trim_whitespace(arr)
        missing = _np_bool(pc.or_kleene(pc.is_null(text), pc.equal(text, "")))
        ok = _np_bool(pc.match_substring_regex(text, _NUMBER, ignore_case=True)) & ~missing
        values = np.full(n, np.nan)
        if ok.any():
            values[ok] = _floats(text.filter(pa.array(ok)))
        bad = ~missing & ~ok
    elif pa.types.is_null(t):
        missing, values = np.ones(n, dtype=bool), np.full(n, np.nan)
    elif _numeric_type(t):
        values = _floats(arr)
        missing = np.isnan(values)
    else:
        missing = _np_bool(pc.is_null(arr))
        values, bad = np.full(n, np.nan), ~missing
    missing |= ~bad & np.isnan(values)  # text such as "nan" is a missing value, not a type error
    bad |= ~missing & ~bad & np.isinf(values)
    tallies["missing"].add(missing, offset)
    tallies["bad"].add(bad, offset, arr)
    if kind == "int":
        ok = ~missing & ~bad
        frac = ok & (values != np.floor(np.where(ok, values, 0.0)))
        tallies["fraction"].add(frac, offset, arr)
    return values


def check_binary(arr: pa.Array, ones: frozenset[str], zeros: frozenset[str], offset: int,
                 tallies: dict[str, Tally]) -> np.ndarray:
    """Bool feature or label: 0.0/1.0 (NaN where missing); tallies ``missing`` and ``bad``."""
    missing = missing_of(arr)
    present = ~missing
    t = arr.type
    values = np.full(len(arr), np.nan)
    bad = np.zeros(len(arr), dtype=bool)
    if pa.types.is_boolean(t):
        values[present] = _floats(arr)[present]
    elif _numeric_type(t):
        v = _floats(arr)
        ok = present & ((v == 0.0) | (v == 1.0))
        values[ok] = v[ok]
        bad = present & ~ok
    elif pa.types.is_string(t):
        s = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        one = _np_bool(pc.is_in(s, value_set=pa.array(sorted(ones))))
        zero = _np_bool(pc.is_in(s, value_set=pa.array(sorted(zeros))))
        values[present & one] = 1.0
        values[present & zero] = 0.0
        bad = present & ~one & ~zero
    elif not pa.types.is_null(t):
        bad = present
    tallies["missing"].add(missing, offset)
    tallies["bad"].add(bad, offset, arr)
    return values


BOOL_SETS = (_TRUE, _FALSE)
LABEL_SETS = (_LABEL_ONE, _LABEL_ZERO)


def check_category(arr: pa.Array, categories: tuple[str, ...], allow_missing: bool, offset: int,
                   tallies: dict[str, Tally], unknown_counts: dict[str, int]) -> np.ndarray:
    """Category codes (index into ``categories``; -1 undeclared; ``len(categories)`` where missing and
    allowed); tallies ``missing`` and ``unknown``, whose values are counted in ``unknown_counts``."""
    missing = missing_of(arr)
    text = canonical_text(arr, missing)
    codes = np.asarray(pc.fill_null(pc.index_in(text, value_set=pa.array(list(categories), type=pa.string())),
                                    -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    if allow_missing:
        codes[missing] = len(categories)
    unknown = ~missing & (codes < 0)
    tallies["missing"].add(missing, offset)
    tallies["unknown"].add(unknown, offset)
    if unknown.any():
        counts: Any = pc.value_counts(text.filter(pa.array(unknown)))
        for value, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                                strict=True):
            unknown_counts[value] = unknown_counts.get(value, 0) + int(count)
    return codes


def unknown_listing(unknown_counts: dict[str, int]) -> str:
    """``'x' (3), 'y' (1), ...``: most frequent first, ties in sorted order (as `np.unique` + stable sort)."""
    values = sorted(unknown_counts)
    order = sorted(range(len(values)), key=lambda i: -unknown_counts[values[i]])
    listed = ", ".join(f"'{values[i]}' ({unknown_counts[values[i]]})" for i in order[:MAX_SHOWN])
    return listed + (", ..." if len(order) > MAX_SHOWN else "")
