"""A party's own compute: row blocks of its data, mapped on one process or on an engine across its machines.

Protocols hand the party-local, per-row work of their side (gradients, histograms, binning, scoring, PSI
hashing) to `current_engine().map_blocks(...)`. Blocks are fixed row ranges (`row_blocks`) that do not depend
on the number of workers, and results come back in block order, so a reduction by `reduce_in_order` gives the
same bytes on one process and on a cluster. Everything here stays inside one party's trust boundary: an
engine may serialise tasks its own way (the documented exception to "no pickle" in docs/architecture.md).

Engines: `LocalEngine` (default) and `RayEngine` (`ray_engine`, the optional `sampan[ray]` extra), chosen by a
party's ``[compute]`` table (`ComputeSettings`, `make_engine`); `engine_tls` issues the engine's certificates
from a CA private to the party.

May import: sampan.errors, sampan.files (and numpy, pydantic, cryptography; an engine's own library, e.g. ray,
lazily, only where used).
"""

from sampan.compute.engine import (
    BLOCK_ROWS,
    Engine,
    LocalEngine,
    current_engine,
    reduce_in_order,
    row_blocks,
    use_engine,
)
from sampan.compute.engine_tls import EngineTLS, issue_engine_certs, load_engine_tls
from sampan.compute.settings import ComputeSettings, make_engine

__all__ = [
    "BLOCK_ROWS",
    "ComputeSettings",
    "EngineTLS",
    "Engine",
    "LocalEngine",
    "current_engine",
    "issue_engine_certs",
    "load_engine_tls",
    "make_engine",
    "reduce_in_order",
    "row_blocks",
    "use_engine",
]
