"""`sampan.runtime.array_runs`: the per-party-arrays plumbing shared by fraud and qr federated training."""

from __future__ import annotations

import csv
import hashlib
import io
import stat
from pathlib import Path

import numpy as np
import pytest

from sampan.errors import DataError
from sampan.files import private_directory
from sampan.runtime.array_runs import (
    PartyFiles,
    TableSchema,
    fit_pooled,
    horizontal_config,
    party_rng,
    run_horizontal,
    table_csv,
    write_private_table,
)
from sampan.runtime.store import Store

SCHEMA = TableSchema("row_id", ("a", "b"), "label")


class Knobs:
    rounds = 2
    local_epochs = 1
    batch_size = 8
    learning_rate = 0.2

    @property
    def epochs(self) -> int:
        return self.rounds * self.local_epochs


def _party(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, 2)) + shift
    y = (X[:, 0] + 0.5 * X[:, 1] > shift * 1.5).astype(int)
    return X, y


def test_party_rng_is_seeded_per_party_and_fresh_without_seed() -> None:
    a1, a2, b = party_rng(7, "alpha"), party_rng(7, "alpha"), party_rng(7, "beta")
    draws = [g.integers(0, 2**62, size=4).tolist() for g in (a1, a2, b)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    digest = hashlib.sha256(b"alpha").digest()  # the derivation fraud's bank_rng and qr's split always used
    assert np.random.default_rng([7, int.from_bytes(digest[:8], "big")]).integers(0, 2**62, size=4).tolist() == draws[0]
    assert party_rng(None, "alpha").integers(0, 2**62) != party_rng(None, "alpha").integers(0, 2**62)


def test_table_csv_keeps_full_precision_and_checks_shapes() -> None:
    X = np.array([[0.1, 1 / 3], [-2.0, 1e-300]])
    data = table_csv(SCHEMA, ["r0", "r1"], X, np.array([0, 1]))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows[0] == ["row_id", "a", "b", "label"]
    assert rows[1][0] == "r0" and rows[2][-1] == "1"
    assert np.array_equal(np.array([[float(v) for v in r[1:3]] for r in rows[1:]]), X)
    with pytest.raises(DataError, match="2 columns"):
        table_csv(SCHEMA, ["r0"], X, np.array([0, 1]))


def test_private_table_is_0600_named_by_content_and_never_rewritten(tmp_path: Path) -> None:
    folder = private_directory(tmp_path / "party")
    data = table_csv(SCHEMA, ["r0"], np.array([[1.0, 2.0]]), np.array([1]))
    path = write_private_table(folder, "rows-train", data)
    assert path.name == f"rows-train-{hashlib.sha256(data).hexdigest()[:16]}.csv"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    mtime = path.stat().st_mtime_ns
    assert write_private_table(folder, "rows-train", data) == path and path.stat().st_mtime_ns == mtime
    other = write_private_table(folder, "rows-train", data + b"r1,3.0,4.0,0\n")
    assert other != path and path.read_bytes() == data  # a resumed run's file is left as it was


def test_horizontal_config_lists_each_party_and_omits_an_absent_seed(tmp_path: Path) -> None:
    parties = [PartyFiles("p1", tmp_path / "p1" / "t.csv", tmp_path / "p1" / "h.csv")]
    raw = horizontal_config(name="x", parties=parties, schema=SCHEMA, model={"kind": "logistic"}, knobs=Knobs(),
                            work_dir=tmp_path, seed=None)
    assert "seed" not in raw["run"] and "privacy" not in raw
    assert raw["parties"] == [{"name": "p1", "path": str(parties[0].train_path),
                               "test_path": str(parties[0].holdout_path)}]
    assert raw["schema"] == {"id": "row_id", "label": "label", "features": ["a", "b"]}
    with_dp = horizontal_config(name="x", parties=parties, schema=SCHEMA, model={"kind": "logistic"},
                                knobs=Knobs(), work_dir=tmp_path, seed=3, privacy={"epsilon": 1.0})
    assert with_dp["run"]["seed"] == 3 and with_dp["privacy"] == {"epsilon": 1.0}


def test_fit_pooled_is_reproducible_with_a_seed() -> None:
    X, y = _party(np.random.default_rng(0), 60, 0.0)
    arrays, config = fit_pooled(X, y, {"kind": "logistic"}, Knobs(), seed=5)
    again, _ = fit_pooled(X, y, {"kind": "logistic"}, Knobs(), seed=5)
    assert config["kind"] == "logistic" and int(config["n_features"]) == 2
    assert arrays["params"].shape == (3,) and np.array_equal(arrays["params"], again["params"])
    assert np.allclose(arrays["scaler.mean"], X.mean(axis=0))


def test_run_horizontal_trains_from_private_party_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    parties = []
    for name, shift in (("north", 0.0), ("south", 0.5)):
        folder = private_directory(tmp_path / name)
        paths = []
        for stem, n in (("rows-train", 60), ("rows-holdout", 20)):
            X, y = _party(rng, n, shift)
            ids = [f"{name}-{stem}-{i}" for i in range(n)]
            paths.append(write_private_table(folder, stem, table_csv(SCHEMA, ids, X, y)))
        parties.append(PartyFiles(name, paths[0], paths[1]))
    raw = horizontal_config(name="array-run-test", parties=parties, schema=SCHEMA, model={"kind": "logistic"},
                            knobs=Knobs(), work_dir=tmp_path, seed=11)
    stages: list[str] = []
    run = run_horizontal(raw, store_path=tmp_path / "store.db", source="test", progress=lambda s, _: stages.append(s),
                         receipt_extra={"unit_of_privacy": "one test row"})
    assert [r["round"] for r in run.rounds] == [1, 2] and "round" in stages
    assert run.arrays["params"].shape == (3,) and run.meta["model"]["kind"] == "logistic"
    assert stat.S_IMODE((tmp_path / "store.db").stat().st_mode) == 0o600
    registered = Store.open(f"sqlite:///{tmp_path / 'store.db'}").get_model(run.model_name, run.model_version)
    assert np.array_equal(registered.arrays["params"], run.arrays["params"])
    assert registered.receipt is not None and registered.receipt["unit_of_privacy"] == "one test row"
