"""R15-HLR-4 (fixed): a deployed horizontal party holds its table once, not its cached table and its split's copies.

Validation (issue 15 goal "10M-row horizontal party <= 4 GB peak"; T6 "split without a second copy"): the
benchmark (bench/horizontal_scale_bench.py, docs/benchmarks.md "Horizontal LR (T6)") measures the SIMULATION
split (`split_parties(consume=True)`: the table's matrix becomes the training matrix). A real bank runs the party
agent: `PartyAgent.table` loads its dataset once and keeps it cached for later runs (party_agent.py:126-136), and
each horizontal run's data preparation is `holdout_split` -> `pinned_split` (deploy/holdout.py:58), which calls
``table.subset`` twice: a full copy of the matrix (training rows + holdout) beside the cached table, for every
open run (up to MAX_OPEN_RUNS = 8). Expected: the deployed split costs about its holdout (the training rows read
from the cached table, e.g. `ScaledRows(index=...)`, which exists and is unused), so the measured figure holds
for a deployed bank. What happens: the split allocates more than the table's whole matrix again, so a deployed
10M-row, 30-feature party holds its matrix twice beside its ids (the benchmark's own sizes: X 1.14 GB float32,
ids 0.65 GB): ~3.1 GB in float32 rather than the 2.31 GB reported, ~5.2 GB with the default float64 dtype (past the
4 GB goal), and one more matrix copy per concurrently open run (two open float32 runs: ~4.3 GB). Fixed:
`holdout_split` reorders the cached table in place once (training rows first, each part in its original order) and
hands out read-only row-range views; a later run finds it in that order and copies nothing; while another open run
reads the table (``shared``), the split copies as before. The rows are those of `pinned_split`.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from sampan.deploy.config import load_party_config
from sampan.deploy.holdout import holdout_split, pinned_split
from sampan.deploy.party_agent import PartyAgent

D = 20
HEAD = ('[party]\nname = "bank_b"\ncoordinator = "127.0.0.1:7000"\nstate_dir = "{state}"\n'
        '[tls]\nca = "ca.pem"\ncert = "bank.pem"\nkey = "bank.key"\n')


def _agent(tmp_path: Path, n: int) -> PartyAgent:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, D))
    y = (rng.random(n) < 0.3).astype(int)
    lines = ["id,default," + ",".join(f"f{j}" for j in range(D))]
    lines += [f"c{i},{y[i]}," + ",".join(f"{v:.6f}" for v in X[i]) for i in range(n)]
    (tmp_path / "bank.csv").write_text("\n".join(lines) + "\n")
    features = ", ".join(f'{{ name = "f{j}" }}' for j in range(D))
    toml = (HEAD.format(state=tmp_path / "state") + '[data.loans]\npath = "bank.csv"\n'
            f'[data.loans.schema]\nid = "id"\nlabel = "default"\nfeatures = [{features}]\n')
    (tmp_path / "party.toml").write_text(toml)
    return PartyAgent(load_party_config(tmp_path / "party.toml"))


def test_deployed_split_is_not_a_second_copy_of_the_cached_table(tmp_path: Path) -> None:
    agent = _agent(tmp_path, 20_000)
    _, table = agent.table("loans")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        train, test = holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert agent.table("loans")[1] is table  # the agent keeps its table for the next run
    assert len(train) + len(test) == len(table)
    matrix = int(table.X.nbytes)
    assert held < matrix / 2, f"the split holds {held / matrix:.2f}x the cached table's matrix on top of it"
    assert np.shares_memory(train.X, table.X) and np.shares_memory(test.X, table.X)
    with pytest.raises(ValueError):  # a run cannot write into the cached table
        train.X[0, 0] = 1.0


def _parts(table: object) -> tuple[bytes, ...]:
    return tuple(np.asarray(a).tobytes() if a.dtype != object else "\0".join(a).encode()  # type: ignore[union-attr]
                 for a in (table.ids, table.X, table.y))  # type: ignore[attr-defined]


def test_views_hold_the_rows_of_the_copying_split_run_after_run(tmp_path: Path) -> None:
    agent = _agent(tmp_path, 3000)
    _, table = agent.table("loans")
    original = type(table)(table.party, table.ids.copy(), table.X.copy(), table.y.copy(),  # type: ignore[union-attr]
                           list(table.feature_names), table.missing_columns)
    train, test = holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5)
    pins = json.loads((tmp_path / "state" / "split-seeds.json").read_text())
    want_train, want_test = pinned_split(original, pins["loans"], "loans")
    assert _parts(train) == _parts(want_train) and _parts(test) == _parts(want_test)
    ids = table.ids
    again, again_test = holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5)  # the next run
    assert table.ids is ids  # already in the pinned order: nothing moved
    assert _parts(again) == _parts(want_train) and _parts(again_test) == _parts(want_test)
    copied, copied_test = holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5, shared=True)
    assert not np.shares_memory(copied.X, table.X)
    assert _parts(copied) == _parts(want_train) and _parts(copied_test) == _parts(want_test)


def test_a_read_only_matrix_is_split_by_copying(tmp_path: Path) -> None:
    agent = _agent(tmp_path, 500)
    _, table = agent.table("loans")
    table.X.flags.writeable = False
    before = table.X.tobytes()
    train, test = holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5)
    assert table.X.tobytes() == before and len(train) + len(test) == len(table)
    assert not np.shares_memory(train.X, table.X)
