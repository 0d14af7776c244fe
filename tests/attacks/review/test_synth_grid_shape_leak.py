"""Review (issue 12, federated synthesis over the transport): a coordinator-crafted fine grid makes the shape
of a charged release depend on the records.

``synth.release`` with ``op = "one_way"`` decodes the numeric column's fine grid from the request
(`protocol.decode_grid`) without checking it. With ``zero_index`` past the grid's cells, a record whose value
is exactly 0 is counted in cell ``zero_index``, so ``np.bincount`` returns a longer histogram, and the party
noises and releases it (and its record's ``cells``). The Gaussian charge covers the values, not the length:
on D (no zero) the release has ``n_cells`` entries, on D' = D plus one record with value 0 it has
``zero_index + 1``. Deterministic distinction of neighbours (infinite privacy loss) at one charged release.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.synth import protocol
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.discretize import FineGrid
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


def _release_shape(table: dict[str, np.ndarray]) -> tuple[tuple[int, ...], int]:
    setups = simulated_setups({"bank": table}, epsilon=1.0, delta=1e-5, secure=False, schema=SME_SYNTH_SCHEMA)
    transport = InProcessTransport({"bank": synthesis_party_app(setups["bank"])})
    list(transport.exchange([Message("run", 0, "coordinator", "bank", protocol.OPEN, {},
                                      {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False, "parties": ["bank"]})]))
    grid = FineGrid(0.0, 60.0, False, False, np.linspace(0.0, 60.0, 9), 40)  # zero_index 40 > 8 cells
    meta, arrays = protocol.encode_grid(grid)
    reply = list(transport.exchange([Message("run", 1, "coordinator", "bank", protocol.RELEASE, arrays,
                                             {"op": "one_way", "column": COLUMN, "sigma": 50.0, "grid": meta})]))[0]
    return reply.arrays["release"].shape, int(reply.meta["release"]["cells"])


@pytest.mark.xfail(strict=True, reason="R12-SYN-2: an unchecked fine grid (zero_index out of range) makes a "
                                       "one_way release's length reveal whether a record equals 0")
def test_one_way_release_shape_is_data_independent() -> None:
    d, d_prime = _neighbours()
    shape_d, cells_d = _release_shape(d)
    shape_dp, cells_dp = _release_shape(d_prime)
    assert shape_d == shape_dp and cells_d == cells_dp, (shape_d, shape_dp)
