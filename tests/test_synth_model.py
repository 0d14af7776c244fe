"""The fitted model holds no records, round-trips through JSON + npz, and the sampler needs no data."""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

from sampan.privacy.randomness import seeded_generator
from sampan.synth import ModelError, SynthColumn, SynthConfig, SynthModel, SynthSchema, fit_synthesizer, generate
from sampan.synth.discretize import FineGrid, build_bins, fine_grid
from sampan.synth.schema import SchemaError, load_schema

SCHEMA = SynthSchema(
    columns=(
        SynthColumn("default", "categorical", ("0", "1")),
        SynthColumn("sector", "categorical", ("retail", "food", "trading", "logistics", "rare1", "rare2")),
        SynthColumn("revenue", "numeric", bounds=(0.0, 1e7)),
        SynthColumn("balance", "numeric", bounds=(-5e4, 5e5)),
        SynthColumn("late", "numeric", bounds=(0, 12), integer=True),
    ),
    label="default",
)


def _table(n: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sector = rng.choice(np.array(["retail", "food", "trading", "logistics"], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    revenue = rng.lognormal(13, 1.0, n) + rng.random(n)  # unique, irrational-looking floats
    balance = np.where(rng.random(n) < 0.3, 0.0, rng.normal(2e4, 3e4, n) + rng.random(n))
    late = rng.poisson(0.4, n).astype(float)
    p = 1 / (1 + np.exp(-(-2.5 + 0.8 * late - 0.3 * (np.log(revenue) - 13))))
    return {"default": np.where(rng.random(n) < p, "1", "0").astype(object), "sector": sector,
            "revenue": revenue, "balance": balance, "late": late}


def _walk_arrays(obj: object, seen: set[int] | None = None) -> list[np.ndarray]:
    """Every NumPy array reachable from ``obj`` through attributes, dicts, lists and tuples."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [a for v in obj.values() for a in _walk_arrays(v, seen)]
    if isinstance(obj, (list, tuple)):
        return [a for v in obj for a in _walk_arrays(v, seen)]
    if hasattr(obj, "__dict__"):
        return [a for v in vars(obj).values() for a in _walk_arrays(v, seen)]
    if hasattr(obj, "__dataclass_fields__"):
        return [a for f in obj.__dataclass_fields__ for a in _walk_arrays(getattr(obj, f), seen)]
    return []


def test_fitted_model_holds_no_records_and_samples_without_them(tmp_path) -> None:
    table = _table()
    revenue = table["revenue"].copy()
    refs = [weakref.ref(v) for v in table.values()]
    model = fit_synthesizer(table, SCHEMA, SynthConfig(epsilon=2.0), rng=seeded_generator(1))
    del table
    gc.collect()
    assert all(r() is None for r in refs), "the model (or something it holds) keeps a reference to the records"

    arrays = _walk_arrays(model)
    assert arrays, "walker found nothing: the test would be vacuous"
    biggest = max(a.size for a in arrays)
    assert biggest < 4000 / 2, "an array as large as the table suggests row-level content"
    for a in arrays:  # no real value survives in any array (they are unique random floats)
        if a.dtype.kind == "f":
            assert not np.isin(a, revenue).any()
    # the saved model is exactly the documented parts: JSON metadata + numeric arrays, nothing else
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "tables.npz"]
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert set(meta) == {"format", "version", "schema", "order", "parents", "encoders", "n_hat", "info", "receipt"}
    with np.load(tmp_path / "m" / "tables.npz", allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype.kind in "fiu", key
            assert key.split("/")[0] in {"p_label", "enc", "label", "cond", "coarsen"}

    rows, _ = generate(model, 500, rng=seeded_generator(2))
    assert set(rows) == set(SCHEMA.names) and len(rows["sector"]) == 500
    assert not np.isin(rows["revenue"], revenue).any()


def test_save_load_round_trip_gives_identical_samples(tmp_path) -> None:
    model = fit_synthesizer(_table(), SCHEMA, SynthConfig(epsilon=1.0), rng=seeded_generator(3))
    model.save(tmp_path / "m")
    model.save(tmp_path / "m")  # replacing an existing model folder works and leaves no debris
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    loaded = SynthModel.load(tmp_path / "m")
    a, _ = generate(model, 300, rng=seeded_generator(9))
    b, _ = generate(loaded, 300, rng=seeded_generator(9))
    for name in SCHEMA.names:
        assert np.array_equal(a[name], b[name]), name
    assert loaded.receipt == json.loads(json.dumps(model.receipt))


def test_load_errors_name_the_folder(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a synthesiser model folder"):
        SynthModel.load(tmp_path)
    (tmp_path / "model.json").write_text('{"format": "other"}')
    with pytest.raises(ModelError, match="model.json"):
        SynthModel.load(tmp_path)


def test_sampled_values_respect_domain_and_zero_inflation() -> None:
    table = _table(6000, 5)
    model = fit_synthesizer(table, SCHEMA, SynthConfig(epsilon=4.0), rng=seeded_generator(4))
    rows, _ = generate(model, 6000, rng=seeded_generator(5))
    assert rows["revenue"].min() >= 0 and rows["revenue"].max() <= 1e7
    assert rows["balance"].min() >= -5e4 and rows["balance"].max() <= 5e5
    assert np.array_equal(rows["late"], np.round(rows["late"])) and rows["late"].min() >= 0
    assert abs((rows["balance"] == 0).mean() - (table["balance"] == 0).mean()) < 0.05  # exact zeros survive
    assert abs(rows["late"].mean() - table["late"].mean()) < 0.1
    real_rate = (table["default"] == "1").mean()
    assert abs((rows["default"] == "1").mean() - real_rate) < 0.03
    assert set(rows["sector"]) <= set(SCHEMA.column("sector").categories)


def test_fine_grid_encodes_and_draws_inside_cells() -> None:
    spec = SynthColumn("x", "numeric", bounds=(-1000.0, 1e6))
    grid = fine_grid(spec, 64)
    assert grid.n_cells == 64 and grid.zero_index >= 0
    x = np.array([-1000.0, -1.0, 0.0, 1.0, 5e5, 1e6])
    cells = grid.encode(x)
    assert cells[2] == grid.zero_index and np.all(np.diff(cells) >= 0)
    drawn = grid.draw(cells, seeded_generator(0))
    assert drawn[2] == 0.0
    for c, v in zip(cells, drawn, strict=False):
        lo, hi = grid.cell_range(int(c))
        assert lo <= v <= hi
    small = fine_grid(SynthColumn("k", "numeric", bounds=(0, 9), integer=True), 64)
    assert small.values_mode and small.n_cells == 10
    bins = build_bins(small, np.array([500, 300, 100, 50, 20, 10, 5, 0, 0, 0.0]), sigma=1.0, k=4)
    assert bins.n_bins <= 4 and bins.starts[0] == 0 and bins.starts[-1] == 10
    assert isinstance(small, FineGrid)


def test_schema_files_and_errors(tmp_path) -> None:
    path = tmp_path / "schema.toml"
    path.write_text('label = "y"\n[[columns]]\nname = "y"\nkind = "categorical"\ncategories = ["0", "1"]\n'
                    '[[columns]]\nname = "amt"\nkind = "numeric"\nbounds = [0, 10]\ninteger = true\n')
    schema = load_schema(path)
    assert schema.label == "y" and schema.positive == "1" and schema.column("amt").integer
    path.write_text('[[columns]]\nname = "amt"\nkind = "numeric"\n')
    with pytest.raises(SchemaError, match=r"schema.toml.*'amt'.*bounds"):
        load_schema(path)
    path.write_text('[[columns]]\nname = "amt"\nkind = "numeric"\nbounds = [0, 1]\ncolour = "red"\n')
    with pytest.raises(SchemaError, match="colour"):
        load_schema(path)
