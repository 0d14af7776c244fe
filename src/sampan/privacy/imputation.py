"""DP1 for imputation statistics: the party-side mod that noises, charges and limits `impute_stats` replies.

A horizontal party's exact `impute_stats` handler (`sampan.horizontal.imputation`) returns, for the columns
the coordinator names, the count and sum of present cells (mean columns, values clipped to the public bounds
and mapped to z in [-1, 1]) and a histogram over equal public bins (median columns). Every request is first
checked against the party's OWN schema (`sampan.privacy.imputation_request`: its imputed columns, each once,
with its declared statistic, bounds and the run's bin count), before any charge. Under DP this mod:
- admits the request by the party's own policy (minimum noise, required levels) and charges its ledger one
  DP1 Gaussian release, write-ahead, before anything is computed (`PartyPrivacyPolicy.admit_stats`);
- refuses a request without public bounds for every column, or asking for ranges (min/max are exact);
- releases [count, sum, histogram] through ONE Gaussian mechanism: one row adds at most 1 to the count and 1
  to the sum of each mean column and 1 to one bin of each median column, so the L2 sensitivity under
  add/remove-one-row is sqrt(2·k_mean + k_median), and the noise std is noise_multiplier × that;
- answers ONE such request per run: a repeat of the same request gets the same release (uncharged), any other
  request in the run (other columns, bins or bounds: a "chosen bins" probe) is refused.
Without DP the exact reply leaves (the receipt lists it as revealed), once per run for each kind (`ranges`,
statistics: a different second request is refused, review R13-IMP-3), unless the party's policy requires DP or
it already answered a DP request of the run (then exact statistics are refused).

What each role learns: the coordinator learns the noised vector (under DP) or the exact statistics (without);
other parties learn nothing from this message (the fill values derived from all parties reach every party).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.data.missing import MissingColumn
from sampan.privacy.admission import PartyDPState
from sampan.privacy.imputation_request import IMPUTE_STATISTICS, checked_columns, checked_ranges
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["IMPUTE_KIND", "MAX_IMPUTE_BINS", "imputation_mod", "imputation_sensitivity", "noised_statistics"]

IMPUTE_KIND = "impute_stats"
MAX_IMPUTE_BINS = 1024  # a party never bins a column finer than this (a sketch, not the values)


def imputation_sensitivity(columns: list[Mapping[str, Any]]) -> float:
    """L2 sensitivity of [count, sum (mean columns), histograms (median columns)] under add/remove-one-row, of a
    request checked by `checked_columns` (each column once, statistic "mean" or "median"); any other statistic
    is refused here too (review R13-IMP-1: it would add a histogram this count misses)."""
    unknown = [c.get("statistic") for c in columns if c.get("statistic") not in IMPUTE_STATISTICS]
    if unknown:
        raise PolicyRefused(f"imputation statistics {unknown!r} have no sensitivity: only {IMPUTE_STATISTICS}")
    k_mean = sum(1 for c in columns if c["statistic"] == "mean")
    k_median = sum(1 for c in columns if c["statistic"] == "median")
    return float(np.sqrt(2 * k_mean + k_median))


def noised_statistics(arrays: Mapping[str, np.ndarray], columns: list[Mapping[str, Any]],
                      noise_multiplier: float) -> dict[str, np.ndarray]:
    """One Gaussian release of the exact statistics (see the module docstring for the sensitivity)."""
    parts = [np.asarray(arrays[k], dtype=np.float64) for k in ("count", "sum", "hist")]
    vector = np.concatenate(parts)
    sensitivity = imputation_sensitivity(columns)
    noised = np.asarray(GaussianMechanism(sensitivity, noise_multiplier * sensitivity).release(vector))
    out, start = {}, 0
    for key, part in zip(("count", "sum", "hist"), parts, strict=True):
        out[key] = noised[start:start + part.size]
        start += part.size
    return out


def _digest(msg: Message) -> str:
    """What a repeat must match: the columns, bounds, bins and noise asked for."""
    return hashlib.sha256(json.dumps(msg.meta, sort_keys=True, default=str).encode()).hexdigest()


def _noise_multiplier(state: PartyDPState, meta: Mapping[str, Any]) -> float:
    dp = meta.get("dp")
    z = dp.get("noise_multiplier") if isinstance(dp, Mapping) else None
    if isinstance(z, bool) or not isinstance(z, int | float) or not z > 0:
        raise PolicyRefused(f"party {state.name!r} refuses imputation noise {dp!r}: not a positive multiplier")
    return float(z)


def _check(state: PartyDPState, msg: Message, columns: Sequence[MissingColumn]) -> None:
    """The request against the party's own schema (`sampan.privacy.imputation_request`), before any charge."""
    if "ranges" in msg.meta:
        checked_ranges(state.name, msg.meta, columns)
    else:
        checked_columns(state.name, msg.meta, columns)


def imputation_mod(state: PartyDPState, columns: Sequence[MissingColumn] = (), *, announced_dp: bool = False) -> Mod:
    """DP1 on `impute_stats` (see the module docstring): one charged, noised release per run under DP; without DP
    one answer of each kind (`ranges`, statistics) per run. ``columns``: the party's own imputed columns;
    ``announced_dp``: the job it accepted is a DP run, so no exact statistic or range is answered at all (not
    even before its first DP request)."""
    released: dict[str, tuple[str, dict[str, np.ndarray]]] = {}  # run id -> (request digest, release)
    answered: dict[tuple[str, str], str] = {}  # (run id, "ranges" | "columns") -> digest of the exact request

    def exact(msg: Message, inner: Handler) -> Message:
        if announced_dp or state.under_dp(msg.run_id):
            raise PolicyRefused(f"party {state.name!r} refuses 'impute_stats' without dp: its policy or its job "
                                "requires DP (exact imputation statistics would leave uncharged)")
        key = (msg.run_id, "ranges" if "ranges" in msg.meta else "columns")
        if answered.get(key, _digest(msg)) != _digest(msg):
            raise PolicyRefused(f"party {state.name!r} refuses a second, different imputation request in run "
                                f"{msg.run_id!r}: it answers one per run (review R13-IMP-3)")
        _check(state, msg, columns)
        reply = inner(msg)
        if not reply.is_error:
            answered[key] = _digest(msg)
        return reply

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind != IMPUTE_KIND:
            return inner(msg)
        with state.lock:
            if "dp" not in msg.meta:
                return exact(msg, inner)
            digest = _digest(msg)
            if msg.run_id in released:
                first, release = released[msg.run_id]
                if first != digest:
                    raise PolicyRefused(f"party {state.name!r} refuses a second imputation release in run "
                                        f"{msg.run_id!r}: under DP it answers one request per run")
            else:
                z = _noise_multiplier(state, msg.meta)
                _check(state, msg, columns)  # ranges under DP, unknown statistics, copies: refused uncharged
                state.policy.admit_stats(state.name, {"dp1": {"noise_multiplier": z}})  # charged write-ahead
                state.dp_runs.add(msg.run_id)
                reply = inner(msg)
                if reply.is_error:
                    return reply
                release = noised_statistics(reply.arrays, list(msg.meta["columns"]), z)
                released[msg.run_id] = (digest, release)
            return msg.reply(IMPUTE_KIND, arrays={k: v.copy() for k, v in release.items()}, meta={"dp": True})

    return mod
