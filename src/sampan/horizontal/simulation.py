"""Simulation only: every horizontal party's table from a run config's data bindings, loaded at that party.

Each party's table is loaded and validated before any training starts, so bad data fails fast with an
error naming the party, file and column. Everything is derived from the run seed, so a resumed run
rebuilds the same partitions and splits. A deployed agent loads its own table and computes its own
holdout (`sampan.deploy.party_agent`); nothing here runs in a deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sampan.config import RunConfig, SchemaSection
from sampan.core.seeds import derive_rng, derive_seed
from sampan.data import (
    DataValidationError,
    PartyData,
    TableSchema,
    dirichlet_label_partition,
    iid_partition,
    load_german_credit,
    load_south_german_credit,
    load_table,
    load_taiwan_default,
    make_sme_consortium,
    quantity_skew_partition,
    shared_data_dir,
)
from sampan.horizontal.row_split import split_mask, split_table

__all__ = ["PartySplit", "load_party_tables", "load_splits", "pooled", "split_parties", "table_schema"]


@dataclass(frozen=True)
class PartySplit:
    train: PartyData
    test: PartyData


def table_schema(section: SchemaSection) -> TableSchema:
    """[schema] is the table schema itself (`SchemaSection is TableSchema`): bounds and missing-value policies
    included."""
    return section


def _public_dataset(kind: str, path: str | None) -> PartyData:
    loaders = {"taiwan": (load_taiwan_default, "taiwan_default"),
               "german": (load_german_credit, "german_credit"),
               "south_german": (load_south_german_credit, "south_german_credit")}
    loader, folder = loaders[kind]
    if path is None:
        root = shared_data_dir()
        if root is None:
            raise FileNotFoundError(
                f"dataset {kind!r}: no path given and no shared/data folder found; "
                "set source.path or SAMPAN_SHARED_DATA"
            )
        path = str(root / folder)
    return loader(path)


def _partition(config: RunConfig, data: PartyData, seed: int) -> dict[str, PartyData]:
    source = config.source
    assert source is not None
    rng = derive_rng(seed, "partition")
    n = len(data)
    if source.partition == "iid":
        parts = iid_partition(n, source.n_parties, rng)
    elif source.partition == "dirichlet":
        assert data.y is not None
        parts = dirichlet_label_partition(data.y, source.n_parties, source.alpha, rng)
    else:
        parts = quantity_skew_partition(n, source.n_parties, rng, alpha=source.alpha)
    width = len(str(source.n_parties))
    return {f"party_{i + 1:0{width}d}": data.subset(idx) for i, idx in enumerate(parts)}


def load_party_tables(config: RunConfig, seed: int) -> dict[str, PartyData]:
    """Each party's full table (in a deployment, each agent does this for itself alone)."""
    if config.source is None:
        assert config.schema_ is not None
        schema = table_schema(config.schema_)
        tables = {}
        for p in config.parties:
            assert p.path is not None, f"party {p.name!r}: a simulation run names each party's data path"
            tables[p.name] = load_table(p.path, schema, p.name, p.format)
        return tables
    if config.source.kind == "consortium":
        consortium = make_sme_consortium(n_smes=config.source.n_smes, seed=derive_seed(seed, "consortium"))
        return dict(consortium.horizontal)
    return _partition(config, _public_dataset(config.source.kind, config.source.path), seed)


def split_parties(tables: dict[str, PartyData], test_fraction: float, seed: int, *,
                  consume: bool = False) -> dict[str, PartySplit]:
    """Each party's stratified train/test split (the rows of `PartyData.train_test_split`). With ``consume`` the
    tables are handed over: a table's matrix becomes its training matrix (`split_table`), no second copy."""
    splits = {}
    for name, table in tables.items():
        if table.y is None:
            raise DataValidationError(
                f"party {name!r} has no label column; horizontal FL needs labels at every party", party=name
            )
        test = split_mask(table, test_fraction, derive_rng(seed, "split", name))
        splits[name] = PartySplit(*split_table(table, test, consume=consume))
    return splits


def load_splits(config: RunConfig, seed: int) -> dict[str, PartySplit]:
    """Every party's train/test split, exactly as the run's parties see them (simulation only)."""
    explicit = config.data.test_path or config.data.date_column or any(p.test_path for p in config.parties)
    if config.source is None and explicit:
        from sampan.horizontal.holdout_split import own_data_splits  # explicit test files, out-of-time holdouts
        return own_data_splits(config, seed)
    return split_parties(load_party_tables(config, seed), config.data.test_fraction, seed, consume=True)


def pooled(splits: dict[str, PartySplit], part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Concatenate every party's rows — only for simulation baselines, never in a deployment."""
    tables = [getattr(s, part) for s in splits.values()]
    return np.vstack([t.X for t in tables]), np.concatenate([t.y for t in tables])
