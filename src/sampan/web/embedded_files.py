"""The folder `sampan console` works in: sample data, a local CA, certificates and configs, made once.

Why apart from the launcher: making the federation (data, keys, configs) happens once per folder and is
all file work; starting it (processes, ports, the HTTP server) happens at every start. A second start in
the same folder finds `console.json` and reuses everything, so runs, approvals, budgets and accounts
survive a restart. Nothing here copies real data: every party's table is generated locally from the
built-in SME consortium (`sampan.data.make_sme_consortium`, synthetic, with a known default model).

Every organisation gets its own folder with its own key, certificate and party.toml, exactly as it would
on its own machine (`sampan.deploy.local.write_federation`), plus what issue 14 adds at the party: a
lifetime privacy budget per dataset (`[data.<name>.budget]`) and `[consent]` with
`console_decisions = true`, so an operator's click in this console reaches the agent as a decision. The
agent is still the one that checks the budget, signs the approval and refuses anything it does not cover.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.config import ConfigError
from sampan.files import atomic_write_json, atomic_write_text, private_directory

__all__ = ["DATASET", "STATE_FILE", "ConsoleFolder", "make_console_folder", "open_console_folder", "set_grpc_port"]

STATE_FILE = "console.json"
DATASET = "loans"
NAMED_BANKS = ("bank_harbour", "bank_kowloon", "bank_lionrock")
MAX_PARTIES = 8
_VERSION = 1


@dataclass(frozen=True)
class ConsoleFolder:
    """What a console folder holds (paths are inside `root`)."""

    root: Path
    parties: tuple[str, ...]
    budget: dict[str, float]

    @property
    def coordinator_config(self) -> Path:
        return self.root / "coordinator" / "coordinator.toml"

    def party_config(self, party: str) -> Path:
        return self.root / party / "party.toml"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / 'coordinator' / 'state' / 'coordinator.db'}"

    @property
    def audit_key(self) -> Path:
        return self.root / "coordinator" / "state" / "audit-key.pem"

    @property
    def log(self) -> Path:
        return self.root / "coordinator" / "coordinator.log"


def _party_names(count: int) -> tuple[str, ...]:
    if not 1 <= count <= MAX_PARTIES:
        raise ConfigError(f"sampan console --parties: between 1 and {MAX_PARTIES}, got {count}")
    if count == len(NAMED_BANKS):
        return NAMED_BANKS
    return tuple(f"bank_{i:02d}" for i in range(1, count + 1))


def _write_tables(root: Path, parties: tuple[str, ...], n_smes: int, seed: int | None) -> dict[str, Path]:
    """Each party's CSV: the consortium's three banks, or its SMEs dealt round-robin to `parties` banks."""
    from sampan.data import PartyData, make_sme_consortium
    from sampan.data.consortium import BANK_SCHEMA

    consortium = make_sme_consortium(n_smes, seed=seed)
    if parties != NAMED_BANKS:
        import numpy as np

        pooled = list(consortium.horizontal.values())
        ids, X = np.concatenate([p.ids for p in pooled]), np.concatenate([p.X for p in pooled])
        y = np.concatenate([p.y for p in pooled if p.y is not None])
        n = len(parties)
        split = {name: PartyData(party=name, ids=ids[k::n], X=X[k::n], y=y[k::n], feature_names=pooled[0].feature_names)
                 for k, name in enumerate(parties)}
        consortium = dataclasses.replace(consortium, horizontal=split, schemas={n: BANK_SCHEMA for n in parties})
    return consortium.write_csv(root / "data", "horizontal")


def _schema() -> dict[str, Any]:
    from sampan.data.consortium import BANK_SCHEMA

    schema = BANK_SCHEMA
    return {"id": schema.id_column, "label": schema.label_column,
            "features": [{"name": f.name, "kind": f.kind, **({"categories": list(f.categories)} if f.categories
                                                              else {})} for f in schema.features]}


def _published_size(table: Path) -> int:
    """The size a demo bank declares in its catalogue: its table's row count rounded to hundreds, written once
    into party.toml (`public_rows`) by its operator, as a real bank would ("about 2 000 SMEs"); the agent
    never counts rows for the catalogue (R14-CONSENT-5)."""
    with table.open("rb") as f:
        rows = max(sum(1 for _ in f) - 1, 0)
    return int(round(rows, -2))


def _add_party_sections(path: Path, budget: Mapping[str, float], public_rows: int | None = None) -> None:
    """A console party: a lifetime budget on its dataset, its published size and console decisions accepted."""
    from sampan.deploy.local import toml_dumps

    data = tomllib.loads(path.read_text())
    data["data"][DATASET]["budget"] = dict(budget)
    if public_rows is not None:
        data["data"][DATASET]["public_rows"] = public_rows
    data["consent"] = {"mode": "explicit", "console_decisions": True}
    atomic_write_text(path, toml_dumps(data))


def set_grpc_port(folder: ConsoleFolder, port: int) -> None:
    """Point the coordinator's listener and every party's dial-out at `port` (picked free at each start)."""
    from sampan.deploy.local import toml_dumps

    coordinator = tomllib.loads(folder.coordinator_config.read_text())
    coordinator["coordinator"]["listen"] = f"127.0.0.1:{port}"
    atomic_write_text(folder.coordinator_config, toml_dumps(coordinator))
    for party in folder.parties:
        config = tomllib.loads(folder.party_config(party).read_text())
        config["party"]["coordinator"] = f"127.0.0.1:{port}"
        atomic_write_text(folder.party_config(party), toml_dumps(config))


def make_console_folder(root: str | Path, *, parties: int = 3, n_smes: int = 6000, seed: int | None = None,
                        budget_epsilon: float = 10.0, budget_delta: float = 1e-4) -> ConsoleFolder:
    """Data, CA, certificates and configs for a new console folder (the state file is written last: a folder
    interrupted half-way is made again from scratch at the next start, never half-used)."""
    from sampan.deploy.local import Binding, free_port, write_federation

    root = private_directory(Path(root).expanduser().resolve())
    names = _party_names(parties)
    if (root / STATE_FILE).exists():
        raise ConfigError(f"{root} already holds a console ({STATE_FILE}); start it, or choose an empty folder")
    tables = _write_tables(root, names, n_smes, seed)
    schema = _schema()
    write_federation(root, {n: {DATASET: Binding(str(tables[n]), schema)} for n in names}, port=free_port(),
                     operators=("ops",), coordinator={"audit_key": "state/audit-key.pem", "connect_timeout_s": 60,
                                                      "rejoin_timeout_s": 30})
    budget = {"epsilon": float(budget_epsilon), "delta": float(budget_delta)}
    for name in names:
        _add_party_sections(root / name / "party.toml", budget, _published_size(tables[name]))
    atomic_write_json(root / STATE_FILE, {"version": _VERSION, "parties": list(names), "dataset": DATASET,
                                          "budget": budget, "n_smes": n_smes}, indent=2)
    return ConsoleFolder(root, names, budget)


def open_console_folder(root: str | Path) -> ConsoleFolder | None:
    """The console folder at `root`, or None when it holds none yet."""
    root = Path(root).expanduser().resolve()
    state = root / STATE_FILE
    if not state.exists():
        return None
    try:
        data = json.loads(state.read_text())
        folder = ConsoleFolder(root, tuple(str(p) for p in data["parties"]), dict(data["budget"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{state}: not a console state file ({exc}); move the folder aside and start again") from None
    missing = [str(p) for p in (folder.coordinator_config, *map(folder.party_config, folder.parties)) if not p.exists()]
    if missing:
        raise ConfigError(f"{root}: console files missing: {', '.join(missing)}")
    return folder
