"""R15-PSI-1: one over-long id must not make every id as wide as it (memory n x longest id, not the ids' own bytes).

Attack / bad input: a bank's id column with one garbage row (a free-text note pasted into the id column, a few
thousand characters) among ordinary 10-character ids. `psi_ids.compact_ids` holds the ids as one fixed-width
``S<w>`` array whose width is the LONGEST id, so at 10M ids one 5,000-character id asked for ~50 GB held (and
~20 GB per block transient) and the party process died of memory instead of answering.

Safe behaviour asserted here: an id over `MAX_ID_BYTES` (256 characters as given, or UTF-8 bytes once normalised)
is refused with a PsiError naming the party (not the id), whatever container the ids come in, before any
fixed-width copy as wide as it is made; ids up to the cap pass; a wide declared numpy dtype holding short ids
(``U4000``) costs memory of the ids' own width, not the declared one.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sampan.vertical.psi_ids import MAX_ID_BYTES, compact_ids
from sampan.vertical.psi_points import PsiError

N = 5_000


def _ids() -> list[str]:
    return [f"BR{i:08d}" for i in range(N)]


@pytest.mark.parametrize("container", ["list", "object", "unicode", "bytes", "arrow"])
def test_one_long_id_is_refused_naming_the_party(container: str) -> None:
    ids = _ids() + ["X" * 2_000]
    given: object = {"list": ids, "object": np.array(ids, dtype=object), "unicode": np.array(ids),
                     "bytes": np.array([s.encode() for s in ids])}.get(container)
    if container == "arrow":
        given = pytest.importorskip("pyarrow").array(ids)
    tracemalloc.start()
    try:
        with pytest.raises(PsiError, match="longer than 256") as info:
            compact_ids(given, "bank")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "'bank'" in str(info.value) and "XXXX" not in str(info.value) and "BR0" not in str(info.value)
    assert peak <= 60 * sum(map(len, ids)), f"peak {peak / 1e6:.1f} MB before refusing"


def test_ids_up_to_the_cap_pass_and_normalisation_cannot_widen_past_it() -> None:
    at_cap = _ids()[:10] + ["Y" * MAX_ID_BYTES]
    assert compact_ids(at_cap, "bank").ids.dtype.itemsize == MAX_ID_BYTES
    with pytest.raises(PsiError, match="longer than 256"):  # 200 characters, 400 UTF-8 bytes
        compact_ids(_ids()[:10] + ["é" * 200], "bank")


def test_a_wide_declared_dtype_costs_the_ids_own_width() -> None:
    ids = np.array(_ids(), dtype="U4000")  # 80 MB declared for 50 KB of ids (the caller's array)
    tracemalloc.start()
    try:
        compact = compact_ids(ids, "bank")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert compact.ids.dtype.itemsize == 10
    assert peak <= 60 * 10 * N, f"peak {peak / 1e6:.1f} MB for {10 * N / 1e3:.0f} KB of ids"
