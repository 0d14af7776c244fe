"""R12-SYN-2 (fixed): a coordinator-crafted fine grid cannot make the shape of a release depend on the records.

``synth.release`` with ``op = "one_way"`` decodes the numeric column's fine grid from the request
(`protocol.decode_grid`) without checking it. With ``zero_index`` past the grid's cells, a record whose value
is exactly 0 is counted in cell ``zero_index``, so ``np.bincount`` returns a longer histogram, and the party
noises and releases it (and its record's ``cells``). The Gaussian charge covers the values, not the length:
on D (no zero) the release has ``n_cells`` entries, on D' = D plus one record with value 0 it has
``zero_index + 1``. Deterministic distinction of neighbours (infinite privacy loss) at one charged release.
Fixed: the party rebuilds the fine grid from the public schema and the grid's public cell count, refuses a
request whose grid differs (edges, zero_index), and releases only histograms of the planned shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.synth import protocol
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.discretize import FineGrid, fine_grid
from sampan.synth.party import synthesis_party_app
from sampan.synth.workflow import simulated_setups
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

COLUMN = "years_in_business"


def _neighbours() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    table = next(iter(consortium_tables(600, seed=5).values()))
    keep = np.asarray(table[COLUMN], np.float64) != 0.0
    d = {k: np.asarray(v)[keep] for k, v in table.items()}
    extra = {k: v[:1].copy() for k, v in d.items()}
    extra[COLUMN] = np.zeros(1, dtype=np.asarray(d[COLUMN]).dtype)
    return d, {k: np.concatenate([d[k], extra[k]]) for k in d}


def _release_shape(table: dict[str, np.ndarray], grid: FineGrid | None = None) -> tuple[object, ...]:
    setups = simulated_setups({"bank": table}, epsilon=1.0, delta=1e-5, secure=False, schema=SME_SYNTH_SCHEMA)
    transport = InProcessTransport({"bank": synthesis_party_app(setups["bank"])})
    list(transport.exchange([Message("run", 0, "coordinator", "bank", protocol.OPEN, {},
                                      {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False, "parties": ["bank"]})]))
    grid = grid or FineGrid(0.0, 60.0, False, False, np.linspace(0.0, 60.0, 9), 40)  # zero_index 40 > 8 cells
    meta, arrays = protocol.encode_grid(grid)
    try:
        reply = list(transport.exchange([Message("run", 1, "coordinator", "bank", protocol.RELEASE, arrays,
                                                 {"op": "one_way", "column": COLUMN, "sigma": 50.0, "grid": meta})]))[0]
    except Exception as exc:  # a refusal: must read the same on D and D'
        return ("refused", str(exc))
    return reply.arrays["release"].shape, int(reply.meta["release"]["cells"])


def test_one_way_release_shape_is_data_independent() -> None:
    d, d_prime = _neighbours()
    shape_d, cells_d = _release_shape(d)
    shape_dp, cells_dp = _release_shape(d_prime)
    assert shape_d == shape_dp and cells_d == cells_dp, (shape_d, shape_dp)
    assert shape_d == "refused" and "zero_index" in str(cells_d)  # refused on the grid itself


@pytest.mark.parametrize("grid", [
    FineGrid(0.0, 60.0, False, False, np.linspace(0.0, 60.0, 9), -1),  # not the schema's grid
    FineGrid(0.0, 60.0, False, False, np.array([0.0, 30.0, 20.0, 60.0]), -1),  # not increasing
    FineGrid(0.0, 60.0, False, False, np.array([0.0, np.nan, 60.0]), -1),  # not finite
], ids=["foreign", "decreasing", "nan"])
def test_grids_other_than_the_public_one_are_refused_alike(grid: FineGrid) -> None:
    d, d_prime = _neighbours()
    assert _release_shape(d, grid) == _release_shape(d_prime, grid)
    assert _release_shape(d, grid)[0] == "refused"


def test_the_public_grid_is_answered_with_its_own_shape() -> None:
    d, d_prime = _neighbours()
    grid = fine_grid(SME_SYNTH_SCHEMA.column(COLUMN), 32)
    assert _release_shape(d, grid) == _release_shape(d_prime, grid) == ((grid.n_cells,), grid.n_cells)
