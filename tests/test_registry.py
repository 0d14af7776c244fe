"""Model registry: lineage, receipts, and `sampan models list|show|export` (arrays + JSON, never pickle)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sampan.cli.registry import models_app
from sampan.config import parse_config
from sampan.runtime.receipt import build_receipt
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store, StoreError, _canonical_sha256


@pytest.fixture(autouse=True)
def _audit_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPAN_AUDIT_KEY", str(tmp_path / "keys" / "coordinator.pem"))


def _url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_registration_records_lineage_and_is_in_the_signed_log(store: Store) -> None:
    config = {"run": {"name": "pd"}, "privacy": None}
    run_id = store.create_run(name="pd", workflow="horizontal", seed=1, config=config, total_rounds=1)
    arrays = {"params": np.arange(4.0), "scaler.mean": np.ones(3)}
    v1 = store.register_model("pd-model", run_id, arrays, {"model": {"kind": "logistic"}})
    v2 = store.register_model("pd-model", run_id, arrays, {"model": {"kind": "logistic"}},
                              parent={"name": "pd-model", "version": v1})
    first, second = store.get_model("pd-model", v1), store.get_model("pd-model")
    assert second.version == v2 == 2 and first.meta == {"model": {"kind": "logistic"}}  # meta unchanged
    assert first.lineage["run_id"] == run_id and first.lineage["config_sha256"] == _canonical_sha256(config)
    assert first.lineage["parent"] is None and first.lineage["previous_version"] is None
    assert second.lineage["parent"] == {"name": "pd-model", "version": 1} and second.lineage["previous_version"] == 1
    logged = [e.detail for e in store.events(run_id) if e.kind == "model_registered"]
    assert [d["arrays_sha256"] for d in logged] == [first.lineage["arrays_sha256"]] * 2
    assert store.verify_audit(run_id).ok
    store.attach_receipt("pd-model", 1, {"run_id": run_id, "differential_privacy": False})
    assert store.get_model("pd-model", 1).receipt == {"run_id": run_id, "differential_privacy": False}
    assert [m.version for m in store.list_models("pd-model")] == [2, 1]
    assert store.list_models("pd-model")[1].has_receipt
    with pytest.raises(StoreError, match="no model 'nope' version 3"):
        store.attach_receipt("nope", 3, {})


def test_cli_list_show_export_after_a_real_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store.open(url)
    config = parse_config({"run": {"name": "sme-pd", "rounds": 2, "seed": 3, "report_dir": str(tmp_path / "rep")},
                           "source": {"kind": "consortium", "n_smes": 1500}, "secure_aggregation": {}})
    finished = start_run(config, store)
    store.attach_receipt(finished.model_name, finished.model_version, build_receipt(store, finished.outcome.run_id))
    runner = CliRunner()

    listed = runner.invoke(models_app, ["list", "--store", url])
    assert listed.exit_code == 0, listed.output
    assert "sme-pd" in listed.output and finished.outcome.run_id in listed.output

    shown = runner.invoke(models_app, ["show", "sme-pd", "--store", url])
    assert shown.exit_code == 0, shown.output
    assert "config_sha256" in shown.output and "secure aggregation on" in shown.output

    out = tmp_path / "export"
    exported = runner.invoke(models_app, ["export", "sme-pd", "--out", str(out), "--store", url])
    assert exported.exit_code == 0, exported.output
    with np.load(out / "sme-pd-v1.npz", allow_pickle=False) as npz:  # plain arrays: loads without pickle
        arrays = dict(npz)
    model = store.get_model("sme-pd")
    assert arrays.keys() == model.arrays.keys()
    np.testing.assert_array_equal(arrays["params"], finished.outcome.params)
    meta = json.loads((out / "sme-pd-v1.json").read_text())
    assert meta["lineage"]["run_id"] == finished.outcome.run_id and meta["metadata"]["model"]["kind"] == "logistic"
    assert meta["npz"]["sha256"] == hashlib.sha256((out / "sme-pd-v1.npz").read_bytes()).hexdigest()
    assert meta["arrays"]["params"]["sha256"] == hashlib.sha256(finished.outcome.params.tobytes()).hexdigest()
    receipt = json.loads((out / "sme-pd-v1.receipt.json").read_text())
    assert receipt["run_id"] == finished.outcome.run_id and receipt["secure_aggregation"] is not None

    missing = runner.invoke(models_app, ["show", "nope", "--store", url])
    assert missing.exit_code == 2 and "no model 'nope'" in missing.output


def test_export_without_an_attached_receipt_regenerates_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store.open(url)
    run_id = store.create_run(name="m", workflow="horizontal", seed=1, config={"run": {"name": "m"}}, total_rounds=1)
    store.register_model("m", run_id, {"params": np.zeros(2)}, {})
    result = CliRunner().invoke(models_app, ["export", "m", "--out", str(tmp_path / "o"), "--store", url])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "m-v1.receipt.json").read_text())["run_id"] == run_id
    assert "no registered models" in CliRunner().invoke(models_app, ["list", "--name", "x", "--store", url]).output
