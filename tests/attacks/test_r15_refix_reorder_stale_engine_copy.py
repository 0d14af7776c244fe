"""R15-REFIX-3 (fixed): the in-place holdout reorder must not leave a cluster engine's cached copy of the table stale.
Fix: after the reorder the table's matrices are new array objects (views of the same memory), so nothing an engine
cached by the old arrays' identity is found again.

The original finding:

Validation (R15-HLR-4's fix beside R15-GBDT-4's): `sampan.models.gbdt_hist._handle` puts a loaded table on the party's
engine once per array and caches the handle by the array's identity, on the stated ground that a loaded table is
read-only. R15-HLR-4 made the agent's cached table NOT read-only: the first horizontal/evaluation run after a load
moves its rows in place (`sampan.deploy.holdout.pinned_views`), the same array object, so the cache still matches.
On a cluster engine (Ray: ``put`` stores a copy in the object store; modelled here by an engine whose ``put``
copies), a vertical WOE/GBDT run that binned the table (`bin_matrix(table.X, edges, rows=aligned rows)`, more than
one block of rows) before a horizontal run, and one after it, read the OLD row order in the second: the bins of
aligned row i are those of whichever customer sat at that position before the reorder, a holdout customer included.

Expected safe behaviour: `bin_matrix` on the cached table bins the table's current rows on any engine (the same
bins as the local engine), before and after a horizontal run of the same dataset.
What happens: after the reorder the cluster-engine bins differ from the rows' own bins (other customers' values);
no error is raised, the vertical model silently trains on mixed rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sampan.compute import BLOCK_ROWS, use_engine
from sampan.deploy.config import load_party_config
from sampan.deploy.holdout import holdout_split
from sampan.deploy.party_agent import PartyAgent
from sampan.models.gbdt_hist import bin_matrix
from sampan.models.gbdt_tree import apply_bins, quantile_bin_edges

HEAD = ('[party]\nname = "bank_b"\ncoordinator = "127.0.0.1:7000"\nstate_dir = "{state}"\n'
        '[tls]\nca = "ca.pem"\ncert = "bank.pem"\nkey = "bank.key"\n')


class CopyingEngine:
    """A cluster engine as the party sees it: ``put`` keeps an immutable copy (Ray's object store), tasks read it."""

    name = "copying"

    def put(self, data: Any) -> Any:
        stored = np.array(data, copy=True)
        stored.flags.writeable = False
        return ("ref", stored)

    def map_blocks(self, fn: Callable[..., Any], data: Any, blocks: Sequence[tuple[int, int]], *args: Any) -> list[Any]:
        def resolve(a: Any) -> Any:
            return a[1] if isinstance(a, tuple) and len(a) == 2 and a[0] == "ref" else a

        return [fn(resolve(data), start, stop, *[resolve(a) for a in args]) for start, stop in blocks]

    def close(self) -> None:
        return None


def _agent(tmp_path: Path, n: int) -> PartyAgent:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 1000, size=(n, 2))
    y = (rng.random(n) < 0.3).astype(int)
    lines = ["id,default,f0,f1"] + [f"c{i},{y[i]},{x[i, 0]},{x[i, 1]}" for i in range(n)]
    (tmp_path / "bank.csv").write_text("\n".join(lines) + "\n")
    toml = (HEAD.format(state=tmp_path / "state") + '[data.loans]\npath = "bank.csv"\n'
            '[data.loans.schema]\nid = "id"\nlabel = "default"\nfeatures = [{ name = "f0" }, { name = "f1" }]\n')
    (tmp_path / "party.toml").write_text(toml)
    return PartyAgent(load_party_config(tmp_path / "party.toml"))


def test_bins_follow_the_table_after_a_horizontal_run(tmp_path: Path) -> None:
    n = BLOCK_ROWS + 4000
    agent = _agent(tmp_path, n)
    _, table = agent.table("loans")
    engine = CopyingEngine()
    rows = np.arange(n - 1, -1, -1)  # a vertical run's aligned rows: more than one block, so the engine bins them
    edges = [quantile_bin_edges(table.X[:, j], 16) for j in range(2)]
    with use_engine(engine):  # vertical run 1 (WOE setup / GBDT on the cached table)
        first = bin_matrix(table.X, edges, rows=rows)
    assert np.array_equal(first, apply_bins(table.X[rows], edges))  # precondition: right before any reorder
    holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5)  # a horizontal run opens in between
    _, again = agent.table("loans")
    assert again is table  # the same cached object (its file did not change)
    with use_engine(engine):  # vertical run 2, same rows of the (now reordered) table
        second = bin_matrix(again.X, edges, rows=rows)
    wrong = int(np.count_nonzero((second != apply_bins(again.X[rows], edges)).any(axis=1)))
    assert wrong == 0, f"{wrong} of {n} aligned rows binned from another customer's values (stale engine copy)"
