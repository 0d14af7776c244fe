"""R15-GBDT-1 (fixed): a level's histograms no longer hold one partial per row block at once.

Validation (bounded memory, issue 15 item 2): `sampan.models.gbdt_hist` says "the memory beside the matrix is one
block's worth" and "proportional to a batch". A deep tree's level request (2^(max_depth-1) small children; the
vertical partner's and the dealer's ring sums, the horizontal bank's and the vertical bank's float sums) should
therefore cost about one block's (nodes x values x bins) partials whatever the number of rows. What happens:
`node_histograms` / `ring_node_histograms` call `engine.map_blocks(...)`, which returns the list of EVERY block's
full (nodes, values, total_bins) partial, and only then `reduce_in_order` adds them. Peak memory is
(rows / 65,536) x nodes x values x bins x 8 bytes: here 8 blocks x 128 nodes x 2 x 5,120 bins -> ~12x one result;
at 10M rows (153 blocks), max_depth 8 and 100 features x 34 bins that is ~1.8 GB beside a 1 GB uint8 matrix,
per partner at the dealer too. Safe behaviour (now): partials fetched in groups of at most
`gbdt_hist.HIST_GROUP_BYTES` and added in block order into one running total (the same bytes), so the peak does not
grow with the number of blocks.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from sampan.compute import BLOCK_ROWS
from sampan.models.gbdt_hist import node_histograms, ring_node_histograms


def _peak(fn: Callable[..., np.ndarray], n_blocks: int) -> int:
    rng = np.random.default_rng(0)
    n, d, nb, n_nodes = n_blocks * BLOCK_ROWS, 20, 256, 128
    bins = np.asfortranarray(rng.integers(0, nb, size=(n, d), dtype=np.uint8))
    nodes = np.array_split(np.arange(n), n_nodes)
    values = (rng.integers(0, 2 ** 64, size=(2, n), dtype=np.uint64) if fn is ring_node_histograms
              else np.rint(rng.standard_normal((2, n)) * 2.0 ** 32) / 2.0 ** 32)
    tracemalloc.start()
    try:
        fn(bins, [nb] * d, nodes, values)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fn", [node_histograms, ring_node_histograms], ids=["float", "ring"])
def test_level_histogram_memory_does_not_grow_with_the_number_of_blocks(fn: Callable[..., np.ndarray]) -> None:
    small, large = _peak(fn, 2), _peak(fn, 8)
    # the per-position inputs (rows int64 + node int32 = 12 bytes) grow 4x too but are small beside the partials
    assert large < 1.5 * small, f"peak {small / 1e6:.0f} MB at 2 blocks, {large / 1e6:.0f} MB at 8 blocks"
