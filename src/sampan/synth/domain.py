"""The domain of columns the data owner did not declare, released under DP instead of read off the data.

A model's schema is public: it is written into ``model.json`` for anyone who samples. Category lists,
numeric bounds, even whether a column is numeric, read off the records would publish real values
(every id of an id column, a rare category seen once, the largest balance). So an undeclared domain is
*released*, through Gaussian mechanisms charged to the party's ledger like every other measurement:

1. **Kind** (columns not forced by ``categorical``): a noisy (text values, numeric values) count pair,
   L2 sensitivity 1; the column is categorical when the noisy text count is the larger. Missing markers
   (``?``, ``NA``, empty, ...) count as neither, so a numeric column with ``?`` stays numeric.
2. **Numeric bounds and integrality**: a noisy histogram over a *public* grid of magnitude cells
   (±[2^k, 2^(k+1)) for k in -16..63, and a cell around 0) plus a noisy count of non-integral values;
   one record moves one cell and that count by one each: L2 sensitivity sqrt(2). Bounds are the
   edges of the outermost cells above a strict Bonferroni threshold (noise alone clears it in a
   column with probability 1e-3; the fullest cell if none does); a column is integer when the noisy
   non-integral count stays below it.
3. **Categories** (a DP set union for one data owner, as in Korolova et al. / Wilson et al.): noisy
   counts of the values present, sensitivity 1, and only values whose noisy count exceeds
   1 + sigma * Phi^-1(1 - delta_c) are kept. A value held by one record passes with probability at
   most delta_c, so the release is (eps_Gaussian, delta_Gaussian + delta_c)-DP; the ledger charges the
   Gaussian and the receipt states the sum of the delta_c (``threshold_delta``). Only the set is
   released, never the counts. Feature columns get the public extra category ``(other)`` (and
   ``(missing)`` stands for missing markers); label values not released leave their rows out.

Rows are then transformed one by one (values outside the released domain become ``(other)`` or are
clipped to the bounds; with ``drop_incomplete_rows`` a row missing a numeric value is left out). A
per-row map keeps neighbouring tables neighbouring, so what is fitted afterwards stays DP.

Values are parsed cell by cell (``_parse``): whether a cell is missing, a number or text, and its
text form depend only on that cell, never on the rest of its column (a reader that infers a column's
type from the whole file lets one record change every released category name, e.g. ``false`` for
``FALSE``); callers pass text columns as read from the file (``table.read_csv_text``).

Refused before anything is released (nothing is charged), with an error naming the column:
identifier-like columns (text whose non-missing values are more than half distinct; an integer column
of almost all distinct, dense values such as a row number; a column named like an id, e.g.
``customer_id``, ``CustomerId``, ``iban``, with more than a tenth of its values distinct). Drop them or
declare them. Errors after the releases (a label with fewer than two released classes, missing values
in a numeric column, no row left) come after the domain releases were charged to the ledger.

The receipt lists each release with fields fixed by the plan only (column, sigma, sensitivity, rho,
threshold and the number of cells of the public grids); the number of noisy counts in a categories
release is one per distinct value present, which is data-dependent, so it is not recorded.

What each role learns: the data owner, everything (it runs this); whoever reads the model, only the
released domain above, which the receipt lists with its noise and its threshold delta.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtri

from sampan.privacy.ledger import Ledger
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.randomness import secure_generator
from sampan.synth.budget import gaussian_event, sigma_for_rho
from sampan.synth.schema import SchemaError, SynthColumn, SynthSchema, _fmt
from sampan.synth.table import Table, validate_table

__all__ = ["MISSING_MARKERS", "OTHER", "MISSING", "DomainRelease", "IdentifierColumnError", "release_domain"]

MISSING_MARKERS = frozenset({"", "?", "na", "n/a", "nan", "null", "none", "-", "#n/a", "missing"})
OTHER, MISSING = "(other)", "(missing)"
K_MIN, K_MAX = -16, 63  # magnitude cells 2^k .. 2^(k+1); |x| < 2^K_MIN falls in the zero cell
# Id-like names: a whole word of the lower-cased name (``customer_id``, ``ID``, ``row-key``; not ``paid``,
# ``humid``, ``amount_paid``), or a camelCase suffix (``customerId``, ``accountID``; case-sensitive).
_ID_WORD = re.compile(r"(^|[^a-z])(id|ids|uuid|guid|ssn|iban|key)([^a-z]|$)")
_ID_CAMEL = re.compile(r"[a-z](Id|ID|Ids|IDs|Uuid|Guid|Key)$")
_MIN_ROWS_FOR_ID_CHECK = 10
_DISTINCT_SHARE = 0.5  # any column: more than half of its values distinct
_ID_NAMED_DISTINCT_SHARE = 0.1  # a column named like an id: more than one value in ten distinct
_ROW_NUMBER_SHARE = 0.95  # integers, this share of them distinct, over a dense range
# Chance that pure noise clears the bounds threshold somewhere in one column's empty cells: a spurious
# outer cell would stretch the bounds by powers of two, so the threshold is strict (about 4.5 sigma).
_SPURIOUS_CELL = 1e-3

# Relative zCDP weight of one release of each kind within the domain share of the budget.
_WEIGHTS = {"kind": 0.25, "numeric": 1.0, "categorical": 1.0, "label": 4.0}


class IdentifierColumnError(SchemaError):
    """An identifier-like column: synthesising it would publish its values; drop it or declare it."""


@dataclass
class DomainRelease:
    """The released schema, the table mapped into it, and the receipt's account of the releases."""

    schema: SynthSchema
    table: Table
    releases: list[dict[str, Any]] = field(default_factory=list)
    threshold_delta: float = 0.0


@dataclass(frozen=True)
class _Parsed:
    missing: np.ndarray  # bool
    numeric: np.ndarray  # bool: parses as a finite number
    numbers: np.ndarray  # float64, NaN where not numeric
    text: np.ndarray  # object: str, MISSING where missing


def _parse(raw: np.ndarray) -> _Parsed:
    values = np.asarray(raw)
    n = values.shape[0]
    if values.dtype.kind in "fiu":
        x = values.astype(np.float64)
        ok = np.isfinite(x)
        text = np.array([_fmt(v) if f else MISSING for v, f in zip(x.tolist(), ok.tolist(), strict=False)],
                        dtype=object)
        return _Parsed(~ok, ok, np.where(ok, x, np.nan), text)
    if values.dtype.kind == "b":
        text = np.array(["true" if v else "false" for v in values.tolist()], dtype=object)
        return _Parsed(np.zeros(n, bool), np.zeros(n, bool), np.full(n, np.nan), text)
    missing, numeric = np.zeros(n, bool), np.zeros(n, bool)
    numbers, text = np.full(n, np.nan), np.empty(n, dtype=object)
    for i, v in enumerate(values.tolist()):
        s = "" if v is None else str(v).strip()
        if isinstance(v, float) and not math.isfinite(v) or s.lower() in MISSING_MARKERS:
            missing[i], text[i] = True, MISSING
            continue
        text[i] = s
        try:
            f = float(s)
        except ValueError:
            continue
        if math.isfinite(f):
            numeric[i], numbers[i] = True, f
    return _Parsed(missing, numeric, numbers, text)


def id_like_name(name: str) -> bool:
    """Whether a column name reads like an identifier (see ``_ID_WORD`` and ``_ID_CAMEL``)."""
    return bool(_ID_WORD.search(name.lower()) or _ID_CAMEL.search(name))


def _check_identifier(name: str, p: _Parsed, as_text: bool) -> None:
    """Refuse a column that looks like an identifier (before any release; the error goes to the owner)."""
    present = ~p.missing
    if int(present.sum()) < _MIN_ROWS_FOR_ID_CHECK:
        return
    hint = (f"column '{name}' looks like an identifier: synthesising it would publish its values. Drop the "
            "column from the file, or declare it in a schema (--schema) if its values are public")
    if as_text:
        values = p.text[present].astype(str)
    else:
        values = p.numbers[p.numeric]
        if values.size < _MIN_ROWS_FOR_ID_CHECK:
            return
    distinct = np.unique(values).size
    if as_text and distinct > _DISTINCT_SHARE * values.size:
        raise IdentifierColumnError(f"{hint} (more than half of its values are distinct)")
    if not as_text and bool(np.all(values == np.round(values))) and distinct >= _ROW_NUMBER_SHARE * values.size \
            and values.max() - values.min() + 1 <= 2 * values.size:
        raise IdentifierColumnError(f"{hint} (distinct integers over a dense range, like a row number)")
    if id_like_name(name) and distinct > _ID_NAMED_DISTINCT_SHARE * values.size:
        raise IdentifierColumnError(f"{hint} (its name, and more than a tenth of its values are distinct)")


def _magnitude_cells(x: np.ndarray) -> np.ndarray:
    """Public cell of each value: 0..79 negative (most negative first), 80 zero, 81..160 positive."""
    n_side = K_MAX - K_MIN + 1
    ax = np.abs(x)
    k = np.clip(np.floor(np.log2(np.where(ax > 0, ax, 1.0))), K_MIN, K_MAX).astype(np.int64) - K_MIN
    zero = ax < 2.0**K_MIN
    return np.where(zero, n_side, np.where(x > 0, n_side + 1 + k, n_side - 1 - k))


def _cell_edges(cell: int) -> tuple[float, float]:
    n_side = K_MAX - K_MIN + 1
    if cell == n_side:
        return 0.0, 0.0
    if cell > n_side:
        k = cell - n_side - 1 + K_MIN
        return 2.0**k, 2.0 ** (k + 1)
    k = n_side - 1 - cell + K_MIN
    return -(2.0 ** (k + 1)), -(2.0**k)


class _Releaser:
    """Charges the ledger, then adds the noise: the only path from records to the released domain."""

    def __init__(self, party: str, ledger: Ledger, rng: np.random.Generator | None) -> None:
        self.party, self.ledger, self.rng = party, ledger, rng
        self.releases: list[dict[str, Any]] = []

    def __call__(self, counts: np.ndarray, sigma: float, sensitivity: float, note: str, column: str,
                 cells: int | None, **extra: Any) -> np.ndarray:
        """``cells``: the size of the public grid the counts live on, fixed by the plan; None where the
        cells are the values present in the data (their number is data-dependent and never recorded)."""
        if cells is not None and cells != counts.size:
            raise AssertionError(f"domain release '{note}': {counts.size} counts on a {cells}-cell public grid")
        self.ledger.record(gaussian_event(self.party, sigma, sensitivity, len(self.releases), note))
        entry: dict[str, Any] = {"kind": "gaussian", "note": note, "attributes": [column], "cells": cells}
        if cells is None:
            entry["cells_note"] = "one noisy count per value present: data-dependent, not released"
        self.releases.append({**entry, "sigma": sigma, "sensitivity": sensitivity,
                              "rho": sensitivity**2 / (2.0 * sigma**2), "noise_share": 1.0, **extra})
        gen = self.rng if self.rng is not None else secure_generator()
        return np.asarray(GaussianMechanism(sensitivity, sigma).release(counts.astype(np.float64), gen))


def release_domain(columns: Mapping[str, np.ndarray], *, party: str, ledger: Ledger, rho: float,
                   threshold_delta: float, label: str | None = None, categorical: Sequence[str] = (),
                   categories: Mapping[str, Sequence[str]] | None = None, drop_incomplete_rows: bool = False,
                   rng: np.random.Generator | None = None, source: str = "table") -> DomainRelease:
    """Release the schema of ``columns`` under DP (zCDP ``rho`` in all, plus ``threshold_delta``); see the
    module doc. ``columns``: raw columns, best as text read cell by cell (numbers and booleans are
    formatted per cell). ``categories``: columns whose categories the owner declares (public, not
    released; values outside them are refused). Errors name the column. Unknown, empty and
    identifier-like columns are refused before any release (nothing charged); the later errors (label
    classes not released, missing numeric values, no row left) come after the domain releases were
    charged to ``ledger``."""
    declared = {k: tuple(str(c) for c in v) for k, v in (categories or {}).items()}
    if not columns:
        raise SchemaError(f"{source}: no columns")
    unknown = [c for c in (*categorical, *declared, *([label] if label else [])) if c not in columns]
    if unknown:
        raise SchemaError(f"{source}: no column(s) {unknown} (columns: {list(columns)})")
    forced = set(categorical) | set(declared) | ({label} if label else set())
    parsed = {name: _parse(np.asarray(raw)) for name, raw in columns.items()}
    for name, p in parsed.items():
        if p.missing.all():
            raise SchemaError(f"{source}: column '{name}': every value is missing; drop the column or declare it")
        if name != label and name not in declared:
            as_text = name in forced or int((~p.numeric & ~p.missing).sum()) > int(p.numeric.sum())
            _check_identifier(name, p, as_text)

    # The plan (which releases, at which noise) depends only on the column names and the declarations.
    free = [n for n in columns if n not in forced]
    plan = [(n, "kind") for n in free] + [(n, "value") for n in columns if n not in declared]
    weight = {(n, "kind"): _WEIGHTS["kind"] for n in free}
    weight.update({(n, "value"): _WEIGHTS["label" if n == label else "numeric"] for n in columns})
    unit = rho / max(sum(weight[k] for k in plan), 1e-300)
    release = _Releaser(party, ledger, rng)

    kinds: dict[str, str] = {n: "categorical" for n in forced}
    for name in free:
        p = parsed[name]
        counts = np.array([int((~p.numeric & ~p.missing).sum()), int(p.numeric.sum())])
        sigma = sigma_for_rho(unit * weight[(name, "kind")])
        noisy = release(counts, sigma, 1.0, f"domain: kind of '{name}' (text vs numeric count)", name, 2)
        kinds[name] = "categorical" if noisy[0] > noisy[1] else "numeric"

    n_threshold = sum(1 for n in columns if kinds[n] == "categorical" and n not in declared)
    delta_c = threshold_delta / max(n_threshold, 1)
    specs: list[SynthColumn] = []
    for name in columns:
        if name in declared:
            specs.append(SynthColumn(name, "categorical", declared[name]))
            continue
        p, sigma = parsed[name], sigma_for_rho(unit * weight[(name, "value")])
        if kinds[name] == "categorical":
            values, inverse = np.unique(p.text.astype(str), return_inverse=True)
            noisy = release(np.bincount(inverse, minlength=values.size), sigma, 1.0,
                            f"domain: categories of '{name}' (thresholded noisy counts)", name, None,
                            threshold=1.0 + sigma * float(ndtri(1.0 - delta_c)), threshold_delta=delta_c)
            kept = sorted(str(v) for v, c in zip(values.tolist(), noisy.tolist(), strict=False)
                          if c > 1.0 + sigma * float(ndtri(1.0 - delta_c)) and v != OTHER)
            if name == label:
                if len(kept) < 2:
                    raise SchemaError(f"{source}: label '{name}': fewer than two classes are frequent enough to "
                                      "be released at this budget; declare the classes in a schema (--schema)")
                specs.append(SynthColumn(name, "categorical", tuple(kept)))
            else:
                specs.append(SynthColumn(name, "categorical", (*kept, OTHER)))
            continue
        sigma = sigma_for_rho(unit * weight[(name, "value")], math.sqrt(2.0))
        x = p.numbers[p.numeric]
        n_cells = 2 * (K_MAX - K_MIN + 1) + 1
        counts = np.append(np.bincount(_magnitude_cells(x), minlength=n_cells), int((x != np.round(x)).sum()))
        noisy = release(counts, sigma, math.sqrt(2.0), f"domain: bounds of '{name}' (public magnitude grid) and "
                        "non-integral count", name, n_cells + 1)
        tau = float(ndtri(1.0 - _SPURIOUS_CELL / n_cells)) * sigma
        above = np.flatnonzero(noisy[:-1] > tau)
        if above.size == 0:
            above = np.array([int(np.argmax(noisy[:-1]))])
        lo, hi = _cell_edges(int(above[0]))[0], _cell_edges(int(above[-1]))[1]
        if hi <= lo:
            hi = lo + 1.0
        integer = bool(noisy[-1] <= tau) and hi - lo >= 1
        specs.append(SynthColumn(name, "numeric", bounds=(lo, hi), integer=integer))
    schema = SynthSchema(tuple(specs), label=label, domain_source="dp")
    if not plan:
        schema = SynthSchema(tuple(specs), label=label, domain_source="declared")
    table = _map_rows(parsed, schema, set(declared), drop_incomplete_rows, source)
    return DomainRelease(schema, validate_table(table, schema, source), release.releases, threshold_delta)


def _map_rows(parsed: Mapping[str, _Parsed], schema: SynthSchema, declared: set[str], drop_incomplete_rows: bool,
             source: str) -> Table:
    """Each row into the released domain, on its own (a per-row map: neighbouring tables stay neighbours)."""
    n = next(iter(parsed.values())).missing.size
    keep = np.ones(n, dtype=bool)
    out: Table = {}
    incomplete = []
    for spec in schema.columns:
        p = parsed[spec.name]
        if spec.kind == "numeric":
            if not p.numeric.all():
                incomplete.append(spec.name)
                keep &= p.numeric
            out[spec.name] = p.numbers
            continue
        cats = np.asarray(spec.categories, dtype=object)
        known = np.isin(p.text, cats)
        if spec.name in declared:
            out[spec.name] = p.text  # validated against the declaration (an error names the column)
        elif spec.name == schema.label:
            keep &= known
            out[spec.name] = p.text
        else:
            out[spec.name] = np.where(known, p.text, OTHER).astype(object)
    if incomplete and not drop_incomplete_rows:
        raise SchemaError(f"{source}: numeric column(s) {incomplete} have missing or non-numeric values "
                          f"(markers such as '?', 'NA' or empty cells): the synthesiser does not model missing "
                          "values. Impute them, or pass --drop-incomplete-rows to fit on complete rows only")
    if not keep.any():
        raise SchemaError(f"{source}: no row is left once incomplete rows (numeric columns {incomplete}) and rows "
                          "whose label class was not released are left out")
    return {k: v[keep] for k, v in out.items()}
