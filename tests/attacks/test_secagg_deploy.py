"""Findings 3, 5, 15 on the deployed path: party agents over gRPC + mTLS sign their SecAgg keys with their
organisation's TLS certificate key, check their peers' against the consortium CA, and keep their per-label
record of what they revealed under their state dir (0600), so it survives an agent restart."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sampan.config import ConfigError
from sampan.deploy.config import load_party_config
from sampan.privacy.secagg_state import FileStateStore

from _deploy_federation import ThreadFederation, run_config


def test_a_deployed_secure_run_signs_keys_and_persists_party_state(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path)
    try:
        run_id = fed.submit(run_config("secure", secure_aggregation={}))
        status = fed.wait(run_id)
        assert status["status"] == "completed", status
        for name, path in fed.files.party_configs.items():
            kinds = fed.kinds(name, run_id)
            assert "secagg_consistency" in kinds and "secagg_unmask" in kinds
            folder = Path(load_party_config(path).party.state_dir) / "secagg"
            files = sorted(folder.iterdir())
            assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            records = [FileStateStore(folder).load(label) for label in _labels(files)]
            assert records  # every label it answered under is on disk, with what it revealed
        with pytest.raises(ConfigError, match="robust aggregators"):
            fed.submit(run_config("robust", secure_aggregation={}, strategy={"aggregator": "median"}))
    finally:
        fed.close()


def _labels(files: list[Path]) -> list[str]:
    import json

    return [json.loads(f.read_bytes())["label"] for f in files]
