"""The deployed party's gate on `impute_stats` (missing values, issue 13), before the bank's own mod sees it.

Reviews R13-IMP-1/4/5: the gate refuses what no honest coordinator sends, naming the rule, so a malformed or
oversized request is refused (and written to the audit log) rather than crashing the agent or reaching the
handler:
- imputation statistics travel per bank in clear (never summed under secure aggregation): a party whose list
  requires secure aggregation refuses them (declare the columns ``native`` for trees, or clean the data);
- under a job announced with DP the request carries its DP noise, a positive multiplier at or above the floor;
  a ``dp`` field that is not a table is refused, not dereferenced;
- the request asks either statistics (`columns`) or exact ranges (`ranges`, never with DP), each column once,
  by "mean" or "median" only, a median in exactly the run's bin count (`MEDIAN_BINS_DP` under DP,
  `MEDIAN_BINS` without).
The bank's mod then checks the request against its own schema (`sampan.privacy.imputation_request`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sampan.deploy.allow_section import JobRefused
from sampan.privacy.imputation_request import IMPUTE_STATISTICS, MEDIAN_BINS, MEDIAN_BINS_DP

__all__ = ["check_impute_request", "noise_field"]


def noise_field(party: str, meta: Mapping[str, Any], key: str) -> Any:
    """The `noise_multiplier` of the request's ``key`` table (None when absent); a ``key`` that is not a table is
    refused (review R13-IMP-5: it crashed the gate)."""
    if key not in meta:
        return None
    field = meta[key]
    if not isinstance(field, Mapping):
        raise JobRefused(party, "request", f"this request's {key!r} is {field!r}, not a table of DP settings")
    return field.get("noise_multiplier")


def _refuse(party: str, why: str) -> None:
    raise JobRefused(party, "request", f"this impute_stats request {why}")


def _check_shape(party: str, meta: Mapping[str, Any]) -> None:
    dp = "dp" in meta
    if ("columns" in meta) == ("ranges" in meta):
        _refuse(party, "must ask either statistics (columns) or ranges")
    if "ranges" in meta and dp:
        _refuse(party, "asks exact ranges under DP")
    entries = meta.get("columns", meta.get("ranges"))
    if not isinstance(entries, list) or not all(isinstance(c, Mapping) for c in entries):
        _refuse(party, "names its columns in something other than a list of tables")
    indices = [c.get("index") for c in entries]
    if any(isinstance(i, bool) or not isinstance(i, int) for i in indices) or len(set(indices)) != len(indices):
        _refuse(party, f"names columns {indices!r}: each an integer index, at most once")
    for c in entries if "columns" in meta else ():
        if c.get("statistic") not in IMPUTE_STATISTICS:
            _refuse(party, f"asks statistic {c.get('statistic')!r} of column {c.get('name')!r}: only "
                    f"{' or '.join(IMPUTE_STATISTICS)}")
        expected = MEDIAN_BINS_DP if dp else MEDIAN_BINS
        bins = c.get("bins")
        if c["statistic"] == "median" and (isinstance(bins, bool) or bins != expected):
            _refuse(party, f"bins column {c.get('name')!r} in {bins!r}: the run's median sketch has {expected}")


def check_impute_request(party: str, meta: Mapping[str, Any], floor: float | None, announced: Collection[str],
                         require: Collection[str]) -> None:
    """`impute_stats` against the list and the job (see the module docstring); `JobRefused` naming the rule."""
    if "secure_aggregation" in require:
        raise JobRefused(party, "require", "'impute_stats' sends this party's imputation statistics in clear (never "
                         "under secure aggregation), and it requires secure aggregation: declare the imputed columns "
                         "impute = \"native\" (tree models) or clean them")
    if "dp" not in meta and ({"dp", "dp1"} & set(announced) or {"dp1", "dp"} & set(require)):
        raise JobRefused(party, "require", "this impute_stats request carries no dp (exact imputation statistics) "
                         "in a job announced with DP")
    z = noise_field(party, meta, "dp")
    if "dp" in meta and (isinstance(z, bool) or not isinstance(z, int | float) or not z > 0):
        _refuse(party, f"carries DP noise {z!r}: not a positive multiplier")
    if floor is not None and z is not None and float(z) < floor:
        raise JobRefused(party, "min_noise_multiplier", f"imputation noise multiplier {z!r} < {floor}")
    _check_shape(party, meta)
