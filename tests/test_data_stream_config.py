"""A party's `[data.<name>]` binding to a SQL query (url or url_env), a folder of files, and float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_data_stream import SCHEMA, good, same, write
from test_data_stream_sql import fill

from sampan.config import ConfigError
from sampan.data import DataValidationError, load_table
from sampan.deploy.config import load_party_config
from sampan.deploy.party_agent import PartyAgent

HEAD = ('[party]\nname = "bank_b"\ncoordinator = "127.0.0.1:7000"\n'
        '[tls]\nca = "ca.pem"\ncert = "bank.pem"\nkey = "bank.key"\n')
SCHEMA_TOML = ('[data.loans.schema]\nid = "id"\nlabel = "default"\nfeatures = [{ name = "revenue" }, '
               '{ name = "employees", kind = "int" }, { name = "guaranteed", kind = "bool" }, '
               '{ name = "sector", kind = "category", categories = ["retail", "trading", "logistics"] }]\n')


def party_toml(tmp_path: Path, binding: str) -> Path:
    path = tmp_path / "party.toml"
    path.write_text(HEAD + "[data.loans]\n" + binding + SCHEMA_TOML)
    return path


def test_sql_binding_through_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    cols = good(25)
    fill(url, cols)
    config = load_party_config(party_toml(tmp_path, 'sql = "SELECT * FROM bank"\nurl_env = "BANK_DB_URL"\n'
                                                    'dtype = "float32"\n'))
    agent = PartyAgent(config)
    with pytest.raises(ConfigError, match="party 'bank_b', dataset 'loans': url_env 'BANK_DB_URL' is not set"):
        agent.table("loans")
    monkeypatch.setenv("BANK_DB_URL", url)
    name, data = agent.table("loans")
    want = load_table(write(tmp_path / "b.parquet", cols), SCHEMA, "bank_b", dtype=np.float32)
    assert name == "loans"
    same(data, want)


def test_sql_errors_name_party_and_dataset(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    config = load_party_config(party_toml(tmp_path, f'sql = "SELECT * FROM no_such_table"\nurl = "{url}"\n'))
    with pytest.raises(DataValidationError) as info:
        PartyAgent(config).table("loans")
    assert str(info.value).startswith("party 'bank_b', file '[data.loans] sql': cannot run the SQL query")


@pytest.mark.parametrize("binding, fragment", [
    ('sql = "SELECT 1"\n', "sql needs exactly one of url and url_env"),
    ('sql = "SELECT 1"\nurl = "sqlite://"\nurl_env = "X"\n', "sql needs exactly one of url and url_env"),
    ('path = "b.csv"\nsql = "SELECT 1"\nurl = "sqlite://"\n', "exactly one of path"),
    ('format = "csv"\n', "exactly one of path"),
    ('sql = "SELECT 1"\nurl = "sqlite://"\nformat = "csv"\n', "format is for path"),
    ('path = "b.csv"\nurl_env = "X"\n', "url and url_env go with sql"),
    ('path = "b.csv"\ndtype = "int8"\n', "dtype"),
])
def test_bad_bindings_name_the_dataset_and_field(tmp_path: Path, binding: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_party_config(party_toml(tmp_path, binding))
    assert fragment in str(info.value) and "data.loans" in str(info.value)


def test_folder_binding(tmp_path: Path) -> None:
    cols = good(30)
    (tmp_path / "loans").mkdir()
    write(tmp_path / "loans" / "part-0.parquet", {c: v[:12] for c, v in cols.items()})
    write(tmp_path / "loans" / "part-1.parquet", {c: v[12:] for c, v in cols.items()})
    config = load_party_config(party_toml(tmp_path, 'path = "loans"\n'))
    _, data = PartyAgent(config).table("loans")
    same(data, load_table(write(tmp_path / "b.csv", cols), SCHEMA, "bank_b"))
