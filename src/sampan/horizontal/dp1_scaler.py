"""DP1 standardisation on the coordinator: the public clipping range per feature (`dp1_bounds`) and the scaler
built from the parties' noised, clipped moments (`combine_dp1_stats`; the parties' side is
`sampan.privacy.mods.dp1_moments`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sampan.config import DP1Section

__all__ = ["combine_dp1_stats", "dp1_bounds"]


def dp1_bounds(section: DP1Section, feature_names: Sequence[str]) -> list[list[float]]:
    """Public clipping range per feature, in feature order; a missing range is a clear error."""
    bounds = []
    for name in feature_names:
        pair = section.bounds.get(name) or section.bounds.get(name.split("=")[0] + "=*") or section.bounds.get("*")
        if pair is None:
            raise ValueError(f"privacy.dp1.bounds has no range for feature {name!r} (add it, or a '*' default)")
        bounds.append([float(pair[0]), float(pair[1])])
    return bounds


def combine_dp1_stats(total: float, sums_z: np.ndarray, sums_z_sq: np.ndarray,
                      bounds: Sequence[Sequence[float]]) -> dict[str, np.ndarray]:
    """Scaler from the parties' noised moments of z = (x − mid)/half-width (see `dp1_moments`).

    Noise can push the moments outside what clipped data allows; they are clamped back (E[z] to
    [−1, 1], Var[z] to [1e-4, 1]) so the scale is never zero or negative.
    """
    lo, hi = np.array(bounds, dtype=float).T
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    n = max(total, 1.0)
    mean_z = np.clip(sums_z / n, -1.0, 1.0)
    var_z = np.clip(sums_z_sq / n - mean_z**2, 1e-4, 1.0)
    return {"mean": mid + half * mean_z, "scale": half * np.sqrt(var_z)}
