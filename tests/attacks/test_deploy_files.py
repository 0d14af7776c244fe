"""Finding 19: file hygiene of a deployment.

On commit 1064fb2 stores, pin files and logs were written 0644, a 0644 private key was accepted when
loaded, and keys were unencrypted at rest. Now state folders are 0700 and stores, pins and logs 0600 from
their creation; a key that other local users can read is refused with the chmod that fixes it; keys can
be encrypted with a passphrase (`--encrypt`, read from $SAMPAN_KEY_PASSPHRASE or a prompt).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from _deploy_federation import ThreadFederation
from typer.testing import CliRunner

from sampan.cli.deploy import certs_app
from sampan.config import ConfigError
from sampan.deploy.certs import create_request, sign_request
from sampan.deploy.config import load_coordinator_config, load_party_config
from sampan.deploy.coordinator import Coordinator
from sampan.deploy.local import Agent, wait_for_log, write_federation
from sampan.deploy.party_agent import PartyAgent

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_stores_pins_and_logs_are_private_from_their_creation(tmp_path: Path) -> None:
    files = write_federation(tmp_path / "fed", {"bank_a": {}})
    previous = os.umask(0o022)  # the usual umask: what the old code's files got
    agent = Agent("coordinator", files.coordinator_config)
    os.umask(previous)
    try:
        log = files.root / "coordinator" / "coordinator.log"
        assert wait_for_log(log, "listening on port", 60), (files.root / "coordinator" / "coordinator.out").read_text()
        state = files.root / "coordinator" / "state"
        assert _mode(state) == 0o700
        assert _mode(log) == 0o600
        for db in state.glob("coordinator.db*"):
            assert _mode(db) == 0o600, db
    finally:
        agent.stop()
    result = runner.invoke(certs_app, ["repin", "bank_a", "--cert", str(files.root / "bank_a" / "bank_a.crt"),
                                       "--config", str(files.coordinator_config)])
    assert result.exit_code == 0, result.output
    assert _mode(files.root / "coordinator" / "state" / "pins.json") == 0o600
    assert _mode(files.ca_dir) == 0o700 and _mode(files.root / "bank_a") == 0o700


def test_a_key_that_others_can_read_is_refused(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False)
    try:
        key = fed.files.root / "bank_harbour" / "bank_harbour.key"
        os.chmod(key, 0o644)
        with pytest.raises(ConfigError, match="accessible to other users.*chmod 600"):
            fed.agents["bank_harbour"].serve()
        ckey = fed.files.root / "coordinator" / "coordinator.key"
        os.chmod(ckey, 0o640)
        with pytest.raises(ConfigError, match="accessible to other users"):
            Coordinator(load_coordinator_config(fed.files.coordinator_config)).start()
        os.chmod(fed.files.ca_dir / "ca.key", 0o604)
        _, csr = create_request("bank_new", "party", tmp_path / "new")
        result = runner.invoke(certs_app, ["sign", str(csr), "--ca-dir", str(fed.files.ca_dir)])
        assert result.exit_code == 2 and "accessible to other users" in result.output, result.output
    finally:
        fed.coordinator.security.close()


@pytest.mark.slow
def test_encrypted_keys_need_their_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "ca"
    monkeypatch.setenv("SAMPAN_KEY_PASSPHRASE", "correct horse")
    assert runner.invoke(certs_app, ["init", "--dir", str(ca), "--encrypt"]).exit_code == 0
    assert b"ENCRYPTED" in (ca / "ca.key").read_bytes()
    assert runner.invoke(certs_app, ["request", "bank_x", "--dir", str(tmp_path / "x"), "--encrypt"]).exit_code == 0
    assert b"ENCRYPTED" in (tmp_path / "x" / "bank_x.key").read_bytes()
    assert runner.invoke(certs_app, ["sign", str(tmp_path / "x" / "bank_x.csr"), "--ca-dir", str(ca)]).exit_code == 0
    monkeypatch.setenv("SAMPAN_KEY_PASSPHRASE", "wrong")
    _, csr = create_request("bank_y", "party", tmp_path / "y")
    result = runner.invoke(certs_app, ["sign", str(csr), "--ca-dir", str(ca)])
    assert result.exit_code == 2 and "wrong passphrase" in result.output, result.output
    monkeypatch.delenv("SAMPAN_KEY_PASSPHRASE")
    result = runner.invoke(certs_app, ["sign", str(csr), "--ca-dir", str(ca)])
    assert result.exit_code == 2 and "SAMPAN_KEY_PASSPHRASE" in result.output, result.output

    # A party agent with an encrypted key connects when given the passphrase, and says why when not.
    fed = ThreadFederation(tmp_path / "fed", start=False)
    folder = fed.files.root / "bank_harbour"
    fresh, csr = create_request("bank_harbour", "party", tmp_path / "enc", passphrase=b"s3cret")
    sign_request(csr, fed.files.ca_dir, rekey=True)
    shutil.copy(fresh, folder / "bank_harbour.key")
    shutil.copy(tmp_path / "enc" / "bank_harbour.crt", folder / "bank_harbour.crt")
    agent = PartyAgent(load_party_config(fed.files.party_configs["bank_harbour"]))
    with pytest.raises(ConfigError, match="is encrypted"):
        agent.serve()
    monkeypatch.setenv("SAMPAN_KEY_PASSPHRASE", "s3cret")
    fed.agents["bank_harbour"] = agent
    fed.start()  # every agent connected, bank_harbour with its decrypted-in-memory key
    fed.close()


# --- adversarial review R4 (residual): links and shared folders -------------------------------------------
def test_a_store_or_log_path_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    """Another user plants `coordinator.db` (or the log) as a link to a file of theirs, or of the victim's:
    the private file is opened with O_NOFOLLOW and refused, and the link's target is left untouched."""
    from sampan.files import InsecureFileError, open_private_append, private_file, private_sqlite

    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone else's file")
    os.chmod(target, 0o644)
    (folder / "coordinator.db").symlink_to(target)
    (folder / "coordinator.log").symlink_to(target)
    with pytest.raises(InsecureFileError, match="symbolic link"):
        private_sqlite(f"sqlite:///{folder / 'coordinator.db'}")
    with pytest.raises(InsecureFileError, match="symbolic link"):
        private_file(folder / "coordinator.log")
    with pytest.raises(InsecureFileError, match="symbolic link"):
        open_private_append(folder / "coordinator.log")
    assert _mode(target) == 0o644 and target.read_text() == "someone else's file"


def test_a_private_file_in_a_world_writable_folder_is_refused(tmp_path: Path) -> None:
    """Anyone can plant or swap names in a world-writable folder: a store, log or pin file there is refused."""
    from sampan.files import InsecureFileError, private_file

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(InsecureFileError, match="writable by other users"):
        private_file(shared / "coordinator.log")
    assert not (shared / "coordinator.log").exists()
