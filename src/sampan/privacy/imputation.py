"""DP1 for imputation statistics: the party-side mod that noises, charges and limits `impute_stats` replies.

A horizontal party's exact `impute_stats` handler (`sampan.horizontal.imputation`) returns, for the columns
the coordinator names, the count and sum of present cells (mean columns, values clipped to the public bounds
and mapped to z in [-1, 1]) and a histogram over equal public bins (median columns). Under DP this mod:
- admits the request by the party's own policy (minimum noise, required levels) and charges its ledger one
  DP1 Gaussian release, write-ahead, before anything is computed (`PartyPrivacyPolicy.admit_stats`);
- refuses a request without public bounds for every column, or asking for ranges (min/max are exact);
- releases [count, sum, histogram] through ONE Gaussian mechanism: one row adds at most 1 to the count and 1
  to the sum of each mean column and 1 to one bin of each median column, so the L2 sensitivity under
  add/remove-one-row is sqrt(2·k_mean + k_median), and the noise std is noise_multiplier × that;
- answers ONE such request per run: a repeat of the same request gets the same release (uncharged), any other
  request in the run (other columns, bins or bounds: a "chosen bins" probe) is refused.
Without DP the exact reply leaves (the receipt lists it as revealed), unless the party's policy requires DP or
it already answered a DP request of the run (then exact statistics are refused).

What each role learns: the coordinator learns the noised vector (under DP) or the exact statistics (without);
other parties learn nothing from this message (the fill values derived from all parties reach every party).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.privacy.admission import PartyDPState
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["IMPUTE_KIND", "MAX_IMPUTE_BINS", "imputation_mod", "imputation_sensitivity", "noised_statistics"]

IMPUTE_KIND = "impute_stats"
MAX_IMPUTE_BINS = 1024  # a party never bins a column finer than this (a sketch, not the values)


def imputation_sensitivity(columns: list[Mapping[str, Any]]) -> float:
    """L2 sensitivity of [count, sum (mean columns), histograms (median columns)] under add/remove-one-row."""
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


def _check_dp_request(state: PartyDPState, meta: Mapping[str, Any]) -> float:
    columns = meta.get("columns") or []
    if "ranges" in meta:
        raise PolicyRefused(f"party {state.name!r} refuses imputation ranges under DP: exact minima and maxima "
                            "would leave uncharged (declare public bounds for the imputed columns)")
    for c in columns:
        if c.get("bounds") is None:
            raise PolicyRefused(f"party {state.name!r} refuses imputation statistics under DP without public bounds "
                                f"for column {c.get('name', c.get('index'))!r}")
        bins = c.get("bins", 0)
        if c["statistic"] == "median" and (isinstance(bins, bool) or not isinstance(bins, int)
                                           or not 1 <= bins <= MAX_IMPUTE_BINS):
            raise PolicyRefused(f"party {state.name!r} refuses {bins!r} bins: at most {MAX_IMPUTE_BINS}")
    z = (meta.get("dp") or {}).get("noise_multiplier")
    if isinstance(z, bool) or not isinstance(z, int | float) or not z > 0:
        raise PolicyRefused(f"party {state.name!r} refuses imputation noise {z!r}: not a positive multiplier")
    return float(z)


def imputation_mod(state: PartyDPState) -> Mod:
    """DP1 on `impute_stats` (see the module docstring): one charged, noised release per run under DP."""
    released: dict[str, tuple[str, dict[str, np.ndarray]]] = {}  # run id -> (request digest, release)

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind != IMPUTE_KIND:
            return inner(msg)
        with state.lock:
            if "dp" not in msg.meta:
                if state.under_dp(msg.run_id):
                    raise PolicyRefused(f"party {state.name!r} refuses 'impute_stats' without dp: its policy "
                                        "requires DP (exact imputation statistics would leave uncharged)")
                return inner(msg)
            digest = _digest(msg)
            if msg.run_id in released:
                first, release = released[msg.run_id]
                if first != digest:
                    raise PolicyRefused(f"party {state.name!r} refuses a second imputation release in run "
                                        f"{msg.run_id!r}: under DP it answers one request per run")
            else:
                z = _check_dp_request(state, msg.meta)
                state.policy.admit_stats(state.name, {"dp1": {"noise_multiplier": z}})  # charged write-ahead
                state.dp_runs.add(msg.run_id)
                exact = inner(msg)
                if exact.is_error:
                    return exact
                release = noised_statistics(exact.arrays, list(msg.meta["columns"]), z)
                released[msg.run_id] = (digest, release)
            return msg.reply(IMPUTE_KIND, arrays={k: v.copy() for k, v in release.items()}, meta={"dp": True})

    return mod
