"""Reproducible vertical runs: the held-out customers follow hash(seed, id), not positions in the fresh aligned order;
an explicit test file fixes them; the bank exports them as ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sampan.cli import app
from sampan.errors import DataError
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.vertical.job import VerticalJob, load_tables
from sampan.vertical.party_parts import read_test_ids
from sampan.vertical.rows import seeded_split
from sampan.vertical.training import VerticalLRConfig

N_SMES, DATA_SEED = 4000, 4


def _job(**kw: Any) -> VerticalJob:
    base: dict[str, Any] = dict(name="rep", label_holder="bank", partners=("payments", "delivery"), models=("lr",),
                                lr=VerticalLRConfig(epochs=1, batch_size=128), seed=11,  # several batches
                                source={"kind": "consortium", "n_smes": N_SMES, "seed": DATA_SEED})
    return VerticalJob(**{**base, **kw})


def _ids(split: dict[str, np.ndarray], ids: np.ndarray) -> dict[str, set[str]]:
    return {k: {str(i) for i in ids[v]} for k, v in split.items()}


def test_seeded_split_depends_on_the_ids_and_seed_only() -> None:
    ids = np.array([f"c{i}" for i in range(2000)])
    shuffled = ids[np.random.default_rng(0).permutation(len(ids))]
    a = _ids(seeded_split(ids, 5, test_fraction=0.2, val_fraction=0.15), ids)
    b = _ids(seeded_split(shuffled, 5, test_fraction=0.2, val_fraction=0.15), shuffled)
    assert a == b  # another aligned order, the same customers in each set
    assert a["test"].isdisjoint(a["val"]) and a["test"].isdisjoint(a["train"]) and a["val"].isdisjoint(a["train"])
    assert len(a["test"]) == 400 and len(a["val"]) == 300  # exact sizes, as before
    grown = np.append(ids, "newcomer")  # one more customer moves at most one other across each boundary
    c = _ids(seeded_split(grown, 5, test_fraction=0.2, val_fraction=0.15), grown)
    assert all(len(a[k] - c[k]) <= 2 for k in a)
    assert _ids(seeded_split(ids, 6, test_fraction=0.2, val_fraction=0.15), ids)["test"] != a["test"]


def test_explicit_test_ids_fix_the_test_set() -> None:
    ids = np.array([f"c{i}" for i in range(500)])
    chosen = {f"c{i}" for i in range(0, 500, 5)} | {"unknown-at-this-party"}
    got = _ids(seeded_split(ids, 1, test_fraction=0.2, val_fraction=0.15, test_ids=chosen), ids)
    assert got["test"] == chosen - {"unknown-at-this-party"}
    assert got["val"] and got["val"].isdisjoint(chosen) and got["train"].isdisjoint(chosen)


def test_same_files_and_seed_give_the_same_test_rows_and_auc() -> None:
    """No alignment monkeypatch: every run aligns in a fresh secret order, yet the held-out customers are the same."""
    first, second = (start_run(_job(), Store.open("sqlite://")) for _ in range(2))
    a, b = first.result.outcome, second.result.outcome
    assert a["bank_only"]["auc"] == pytest.approx(b["bank_only"]["auc"], abs=1e-12)  # plaintext at the bank
    # secure LR's fixed-point truncation draws fresh randomness (CSPRNG): equal up to its rounding
    assert a["joint"]["auc"] == pytest.approx(b["joint"]["auc"], abs=5e-3)
    assert a["joint"]["n"] == b["joint"]["n"]


def test_test_ids_file_and_holdout_export(tmp_path: Path) -> None:
    bank_ids = [str(i) for i in load_tables(_job())["bank"].ids]
    chosen = bank_ids[::4]
    path = tmp_path / "test_ids.csv"
    path.write_text("id\n" + "\n".join(chosen) + "\n")
    store_url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store.open(store_url)
    finished = start_run(_job(test_ids=str(path)), store)
    store.close()
    out = tmp_path / "holdout.csv"
    result = CliRunner().invoke(app, ["runs", "holdout", finished.run_id, "--out", str(out), "--store", store_url])
    assert result.exit_code == 0, result.output
    exported = out.read_text().split("\n")[1:-1]
    assert exported and set(exported) <= set(chosen)  # the chosen customers every partner also holds
    assert out.stat().st_mode & 0o777 == 0o600  # the bank's customer ids: its own user only
    folder = CliRunner().invoke(app, ["runs", "holdout", finished.run_id, "--out", str(tmp_path), "--store", store_url])
    assert folder.exit_code != 0 and str(tmp_path) in folder.output and ".tmp" not in folder.output
    missing = CliRunner().invoke(app, ["runs", "holdout", "no-such-run", "--out", str(out), "--store", store_url])
    assert missing.exit_code != 0 and "no-such-run" in missing.output


def test_an_unreadable_test_ids_file_names_the_party_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"party 'bank'.*nope\.csv.*test_ids"):
        read_test_ids("bank", tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("id\n")
    with pytest.raises(DataError, match="names no customer"):
        read_test_ids("bank", empty)
