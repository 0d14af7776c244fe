"""The engine contract: `put` read-only data once, `map_blocks` a module-level function over fixed row blocks.

Why fixed blocks and ordered results: floating-point sums depend on their order. A protocol that sums
per-block partials with `reduce_in_order` gets identical bytes whatever runs the blocks (one process, threads,
or an engine's workers), which is what lets a party move to a cluster without changing its model.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

__all__ = ["BLOCK_ROWS", "Engine", "LocalEngine", "current_engine", "reduce_in_order", "row_blocks", "use_engine"]

BLOCK_ROWS = 1 << 16  # 65,536 rows: a block of 130 float32 features is ~34 MB, small beside the table

R = TypeVar("R")


def row_blocks(n_rows: int, block_rows: int = BLOCK_ROWS) -> list[tuple[int, int]]:
    """Half-open row ranges ``[(0, b), (b, 2b), ...]`` covering ``n_rows``; fixed by the data, not the workers."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    return [(start, min(start + block_rows, n_rows)) for start in range(0, n_rows, block_rows)]


@runtime_checkable
class Engine(Protocol):
    """Where a party's block tasks run. ``fn`` is a module-level function ``fn(data, start, stop, *args)``."""

    name: str

    def put(self, data: Any) -> Any:
        """A handle to read-only ``data`` that tasks receive resolved (an object ref on a cluster)."""
        ...

    def map_blocks(
        self, fn: Callable[..., R], data: Any, blocks: Sequence[tuple[int, int]], *args: Any
    ) -> list[R]:
        """``[fn(data, start, stop, *args) for start, stop in blocks]``, in block order."""
        ...

    def close(self) -> None:
        """Release the engine's workers (a no-op for the local engine)."""
        ...


class LocalEngine:
    """The default: blocks run one after another in this process (NumPy already uses the cores per block)."""

    name = "local"

    def put(self, data: Any) -> Any:
        return data

    def map_blocks(
        self, fn: Callable[..., R], data: Any, blocks: Sequence[tuple[int, int]], *args: Any
    ) -> list[R]:
        return [fn(data, start, stop, *args) for start, stop in blocks]

    def close(self) -> None:
        return None


def reduce_in_order(parts: Sequence[Any]) -> Any:
    """Left-to-right sum of per-block partials (arrays or numbers): the same bytes for the same blocks."""
    if not parts:
        raise ValueError("nothing to reduce: no blocks")
    total = np.array(parts[0], copy=True) if isinstance(parts[0], np.ndarray) else parts[0]
    for part in parts[1:]:
        total = total + part
    return total


_LOCAL = LocalEngine()
_CURRENT: contextvars.ContextVar[Engine] = contextvars.ContextVar("sampan_compute_engine", default=_LOCAL)


def current_engine() -> Engine:
    """The engine this party's protocols use now (the local one unless `use_engine` set another)."""
    return _CURRENT.get()


@contextlib.contextmanager
def use_engine(engine: Engine) -> Iterator[Engine]:
    """Run the enclosed protocol steps on ``engine`` (the party process sets it from its ``[compute]`` table)."""
    token = _CURRENT.set(engine)
    try:
        yield engine
    finally:
        _CURRENT.reset(token)
