"""The console's job wizard turns one HTML form into the run config the control plane hashes: each level the
user ticks becomes its [privacy] section, the extra TOML is merged over the rest, and every bad value is refused
naming its form field (the page shows it next to the field)."""

from __future__ import annotations

import pytest

from sampan.web.console.wizard import build_job
from sampan.web.errors import Invalid

BASE = {"workflow": "horizontal", "party": ["bank_a", "bank_b"], "dataset.bank_a": "loans", "dataset.bank_b": "loans",
        "columns.bank_a.loans": ["x", "y"], "columns.bank_b.loans": "x", "rounds": "4", "model_kind": "logistic"}


def test_levels_budget_and_extra_settings_make_the_run_config() -> None:
    form = {**BASE, "epsilon": "2", "delta": "1e-6", "accountant": "pld", "dp2": "1", "dp3": "1",
            "extra": '[training]\nlocal_epochs = 3\n[run]\nseed = 11\n'}
    config, datasets, label_holder = build_job(form, "j")
    auto = {"noise_multiplier": "auto"}  # never an empty table: the spec counts a level only when it says so
    assert config["privacy"] == {"epsilon": 2.0, "delta": 1e-6, "accountant": "pld", "dp2": auto, "dp3": auto}
    assert config["data"] == {"standardize": False}  # without DP1, no exact (uncharged) standardisation statistics
    assert config["strategy"]["aggregator"] == "mean"  # DP3 is a noisy mean
    assert config["run"] == {"name": "j", "workflow": "horizontal", "rounds": 4, "seed": 11}
    assert config["training"]["local_epochs"] == 3 and config["training"]["batch_size"] == 64
    assert datasets == {"bank_a": {"dataset": "loans", "columns": ["x", "y"]},
                        "bank_b": {"dataset": "loans", "columns": ["x"]}}
    assert label_holder is None
    assert "privacy" not in build_job({**BASE, "epsilon": ""}, "j")[0]  # no budget: no DP


@pytest.mark.parametrize(("change", "field"), [
    ({"workflow": "magic"}, "workflow"), ({"party": []}, "party"), ({"dataset.bank_b": ""}, "dataset.bank_b"),
    ({"columns.bank_a.loans": []}, "columns.bank_a"), ({"rounds": "0"}, "rounds"), ({"rounds": "1.5"}, "rounds"),
    ({"epsilon": "nan"}, "epsilon"), ({"epsilon": "1"}, "dp2"), ({"epsilon": "1", "dp1": "1"}, "dp1"),
    ({"epsilon": "1", "dp2": "1", "accountant": "moments"}, "accountant"), ({"extra": "[run"}, "extra"),
    ({"workflow": "vertical"}, "label_holder"), ({"model_kind": "svm"}, "model_kind")])
def test_bad_input_names_its_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as refused:
        build_job({**BASE, **change}, "j")
    assert refused.value.field == field


def test_dp1_with_public_bounds_in_the_extra_settings() -> None:
    form = {**BASE, "epsilon": "1", "dp1": "1", "extra": '[privacy.dp1]\nbounds = {"*" = [0.0, 1.0]}\n'}
    config, _, _ = build_job(form, "j")
    assert config["privacy"]["dp1"] == {"noise_multiplier": "auto", "bounds": {"*": [0.0, 1.0]}}


def test_the_wizards_default_dp_job_learns_on_the_embedded_consoles_data(tmp_path, monkeypatch) -> None:
    """The browser walk found the default DP job (DP2 only, raw features) at AUC ~0.54 on `sampan console`'s
    tables: the default now ticks DP1 too, with the SME columns' public bounds, so the features are standardised
    under DP. Measured: AUC 0.611 on these seeded tables (6000 SMEs, the console's default); 0.683 on the
    built-in consortium source of the same size, where the old default (DP2 only) reached 0.537."""
    import itertools

    import sampan
    import sampan.privacy.dpsgd
    import sampan.privacy.mechanisms
    from sampan.data.consortium import BANK_SCHEMA
    from sampan.privacy.randomness import seeded_generator
    from sampan.web.embedded_files import DATASET, NAMED_BANKS, _schema, _write_tables

    seeds = itertools.count(1)  # the AUC is a property of this seeded run, not a bound over all noise draws
    for module in (sampan.privacy.mechanisms, sampan.privacy.dpsgd):
        monkeypatch.setattr(module, "secure_generator", lambda: seeded_generator(next(seeds)))
    tables = _write_tables(tmp_path, NAMED_BANKS, 6000, seed=5)
    columns = [f.name for f in BANK_SCHEMA.features]
    form = {"workflow": "horizontal", "model_kind": "logistic", "rounds": "10", "learning_rate": "",
            "local_epochs": "", "batch_size": "", "epsilon": "3", "delta": "1e-5", "accountant": "rdp",
            "dp1": "1", "dp2": "1",  # what the wizard's page ticks by default
            "party": list(NAMED_BANKS), **{f"dataset.{p}": DATASET for p in NAMED_BANKS},
            **{f"columns.{p}.{DATASET}": columns for p in NAMED_BANKS}}
    config, _, _ = build_job(form, "default-dp")
    assert "data" not in config  # standardised (under DP1), not raw
    assert config["privacy"]["dp1"]["bounds"]["years_in_business"] == [0.0, 50.0]
    config.pop("deploy")  # the same job, in process, on the tables the console's agents read
    config["run"].update(seed=3, report_dir=str(tmp_path / "reports"))
    config["schema"] = _schema()
    config["parties"] = [{"name": p, "path": str(tables[p])} for p in NAMED_BANKS]
    finished = sampan.run(config, store=f"sqlite:///{tmp_path / 'runs.db'}")
    auc = finished.outcome.final_metrics["auc"]
    # The parties answer concurrently, so which seeded stream each draws from varies between runs: 0.611 measured,
    # 0.60-0.62 seen; 0.55 is ~3 standard errors of a null AUC above 0.5 on this test set and far below what it reaches.
    assert auc > 0.55, finished.outcome.final_metrics


def test_dp1_bounds_are_filled_in_only_for_the_public_sme_columns() -> None:
    from sampan.web.console.wizard import public_bounds_for

    assert public_bounds_for({"b": {"dataset": "loans", "columns": ["employees", "sector"]}}) is not None
    assert public_bounds_for({"b": {"dataset": "loans", "columns": ["employees", "salary"]}}) is None
