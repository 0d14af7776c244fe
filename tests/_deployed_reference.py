"""In-process reference runs that split each party's rows exactly as its deployed agent does.

A deployed party draws its holdout itself (a keyed hash of each row id under a secret pinned in its
state dir, review R8-1), so a bit-identical in-process reference needs the same split: this replaces
the simulation's seeded split by each agent's pinned one while the reference runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import sampan.horizontal.simulation as federation
from sampan.deploy.config import load_party_config
from sampan.deploy.party_agent import pinned_split


@contextmanager
def agents_splits(party_configs: Mapping[str, str | Path], dataset: str) -> Iterator[None]:
    """While open, in-process runs split party `name` with the pin in its party.toml's state dir."""
    pins = {}
    for name, path in party_configs.items():
        state = Path(load_party_config(Path(path)).party.state_dir)
        pins[name] = json.loads((state / "split-seeds.json").read_text())[dataset]

    def split(tables, test_fraction, seed, **options):  # type: ignore[no-untyped-def]  # options: consume
        return {name: federation.PartySplit(*pinned_split(table, pins[name], dataset))
                for name, table in tables.items()}

    original = federation.split_parties
    federation.split_parties = split  # type: ignore[assignment]
    try:
        yield
    finally:
        federation.split_parties = original  # type: ignore[assignment]
