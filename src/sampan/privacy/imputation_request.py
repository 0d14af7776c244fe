"""What a party accepts as an `impute_stats` request: checked against its OWN schema before anything is computed.

Reviews R13-IMP-1/3: the statistics a bank releases (and, under DP, the sensitivity its noise is scaled by) must
follow from its own public schema, never from what the coordinator writes. So a request:
- names only columns the party's schema imputes, each at most once, with the statistic its schema declares
  ("mean" or "median": a copy asked as anything else would add a histogram the sensitivity does not count);
- uses the bounds its schema declares for the column, exactly (the coordinator cannot pick a window); a median
  column without declared bounds (exact runs only) gets the window the coordinator derived from every party's
  `ranges`, which must contain this party's own present values (no zooming on a sub-range), and a mean column
  without bounds gets the exact raw sum (exact runs only);
- bins a median column in exactly the run's count: `MEDIAN_BINS_DP` under DP, `MEDIAN_BINS` without;
- asks `ranges` (exact minimum and maximum) only of median columns without declared bounds, never under DP.
The party's mod (`sampan.privacy.imputation`) also answers one request of each kind per run.

What each role learns: nothing here leaves the party; a refusal names the column and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sampan.data.missing import MissingColumn
from sampan.privacy.party_policy import PolicyRefused

__all__ = ["IMPUTE_STATISTICS", "MEDIAN_BINS", "MEDIAN_BINS_DP", "checked_columns", "checked_ranges"]

IMPUTE_STATISTICS = ("mean", "median")
MEDIAN_BINS = 1024     # without DP: the median to within 1/1024 of its column's range
MEDIAN_BINS_DP = 32    # under DP: fewer bins keep the noise summed up to the median small


def _entries(party: str, meta: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    entries = meta.get(key)
    if not isinstance(entries, list) or not all(isinstance(c, Mapping) for c in entries):
        raise PolicyRefused(f"party {party!r} refuses imputation field {key!r}: not a list of columns")
    return entries


def _own(party: str, entry: Mapping[str, Any], own: Mapping[int, MissingColumn], seen: set[int]) -> MissingColumn:
    """The party's own imputed column the entry names (once per request)."""
    index = entry.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index not in own:
        raise PolicyRefused(f"party {party!r} refuses imputation statistics of column "
                            f"{entry.get('name', index)!r}: its schema imputes no such column")
    if index in seen:
        raise PolicyRefused(f"party {party!r} refuses column {own[index].name!r} asked twice in one imputation "
                            "request (each copy would be one more release)")
    seen.add(index)
    return own[index]


def _bounds(value: Any) -> tuple[float, float] | None:
    """Finite, non-degenerate bounds (low < midpoint < high, finite width), else None."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        return None
    lo, hi = float(value[0]), float(value[1])
    width = hi - lo
    return (lo, hi) if width == width and 0 < width < float("inf") and lo < (lo + hi) / 2 < hi else None


def checked_columns(party: str, meta: Mapping[str, Any], columns: Sequence[MissingColumn]
                    ) -> list[Mapping[str, Any]]:
    """The request's `columns`, each checked against the party's own schema (see the module docstring);
    `PolicyRefused` naming the column otherwise. Under DP (``"dp"`` in the request) every column needs bounds."""
    own = {c.index: c for c in columns if c.statistic in IMPUTE_STATISTICS}
    dp = "dp" in meta
    if "ranges" in meta:
        raise PolicyRefused(f"party {party!r} refuses an imputation request asking both statistics and ranges")
    seen: set[int] = set()
    entries = _entries(party, meta, "columns")
    for entry in entries:
        col = _own(party, entry, own, seen)
        if entry.get("statistic") != col.statistic:
            raise PolicyRefused(f"party {party!r} refuses statistic {entry.get('statistic')!r} of column "
                                f"{col.name!r}: its schema imputes it by the {col.statistic}")
        asked = entry.get("bounds")
        if col.bounds is not None:
            declared = (float(col.bounds[0]), float(col.bounds[1]))
            if _bounds(asked) != declared:
                raise PolicyRefused(f"party {party!r} refuses bounds {asked!r} of column {col.name!r}: its schema "
                                    f"declares {list(declared)}")
        elif dp:
            raise PolicyRefused(f"party {party!r} refuses imputation statistics under DP without public bounds "
                                f"for column {col.name!r}")
        elif col.statistic == "mean" and asked is not None:
            raise PolicyRefused(f"party {party!r} refuses bounds {asked!r} of column {col.name!r}: its schema "
                                "declares none (the exact sum is sent)")
        elif col.statistic == "median" and _bounds(asked) is None:
            raise PolicyRefused(f"party {party!r} refuses a median sketch of column {col.name!r} over {asked!r}: "
                                "not finite bounds with low < high")
        if col.statistic == "median":
            bins, expected = entry.get("bins"), MEDIAN_BINS_DP if dp else MEDIAN_BINS
            if isinstance(bins, bool) or bins != expected:
                raise PolicyRefused(f"party {party!r} refuses {bins!r} bins for column {col.name!r}: the median "
                                    f"sketch has exactly {expected} (at most {MEDIAN_BINS})")
    return entries


def checked_ranges(party: str, meta: Mapping[str, Any], columns: Sequence[MissingColumn]
                   ) -> list[MissingColumn]:
    """The columns a `ranges` request may name: median columns without declared bounds, each once, never under
    DP (exact minima and maxima); `PolicyRefused` naming the column otherwise."""
    if "dp" in meta:
        raise PolicyRefused(f"party {party!r} refuses imputation ranges under DP: exact minima and maxima would "
                            "leave uncharged (declare public bounds for the imputed columns)")
    own = {c.index: c for c in columns if c.statistic in IMPUTE_STATISTICS}
    seen: set[int] = set()
    out = []
    for entry in _entries(party, meta, "ranges"):
        col = _own(party, entry, own, seen)
        if col.statistic != "median" or col.bounds is not None:
            raise PolicyRefused(f"party {party!r} refuses the exact range of column {col.name!r}: only a median "
                                "column without declared bounds needs one")
        out.append(col)
    return out
