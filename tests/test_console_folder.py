"""The folder `sampan console` makes once and reuses: generated tables, certificates and configs the agents accept.

Every party.toml must load as a real agent would load it (issue 14's `[consent]` and the dataset's lifetime
budget included); the tables are generated, never copied; a folder is made once and then only reopened.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sampan.config import ConfigError
from sampan.deploy.config import load_coordinator_config, load_party_config
from sampan.web.embedded_files import STATE_FILE, make_console_folder, open_console_folder, set_grpc_port


def test_a_new_folder_holds_a_federation_the_agents_accept(tmp_path: Path) -> None:
    folder = make_console_folder(tmp_path / "c", parties=4, n_smes=1200, seed=3, budget_epsilon=7.5)
    assert folder.parties == ("bank_01", "bank_02", "bank_03", "bank_04")
    coordinator = load_coordinator_config(folder.coordinator_config)
    assert [m.name for m in coordinator.members if m.role == "party"] == list(folder.parties)
    rows = 0
    for party in folder.parties:
        config = load_party_config(folder.party_config(party))
        assert config.consent.console_decisions and config.consent.mode == "explicit"
        loans = config.data["loans"]
        assert loans.budget is not None and (loans.budget.epsilon, loans.budget.delta) == (7.5, 1e-4)
        table = Path(loans.path)
        assert table.parent == folder.root / "data" and table.stem == party
        rows += len(table.read_text().splitlines()) - 1
        assert (folder.root / party / f"{party}.key").stat().st_mode & 0o077 == 0  # each key private to its folder
    assert rows == 1200  # every generated SME at exactly one bank


def test_three_parties_are_the_consortium_banks_and_a_folder_is_made_once(tmp_path: Path) -> None:
    folder = make_console_folder(tmp_path / "c", n_smes=600, seed=1)
    assert folder.parties == ("bank_harbour", "bank_kowloon", "bank_lionrock")
    with pytest.raises(ConfigError, match="already holds a console"):
        make_console_folder(tmp_path / "c")
    assert open_console_folder(tmp_path / "c") == folder
    assert open_console_folder(tmp_path / "elsewhere") is None


def test_each_start_points_coordinator_and_agents_at_one_port(tmp_path: Path) -> None:
    folder = make_console_folder(tmp_path / "c", n_smes=600, seed=1)
    set_grpc_port(folder, 45678)
    assert load_coordinator_config(folder.coordinator_config).coordinator.listen == "127.0.0.1:45678"
    for party in folder.parties:
        assert load_party_config(folder.party_config(party)).party.coordinator == "127.0.0.1:45678"


@pytest.mark.parametrize("parties", [0, 9])
def test_party_count_is_bounded(tmp_path: Path, parties: int) -> None:
    with pytest.raises(ConfigError, match="--parties"):
        make_console_folder(tmp_path / "c", parties=parties)


def test_a_damaged_state_file_is_named(tmp_path: Path) -> None:
    folder = make_console_folder(tmp_path / "c", n_smes=600, seed=1)
    (folder.root / STATE_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match=STATE_FILE):
        open_console_folder(folder.root)
    (folder.root / STATE_FILE).write_text('{"version": 1, "parties": ["bank_harbour"], "budget": {}}')
    folder.party_config("bank_harbour").unlink()
    with pytest.raises(ConfigError, match="console files missing"):
        open_console_folder(folder.root)
    assert "consent" not in tomllib.loads(folder.coordinator_config.read_text())
