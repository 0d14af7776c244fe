"""Issue 15 item 2, horizontal LR: a party's memory grows by a few bytes per row, not by copies of its table.

Pinned here: the split without a second copy gives exactly `PartyData.train_test_split`'s rows; lazy rows
(`ScaledRows`) give the bytes of the whole-matrix fill and standardisation; training on them gives the bytes
of training on the matrix; block passes give the same bytes on any engine; and the tracemalloc peak of a
party's stats + fit + evaluate grows by under 16 bytes per row from 400k to 800k rows (it was ~70 at 4
features: filled/standardised float64 copies and a permuted copy per epoch).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from sampan.compute import use_engine
from sampan.data import PartyData
from sampan.data.missing import MissingColumn
from sampan.horizontal.party import HorizontalParty, standardize
from sampan.horizontal.party_rows import ScaledRows
from sampan.horizontal.row_split import split_mask, split_table
from sampan.horizontal.simulation import split_parties
from sampan.models import model_from_config
from sampan.models.local_training import TrainConfig, train
from sampan.wire import Message


def _table(n: int, d: int, seed: int = 0, labels: bool = True) -> PartyData:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8) if labels else None
    return PartyData("bank", np.array([f"c{i}" for i in range(n)], dtype=object), rng.normal(5.0, 2.0, (n, d)), y,
                     [f"x{j}" for j in range(d)])


def _same(a: PartyData, b: PartyData) -> None:
    assert list(a.ids) == list(b.ids)
    assert a.X.tobytes() == b.X.tobytes() and a.X.shape == b.X.shape
    assert (a.y is None and b.y is None) or (a.y is not None and b.y is not None and a.y.tobytes() == b.y.tobytes())


@pytest.mark.parametrize(("n", "labels", "consume"), [(1, True, False), (3, True, True), (2000, True, True),
                                                      (150_000, True, True), (500, False, True), (500, True, False)])
def test_split_gives_the_rows_of_train_test_split(n: int, labels: bool, consume: bool) -> None:
    table = _table(n, 3, labels=labels)
    if n < 2:
        with pytest.raises(ValueError, match="needs at least 2"):
            split_mask(table, 0.25, np.random.default_rng(4))
        return
    expected = table.train_test_split(0.25, np.random.default_rng(4))
    train, test = split_table(table, split_mask(table, 0.25, np.random.default_rng(4)), consume=consume)
    _same(train, expected[0])
    _same(test, expected[1])
    if consume:  # the table handed its matrix over: it is empty now and the training matrix owns its rows
        assert len(table) == 0 and train.X.flags.owndata


def test_split_copies_a_matrix_someone_else_holds() -> None:
    table = _table(1000, 3)
    before = table.X.copy()
    view = table.X[:10]  # another holder: compacting in place would change what it sees
    train, test = split_table(table, split_mask(table, 0.2, np.random.default_rng(1)), consume=True)
    assert table.X.tobytes() == before.tobytes() and len(table) == 1000
    assert view.tobytes() == before[:10].tobytes()
    assert len(train) + len(test) == 1000


def test_split_parties_consumes_only_when_asked() -> None:
    tables = {"a": _table(300, 2, 1), "b": _table(200, 2, 2)}
    plain = split_parties(tables, 0.3, 9)
    assert len(tables["a"]) == 300  # untouched without consume
    handed = split_parties({k: _table(len(v), 2, s) for (k, v), s in zip(tables.items(), (1, 2), strict=True)},
                           0.3, 9, consume=True)
    for name in tables:
        _same(plain[name].train, handed[name].train)
        _same(plain[name].test, handed[name].test)


def test_scaled_rows_give_the_bytes_of_the_whole_matrix() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(0.0, 3.0, (5000, 4))
    X[rng.random(X.shape) < 0.05] = np.nan
    columns = tuple(MissingColumn(index=j, name=f"x{j}", policy="mean") for j in range(4))
    arrays = {"impute": np.array([0.5, -1.0, 2.0, 0.0]), "mean": rng.normal(size=4), "scale": rng.random(4) + 0.5}
    rows = ScaledRows(X, arrays, columns)
    filled = np.where(np.isnan(X), arrays["impute"][None, :], X)
    whole = standardize(filled, arrays)
    assert rows[:].tobytes() == whole.tobytes()
    idx = rng.permutation(5000)[:777]
    assert rows[idx].tobytes() == whole[idx].tobytes()
    assert ScaledRows(X.astype(np.float32), arrays, columns)[idx].dtype == np.float64  # compact X, float64 rows


def test_scaled_rows_refuse_an_unfilled_column_by_name() -> None:
    X = np.ones((10, 2))
    X[3, 1] = np.nan
    columns = (MissingColumn(index=1, name="income", policy="mean"),)
    with pytest.raises(ValueError, match="income"):
        ScaledRows(X, {"impute": np.array([np.nan, np.nan])}, columns)
    native = (MissingColumn(index=1, name="income", policy="native"),)
    assert np.isnan(ScaledRows(X, {}, native)[3, 1])


@pytest.mark.parametrize("settings", [{"batch_size": 64, "epochs": 2}, {"batch_size": 1000, "max_steps": 150},
                                      {"batch_size": 70_000, "epochs": 1, "optimizer": "adam"}])
def test_training_on_lazy_rows_gives_the_matrix_bytes(settings: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(2.0, 1.5, (140_000, 3)) if settings["batch_size"] > 1000 else rng.normal(2.0, 1.5, (20_000, 3))
    y = (rng.random(len(X)) < 0.4).astype(np.int8)
    arrays = {"mean": np.full(3, 2.0), "scale": np.full(3, 1.5)}
    model = model_from_config({"kind": "logistic", "n_features": 3})
    config = TrainConfig(learning_rate=0.05, **settings)
    lazy = train(model, np.zeros(4), ScaledRows(X, arrays), y, config, np.random.default_rng(8))
    whole = train(model, np.zeros(4), standardize(X, arrays), y, config, np.random.default_rng(8))
    assert lazy.params.tobytes() == whole.params.tobytes() and lazy.mean_loss == whole.mean_loss


class _Backwards:
    """An engine that runs blocks last to first (as a cluster may finish them) and returns them in block order."""

    name = "backwards"

    def put(self, data: Any) -> Any:
        return data

    def map_blocks(self, fn: Callable[..., Any], data: Any, blocks: Sequence[tuple[int, int]], *args: Any) -> list[Any]:
        return [fn(data, a, b, *args) for a, b in reversed(blocks)][::-1]

    def close(self) -> None:
        return None


def _party(n: int, d: int) -> tuple[HorizontalParty, Callable[[str, dict[str, np.ndarray], dict[str, Any]], Message]]:
    cut = n * 4 // 5
    table = _table(n, d)
    party = HorizontalParty("bank", table.subset(np.arange(cut)), table.subset(np.arange(cut, n)))
    return party, lambda kind, arrays, meta: getattr(party, kind)(Message("r", 1, "c", "bank", kind, arrays, meta))


def _protocol(ask: Callable[[str, dict[str, np.ndarray], dict[str, Any]], Message], d: int) -> list[Message]:
    stats = ask("stats", {}, {})
    mean = stats.arrays["sum"] / stats.meta["n"]
    scaler = {"mean": mean, "scale": np.sqrt(stats.arrays["sum_sq"] / stats.meta["n"] - mean**2)}
    model = {"kind": "logistic", "n_features": d}
    fit = ask("fit", {"params": np.zeros(d + 1), **scaler}, {"model": model, "train": {"batch_size": 64}, "seed": 1})
    evaluation = ask("evaluate", {"params": fit.arrays["update"], **scaler}, {"model": model})
    clipped = ask("stats", {}, {"clip_bounds": [[0.0, 10.0]] * d})
    return [stats, fit, evaluation, clipped]


def test_block_passes_give_the_same_bytes_on_any_engine() -> None:
    _, ask = _party(200_000, 3)
    local = _protocol(ask, 3)
    with use_engine(_Backwards()):
        _, ask2 = _party(200_000, 3)
        other = _protocol(ask2, 3)
    for a, b in zip(local, other, strict=True):
        assert a.meta == b.meta
        assert sorted(a.arrays) == sorted(b.arrays)
        assert all(a.arrays[k].tobytes() == b.arrays[k].tobytes() for k in a.arrays)


def test_small_tables_keep_their_former_bytes() -> None:
    party, ask = _party(2000, 3)  # one block: the moments are the whole-matrix sums, as before issue 15
    stats = ask("stats", {}, {})
    X = party.train_data.X
    assert stats.arrays["sum"].tobytes() == X.sum(axis=0).tobytes()
    assert stats.arrays["sum_sq"].tobytes() == np.einsum("ij,ij->j", X, X).tobytes()
    assert stats.meta["n"] == len(X)


def _peak(n: int) -> int:
    """tracemalloc peak of one party's stats, one epoch of fit and one evaluation, above its loaded table."""
    _, ask = _party(n, 4)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _protocol(ask, 4)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_party_memory_grows_by_a_few_bytes_per_row() -> None:
    small, large = _peak(400_000), _peak(800_000)
    per_row = (large - small) / 400_000
    # a permutation of the training rows (8 bytes each) and the holdout's scores; a copy of the table would be 32+
    assert per_row < 16, f"peak grows by {per_row:.1f} bytes per row"
