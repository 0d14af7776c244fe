"""The coordinator's reading of the checks: findings a validator can read (check, party, column, value, threshold).

Everything here is post-processing of what the parties released (public schemas; counts, noised under DP), so it
costs no further privacy. A finding's ``severity`` is "error" (the parties cannot train together as declared),
"warning" (they can, but look first) or "info" (a check that could not be made, and why).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sampan.checks.protocol import psi, psi_status

__all__ = ["Finding", "drift_findings", "label_findings", "numeric_columns", "overlap_findings", "schema_findings"]


@dataclass(frozen=True)
class Finding:
    check: str                 # "schema", "label", "drift", "overlap"
    severity: str              # "error", "warning", "info"
    party: str | None
    column: str | None
    message: str
    value: float | str | None = None
    threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _columns(schema: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c["name"]): c for c in schema.get("columns") or ()}


def schema_findings(schemas: Mapping[str, Mapping[str, Any]], *, vertical: bool, label_holder: str | None,
                    severity: str = "error") -> list[Finding]:
    """Horizontal: every party declares the same columns with the same kind, bounds, categories and missing
    markers, and the label. Vertical: one id column name, each feature held by one party, the label only at the
    label holder. Each disagreement names the party and the column (the majority's value as the reference)."""
    out: list[Finding] = []
    ids = {p: s.get("id") for p, s in schemas.items() if s.get("id") is not None}
    if len(set(ids.values())) > 1:
        common = Counter(ids.values()).most_common(1)[0][0]
        out += [Finding("schema", severity, p, str(i), f"party {p!r} names its id column {i!r}; the others "
                        f"{common!r}", str(i)) for p, i in ids.items() if i != common]
    columns = {p: _columns(s) for p, s in schemas.items()}
    if vertical:
        owners: dict[str, list[str]] = {}
        for p, cols in columns.items():
            for c in cols:
                owners.setdefault(c, []).append(p)
        out += [Finding("schema", severity, ", ".join(ps), c, f"column {c!r} is declared by {ps}: in a vertical "
                        "job each feature has one owner") for c, ps in sorted(owners.items()) if len(ps) > 1]
        labelled = sorted(p for p, s in schemas.items() if s.get("label"))
        if label_holder is not None and labelled != [label_holder]:
            out.append(Finding("schema", severity, ", ".join(labelled) or None, None, f"the label is held by "
                               f"{labelled or 'no party'}; the job names {label_holder!r} as the label holder"))
        return out
    every = sorted({c for cols in columns.values() for c in cols})
    for c in every:
        holders = [p for p in columns if c in columns[p]]
        for p in sorted(set(columns) - set(holders)):
            out.append(Finding("schema", severity, p, c, f"party {p!r} has no column {c!r} (declared by {holders})"))
        for key in ("kind", "bounds", "categories", "missing"):
            values = {p: columns[p][c].get(key) for p in holders}
            counted = Counter(repr(v) for v in values.values())
            if len(counted) > 1:
                common = counted.most_common(1)[0][0]
                out += [Finding("schema", severity, p, c, f"party {p!r} declares {key} {v!r} for column {c!r}; "
                                f"the others {common}", repr(v))
                        for p, v in sorted(values.items()) if repr(v) != common]
    unlabelled = sorted(p for p, s in schemas.items() if not s.get("label"))
    if unlabelled and len(unlabelled) < len(schemas):
        out += [Finding("schema", severity, p, None, f"party {p!r} holds no label column; the others do")
                for p in unlabelled]
    return out


def numeric_columns(schemas: Mapping[str, Mapping[str, Any]], wanted: Sequence[str] | None,
                    bounds: Mapping[str, Sequence[float]]) -> tuple[list[list[Any]], list[Finding]]:
    """The columns whose drift can be compared: declared by every party, numeric, with the same public bounds
    (or bounds from [checks] bounds). Returns ([name, low, high] rows, info findings for the columns left out)."""
    columns = [_columns(s) for s in schemas.values()]
    every = sorted({c for cols in columns for c in cols}) if wanted is None else list(wanted)
    chosen: list[list[Any]] = []
    skipped: list[Finding] = []
    for c in every:
        specs = [cols.get(c) for cols in columns]
        if any(s is None for s in specs):
            skipped.append(Finding("drift", "info", None, c, f"column {c!r} is not declared by every party: drift "
                                   "not compared"))
            continue
        kinds = {str(s.get("kind")) for s in specs if s is not None}
        if kinds & {"category"}:
            skipped.append(Finding("drift", "info", None, c, f"column {c!r} is a category column: drift is "
                                   "compared over numeric columns only"))
            continue
        declared = {tuple(s["bounds"]) for s in specs if s is not None and s.get("bounds") is not None}
        pair = tuple(bounds[c]) if c in bounds else (declared.pop() if len(declared) == 1 and all(
            s is not None and s.get("bounds") is not None for s in specs) else None)
        if pair is None:
            skipped.append(Finding("drift", "info", None, c, f"column {c!r} has no public bounds agreed by every "
                                   "party (give [checks] bounds): drift not compared"))
            continue
        chosen.append([c, float(pair[0]), float(pair[1])])
    return chosen, skipped


def drift_findings(histograms: Mapping[str, np.ndarray], columns: Sequence[Sequence[Any]], *, watch: float,
                   alert: float) -> tuple[dict[str, dict[str, float | None]], list[Finding]]:
    """PSI of each party's histogram against the pooled others', per column; a warning above ``watch``.

    Returns ({party: {column: psi}}, findings)."""
    values: dict[str, dict[str, float | None]] = {}
    out: list[Finding] = []
    parties = sorted(histograms)
    for p in parties:
        values[p] = {}
        others = [histograms[q] for q in parties if q != p]
        for i, entry in enumerate(columns):
            column = str(entry[0])
            value = psi(np.sum([o[i] for o in others], axis=0), histograms[p][i]) if others else math.nan
            values[p][column] = value if math.isfinite(value) else None
            status = psi_status(value, watch, alert)
            if status in ("watch", "investigate"):
                limit = alert if status == "investigate" else watch
                out.append(Finding("drift", "warning", p, column, f"column {column!r} at party {p!r} differs from "
                                   f"the other parties: PSI {value:.3f} > {limit} ({status})", round(value, 6), limit))
    return values, out


def label_findings(counts: Mapping[str, tuple[float, float]], *, low: float, high: float
                   ) -> tuple[dict[str, float | None], list[Finding]]:
    """Each label holder's positive rate (noised counts clamped to a rate in [0, 1]); a warning outside
    [low, high]."""
    rates: dict[str, float | None] = {}
    out: list[Finding] = []
    for p, (n, positives) in sorted(counts.items()):
        if n < 1:
            rates[p] = None
            out.append(Finding("label", "warning", p, None, f"party {p!r} reports no labelled rows", n))
            continue
        rate = min(max(positives / n, 0.0), 1.0)
        rates[p] = rate
        if rate < low or rate > high:
            limit = low if rate < low else high
            out.append(Finding("label", "warning", p, None, f"party {p!r}: positive rate {rate:.4f} is "
                               f"{'below' if rate < low else 'above'} {limit}", round(rate, 6), limit))
    return rates, out


def overlap_findings(overlaps: Mapping[str, float], holder: str, holder_size: int, *, minimum: float
                     ) -> tuple[dict[str, float | None], list[Finding]]:
    """Each partner's id overlap with the label holder as a fraction of the holder's ids; a warning below
    ``minimum``."""
    fractions: dict[str, float | None] = {}
    out: list[Finding] = []
    for partner, count in sorted(overlaps.items()):
        fraction = min(max(count / holder_size, 0.0), 1.0) if holder_size > 0 else None
        fractions[partner] = fraction
        if fraction is not None and fraction < minimum:
            out.append(Finding("overlap", "warning", partner, None, f"{partner!r} shares about {count:.0f} ids with "
                               f"{holder!r} ({fraction:.1%} of its ids), below {minimum:.0%}", round(fraction, 6),
                               minimum))
    return fractions, out
