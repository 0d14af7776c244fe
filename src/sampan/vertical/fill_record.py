"""A vertical party's fill values travel with its model parts (review R13-VIMP-1's scoring note).

Training fills each party's missing cells locally (`sampan.data.missing.impute_locally`); a later scoring run
rebuilds the party from the table it holds THEN, whose own median may differ. So every part a party registers
records the values its training table was filled with, and loading a part re-imputes the party's scoring views
with them: scoring imputes exactly as training did. The values stay in the party's own registry (never sent).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.data.missing import impute_locally

__all__ = ["recorded_fill", "refill"]


def recorded_fill(data: Any) -> dict[str, Any]:
    """Part meta with the table's fill values (None where nothing is filled); {} for a table filled with nothing."""
    values = getattr(data, "fill_values", None)
    if values is None:
        return {}
    return {"fill_values": [None if np.isnan(v) else float(v) for v in np.asarray(values, dtype=np.float64)]}


def refill(party: Any, unfilled: Any, recorded: Any) -> None:
    """Re-impute ``party``'s scoring views (its table, the scoring rows, the GBDT's full view) from its table before
    imputation, with a loaded part's recorded values; a part that recorded none changes nothing."""
    if recorded is None or unfilled is None:
        return
    values = np.array([np.nan if v is None else float(v) for v in recorded], dtype=np.float64)
    if values.shape != (unfilled.X.shape[1],):
        raise ValueError(f"party {party.name!r}: the loaded part recorded {values.size} fill values; its table has "
                         f"{unfilled.X.shape[1]} columns (not the table it was trained on)")
    filled = impute_locally(unfilled, values=values)
    party.data = filled
    party.scoring.X = filled.X
    party.gbdt._X_full = filled.trees_X if filled.trees_X is not None else filled.X
