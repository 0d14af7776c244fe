"""Column-by-column checks and coercion behind `from_columns`.

Each checker turns one raw column (whatever a CSV reader, a Parquet reader or a caller produced) into
clean float64 values, or reports what is wrong as a `Problem` with a 1-based row count an operator can
act on. Nothing here raises: the caller gathers every problem so a data owner fixes them in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.data.missing import HOW_TO_FIX

MAX_SHOWN = 5

_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})
_LABEL_ONE = frozenset({"1", "1.0", "true"})
_LABEL_ZERO = frozenset({"0", "0.0", "false"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one column, already phrased for the operator."""

    column: str | None
    rows: int | None
    message: str


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 value`` / ``3 values``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def row_list(mask: np.ndarray) -> str:
    """``rows 4, 9, 17`` (1-based data rows, at most five shown)."""
    idx = np.flatnonzero(mask)
    return rows_text([int(i) for i in idx[:MAX_SHOWN]], int(idx.size))


def rows_text(first: list[int], count: int) -> str:
    """``rows 4, 9, 17, ...`` from the first (0-based) offending rows and how many there are in all; shared
    with the streaming checks (`sampan.data._arrow_checks`), which see the rows one batch at a time."""
    shown = ", ".join(str(i + 1) for i in first[:MAX_SHOWN])
    more = ", ..." if count > MAX_SHOWN else ""
    return f"{'row' if count == 1 else 'rows'} {shown}{more}"


def examples(values: Iterable[object], limit: int = 3) -> str:
    """Distinct offending values, quoted, in order of first appearance."""
    seen: list[str] = []
    for v in values:
        r = repr(v.item() if isinstance(v, np.generic) else v)
        if r not in seen:
            seen.append(r)
        if len(seen) > limit:
            break
    return examples_text(seen, limit)


def examples_text(seen: list[str], limit: int = 3) -> str:
    """``'a', 'b', 'c', ...`` from the distinct reprs seen so far (``limit + 1`` of them tell there are more)."""
    text = ", ".join(seen[:limit])
    return text + (", ..." if len(seen) > limit else "")


def _is_missing_obj(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, float | np.floating):
        return bool(math.isnan(v))
    if isinstance(v, str):
        return not v.strip()
    return False


def missing_mask(a: np.ndarray) -> np.ndarray:
    """True where a value is null, NaN or an empty/blank string."""
    if a.dtype.kind == "f":
        return np.isnan(a)
    if a.dtype.kind in "biu":
        return np.zeros(a.shape, dtype=bool)
    if a.dtype.kind in "US":
        return np.char.strip(a.astype(str)) == ""
    if a.dtype.kind == "O":
        return np.fromiter((_is_missing_obj(v) for v in a), dtype=bool, count=a.size)
    if a.dtype.kind in "mM":
        return np.isnat(a)
    return np.zeros(a.shape, dtype=bool)


def _label(column: str, role: str | None) -> str:
    return f"column '{column}'" + (f" ({role})" if role else "")


def missing_problem(column: str, missing: np.ndarray, role: str | None = None,
                    allow: bool = False) -> Problem | None:
    """Report null/NaN/empty cells, with how to fix it; ``None`` if there are none (or ``allow``: a policy
    takes them)."""
    k = int(missing.sum())
    if k == 0 or allow:
        return None
    if role == "label":
        fix = "a label may never be missing: drop those rows (or label them) before the run"
    elif role == "id":
        fix = "every row needs its id"
    else:
        fix = HOW_TO_FIX
    return Problem(
        column, k, f"{_label(column, role)} has {plural(k, 'missing/NaN value')} ({row_list(missing)}); {fix}"
    )


def apply_markers(a: np.ndarray, markers: Iterable[str] | None) -> np.ndarray:
    """``a`` with every cell whose text is a declared missing marker (e.g. "?", "NA") set to None; a numeric
    marker (e.g. "-999") also matches numeric cells equal to it. Unchanged without markers."""
    texts = {m.strip() for m in markers or ()}
    if not texts:
        return a
    numbers = set()
    for m in texts:
        try:
            numbers.add(float(m))
        except ValueError:
            pass
    out = np.asarray(a, dtype=object).copy()
    for i, v in enumerate(out):
        if v is None:
            continue
        if isinstance(v, str | bytes):
            text = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            if text.strip() in texts:
                out[i] = None
        elif isinstance(v, int | float | np.integer | np.floating) and float(v) in numbers:
            out[i] = None
    return out


def to_float(a: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numeric values (NaN where missing) and a mask of present-but-unparseable or infinite cells."""
    out = np.full(a.shape, np.nan, dtype=np.float64)
    bad = np.zeros(a.shape, dtype=bool)
    present = ~missing
    if a.dtype.kind in "biuf":
        out[present] = a[present].astype(np.float64)
    elif a.dtype.kind in "OUS":
        vals = a[present]
        try:
            out[present] = np.asarray(vals, dtype=object).astype(np.float64)
        except (TypeError, ValueError):
            parsed = np.empty(vals.size, dtype=np.float64)
            for j, v in enumerate(vals):
                try:
                    parsed[j] = float(v.strip() if isinstance(v, str) else v)
                except (TypeError, ValueError):
                    parsed[j] = np.nan
                    bad_idx = np.flatnonzero(present)[j]
                    bad[bad_idx] = True
            out[present] = parsed
    else:
        bad[present] = True
    bad |= present & ~bad & np.isinf(out)
    return out, bad


def check_numeric(
    column: str, a: np.ndarray, kind: str, allow_missing: bool = False
) -> tuple[np.ndarray, list[Problem]]:
    """Float or int feature: missing cells (NaN when ``allow_missing``), non-numeric text, infinities,
    non-integers for ``int``."""
    missing = missing_mask(a)
    values, bad = to_float(a, missing)
    # Text such as "nan" parses to NaN: it is a missing value, not a type error.
    missing = missing | (~bad & np.isnan(values))
    problems = [p for p in (missing_problem(column, missing, allow=allow_missing),) if p is not None]
    if bad.any():
        k = int(bad.sum())
        problems.append(
            Problem(
                column,
                k,
                f"column '{column}' is declared {kind} but has {plural(k, 'non-numeric value')} "
                f"({row_list(bad)}; e.g. {examples(a[bad])}); if they mark missing values, {HOW_TO_FIX}",
            )
        )
    if kind == "int":
        ok = ~missing & ~bad
        frac = ok & (values != np.floor(np.where(ok, values, 0.0)))
        if frac.any():
            k = int(frac.sum())
            problems.append(
                Problem(
                    column,
                    k,
                    f"column '{column}' is declared int but has {plural(k, 'non-integer value')} "
                    f"({row_list(frac)}; e.g. {examples(a[frac])})",
                )
            )
    return values, problems


def _bool_from(
    a: np.ndarray, missing: np.ndarray, ones: frozenset[str], zeros: frozenset[str]
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 values and a mask of present cells that are neither."""
    out = np.full(a.shape, np.nan, dtype=np.float64)
    present = ~missing
    if a.dtype.kind == "b":
        out[present] = a[present]
        return out, np.zeros(a.shape, dtype=bool)
    if a.dtype.kind in "iuf":
        v = a.astype(np.float64)
        ok = present & ((v == 0.0) | (v == 1.0))
        out[ok] = v[ok]
        return out, present & ~ok
    bad = np.zeros(a.shape, dtype=bool)
    for i in np.flatnonzero(present):
        v = a[i]
        if isinstance(v, bool | np.bool_):
            out[i] = float(v)
        elif isinstance(v, int | float | np.integer | np.floating) and v in (0, 1):
            out[i] = float(v)
        else:
            s = str(v).strip().lower()
            if s in ones:
                out[i] = 1.0
            elif s in zeros:
                out[i] = 0.0
            else:
                bad[i] = True
    return out, bad


def _check_binary(column: str, a: np.ndarray, ones: Any, zeros: Any, role: str | None,
                  describe_bad: Callable[[int, np.ndarray], str], allow_missing: bool = False,
                  ) -> tuple[np.ndarray, list[Problem]]:
    """Shared path of bool features and labels: parse, then report missing and unparseable cells."""
    missing = missing_mask(a)
    values, bad = _bool_from(a, missing, ones, zeros)
    missing_report = missing_problem(column, missing, role, allow=allow_missing)
    problems = [p for p in (missing_report,) if p is not None]
    if bad.any():
        k = int(bad.sum())
        problems.append(Problem(column, k, describe_bad(k, bad)))
    return values, problems


def check_bool(column: str, a: np.ndarray, allow_missing: bool = False) -> tuple[np.ndarray, list[Problem]]:
    """Boolean feature: true/false, 1/0, yes/no (any case); NaN where missing when ``allow_missing``."""
    return _check_binary(column, a, _TRUE, _FALSE, None, lambda k, bad: (
        f"column '{column}' is declared bool but has {plural(k, 'value')} other than "
        f"true/false, yes/no or 1/0 ({row_list(bad)}; e.g. {examples(a[bad])})"), allow_missing)


def check_label(column: str, a: np.ndarray) -> tuple[np.ndarray, list[Problem]]:
    """Binary label: 0/1, booleans, or the strings "0"/"1" ("true"/"false")."""
    return _check_binary(column, a, _LABEL_ONE, _LABEL_ZERO, "label", lambda k, bad: (
        f"column '{column}' (label) must be binary 0/1 but has {plural(k, 'other value')} "
        f"({row_list(bad)}); offending distinct values: {examples(a[bad], limit=5)}"))


def _as_text(v: object) -> str:
    """Canonical text of a cell: 3.0 -> "3", " retail " -> "retail"."""
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace").strip()
    return str(v.item() if isinstance(v, np.generic) else v).strip()


def as_text(a: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Object array of canonical strings ('' where missing)."""
    out = np.full(a.shape, "", dtype=object)
    present = ~missing
    if a.dtype.kind in "iu":
        out[present] = a[present].astype(str)
    else:
        out[present] = [_as_text(v) for v in a[present]]
    return out


def check_category(
    column: str, a: np.ndarray, categories: tuple[str, ...], allow_missing: bool = False
) -> tuple[np.ndarray, list[Problem]]:
    """Category codes (index into ``categories``, -1 where undeclared; ``len(categories)`` where missing and
    ``allow_missing``: missing is its own category)."""
    missing = missing_mask(a)
    text = as_text(a, missing)
    lookup = {c: i for i, c in enumerate(categories)}
    codes = np.fromiter((lookup.get(t, -1) for t in text), dtype=np.int64, count=text.size)
    problems = [p for p in (missing_problem(column, missing, allow=allow_missing),) if p is not None]
    if allow_missing:
        codes[missing] = len(categories)
    unknown = ~missing & (codes < 0)
    if unknown.any():
        k = int(unknown.sum())
        vals, counts = np.unique(text[unknown].astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        listed = ", ".join(f"'{vals[i]}' ({counts[i]})" for i in order[:MAX_SHOWN])
        if order.size > MAX_SHOWN:
            listed += ", ..."
        problems.append(
            Problem(
                column,
                k,
                f"column '{column}' has {plural(k, 'value')} not in its declared categories "
                f"({row_list(unknown)}): {listed}; declared: {', '.join(categories)}",
            )
        )
    return codes, problems


def check_ids(column: str, a: np.ndarray) -> tuple[np.ndarray, list[Problem]]:
    """Ids as strings; missing and repeated ids are errors (alignment and scoring key on them)."""
    missing = missing_mask(a)
    text = as_text(a, missing)
    problems = [p for p in (missing_problem(column, missing, "id"),) if p is not None]
    present = np.flatnonzero(~missing)
    if present.size:
        _, first, inverse = np.unique(text[present].astype(str), return_index=True, return_inverse=True)
        dup_local = first[inverse] != np.arange(present.size)
        if dup_local.any():
            dup = np.zeros(a.shape, dtype=bool)
            dup[present[dup_local]] = True
            k = int(dup.sum())
            problems.append(
                Problem(
                    column,
                    k,
                    f"column '{column}' (id) has {plural(k, 'duplicate id')} "
                    f"({row_list(dup)}; e.g. {examples(list(text[dup]))})",
                )
            )
    return text, problems
