"""R15-REFIX-1 (fixed): a failure part-way through the in-place holdout reorder must not leave the agent's CACHED table
half-permuted. Fix: every n-sized allocation happens before the first row moves, and a failure while rows move
withdraws the table (`sampan.deploy.holdout.withdraw`), so the agent re-reads its file at the next job.

The original finding:

Attack / fault (R15-HLR-4's fix, `sampan.deploy.holdout.pinned_views`): the agent keeps one table per dataset and,
at the first horizontal/evaluation run, reorders it in place: the matrix rows are moved first (holdout copied out,
training rows compacted, holdout written back), and only afterwards are the ``order`` index, the ids and the labels
built (`np.concatenate`, ``table.ids[order]``, ``table.y[order]``: three fresh n-sized allocations, 80 MB each at
10M rows, at the moment the party is near its memory peak, with other runs' threads allocating beside it). A
MemoryError there (simulated here at ``np.concatenate``) propagates as the open_run's error reply, but nothing
restores the matrix or drops the cache.

Expected safe behaviour: a failed split leaves the cached table as it was (each X row still beside its own id and
label) or the agent no longer serves that object (re-read at the next job); nothing half-written.
What happens: ``agent.table()`` hands the same object to every later job (the file's stamp did not change) with
X permuted but ids/y in file order: every later run of EVERY workflow (vertical PSI aligns by ids, then reads X by
position; scoring; checks) computes on other customers' features, and the next horizontal split, which keys the
holdout on ids, moves the already-moved rows again, so holdout customers' feature rows land among the training
rows (labels of training customers paired with holdout customers' features).
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from sampan.deploy import holdout as holdout_mod
from sampan.deploy.config import load_party_config
from sampan.deploy.holdout import holdout_split
from sampan.deploy.party_agent import PartyAgent

D = 4
HEAD = ('[party]\nname = "bank_b"\ncoordinator = "127.0.0.1:7000"\nstate_dir = "{state}"\n'
        '[tls]\nca = "ca.pem"\ncert = "bank.pem"\nkey = "bank.key"\n')


def _agent(tmp_path: Path, n: int) -> tuple[PartyAgent, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    X = np.round(rng.normal(size=(n, D)), 4)
    y = (rng.random(n) < 0.3).astype(int)
    lines = ["id,default," + ",".join(f"f{j}" for j in range(D))]
    lines += [f"c{i},{y[i]}," + ",".join(f"{v:.4f}" for v in X[i]) for i in range(n)]
    (tmp_path / "bank.csv").write_text("\n".join(lines) + "\n")
    features = ", ".join(f'{{ name = "f{j}" }}' for j in range(D))
    toml = (HEAD.format(state=tmp_path / "state") + '[data.loans]\npath = "bank.csv"\n'
            f'[data.loans.schema]\nid = "id"\nlabel = "default"\nfeatures = [{features}]\n')
    (tmp_path / "party.toml").write_text(toml)
    truth = {f"c{i}": X[i] for i in range(n)}
    return PartyAgent(load_party_config(tmp_path / "party.toml")), truth


def _rows_match_ids(table: object, truth: dict[str, np.ndarray]) -> bool:
    return all(np.allclose(np.asarray(x, dtype=np.float64), truth[str(i)], atol=1e-4)
               for i, x in zip(table.ids, table.X, strict=True))  # type: ignore[attr-defined]


def test_failed_reorder_leaves_cached_table_consistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent, truth = _agent(tmp_path, 2000)
    _, table = agent.table("loans")
    assert _rows_match_ids(table, truth)  # precondition: the loaded table is right

    def oom(*args: object, **kwargs: object) -> np.ndarray:
        raise MemoryError("simulated: no room for the n-sized order index")

    fake_np = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    fake_np.concatenate = oom
    monkeypatch.setattr(holdout_mod, "np", fake_np)
    with pytest.raises(MemoryError):  # the open_run fails: the coordinator gets an error reply
        holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5)
    monkeypatch.undo()

    _, again = agent.table("loans")  # the next job, any workflow: what the agent serves now
    assert _rows_match_ids(again, truth), "the cached table's feature rows no longer sit beside their own ids"
    train, test = holdout_split("bank_b", tmp_path / "state", "loans", again, 0.2, 0.5)  # the next horizontal run
    assert _rows_match_ids(train, truth) and _rows_match_ids(test, truth)


def test_a_failure_while_rows_move_withdraws_the_cached_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once rows have started to move, the table cannot be trusted: the agent re-reads its file at the next job."""
    agent, truth = _agent(tmp_path, 2000)
    _, table = agent.table("loans")

    def half_move(X: np.ndarray, keep: np.ndarray) -> int:
        X[0] = X[-1]  # a row overwritten, then the move fails
        raise MemoryError("simulated: no room for a block of rows")

    monkeypatch.setattr(holdout_mod, "compact_rows", half_move)
    with pytest.raises(MemoryError):
        holdout_split("bank_b", tmp_path / "state", "loans", table, 0.2, 0.5)
    monkeypatch.undo()
    _, again = agent.table("loans")
    assert again is not table  # the withdrawn table is not served again
    assert _rows_match_ids(again, truth)
