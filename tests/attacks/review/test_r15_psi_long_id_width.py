"""R15-PSI-1: one over-long id makes every id as wide as it (memory n x longest id, not the ids' own bytes).

Attack / bad input: a bank's id column with one garbage row (a free-text note pasted into the id column,
a few thousand characters) among ordinary 10-character ids. `psi_ids.compact_ids` holds the ids as one
fixed-width ``S<w>`` array whose width is the LONGEST id (and, per block, a UCS-4 ``U<w>`` copy 4 bytes per
character of that width), so memory is n x max length: at 10M ids one 5,000-character id asks for ~50 GB
held and ~20 GB per block transient, and the party process dies of memory instead of answering. The per-item
rule before (d48b24d) held each id at its own length.

Expected safe behaviour: memory proportional to the ids' own bytes (e.g. ids over a width kept as fixed-width
hashes, as issue 15 item 3a asks), or a clear PsiError naming the party (not the id) refusing an over-long id.
What happens: 5,000 ids of 10 characters plus one of 2,000 take ~10 MB held and ~50 MB at peak, about 100x
the ~0.1 MB the same ids take without the outlier.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sampan.vertical.psi_ids import compact_ids
from sampan.vertical.psi_points import PsiError


@pytest.mark.xfail(strict=True, reason="R15-PSI-1: one over-long id widens every compact id to its length "
                   "(memory n x longest id)")
def test_one_long_id_does_not_widen_every_id() -> None:
    n = 5_000
    ids = np.array([f"BR{i:08d}" for i in range(n)] + ["X" * 2_000], dtype=object)
    total = sum(len(s) for s in ids)  # ~52 KB of id text
    tracemalloc.start()
    try:
        compact = compact_ids(ids, "bank")
    except PsiError as exc:  # a clear refusal naming the party is an acceptable answer
        tracemalloc.stop()
        assert "'bank'" in str(exc) and "XXXX" not in str(exc)
        return
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert compact.ids.nbytes <= 20 * total, f"held {compact.ids.nbytes / 1e6:.1f} MB for {total / 1e3:.0f} KB of ids"
    assert peak <= 60 * total, f"peak {peak / 1e6:.1f} MB for {total / 1e3:.0f} KB of ids"
