"""Edge cases found in review: nothing of the user's is overwritten, odd inputs get clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from test_synth_privacy import SCHEMA, _table

from sampan.privacy.ledger import Budget, Ledger
from sampan.synth import SchemaError, SynthConfig, SynthSchema, fit_federated, fit_synthesizer, release_domain
from sampan.synth.bias import model_group_stats
from sampan.synth.evaluate import evaluate
from sampan.synth.model import ModelError, SynthModel
from sampan.transport.inprocess import InProcessTransport


def test_saving_a_model_never_replaces_a_folder_of_other_files(tmp_path) -> None:
    model = fit_synthesizer(_table(600, 1), SCHEMA, SynthConfig(epsilon=1.0))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "important.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="important.txt"):
        model.save(precious)
    assert (precious / "important.txt").read_text() == "keep"
    model.save(tmp_path / "m")
    model.save(tmp_path / "m")  # an earlier model in the same folder is replaced
    (tmp_path / "m" / "tables.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="tables.npz"):
        SynthModel.load(tmp_path / "m")


def test_any_generator_passed_in_marks_the_model_reproducible_not_private() -> None:
    model = fit_synthesizer(_table(600, 2), SCHEMA, SynthConfig(epsilon=1.0), rng=np.random.default_rng(3))
    assert model.receipt["reproducible_not_private"] is True


def test_tree_choice_under_secure_aggregation_uses_sensitivity_2() -> None:
    tables = {f"bank{i}": _table(3000, 30 + i) for i in range(3)}  # SecAgg sums at least 3 contributors
    model = fit_federated(tables, SCHEMA, SynthConfig(epsilon=8.0, tree=True), transport=InProcessTransport,
                          secure_aggregation=True)
    selections = [r for p in model.receipt["parties"].values() for r in p["releases"] if r["kind"] == "exponential"]
    assert selections and {r["score_sensitivity"] for r in selections} == {2.0}
    plain = fit_federated(tables, SCHEMA, SynthConfig(epsilon=8.0, tree=True), transport=InProcessTransport)
    assert {r["score_sensitivity"] for p in plain.receipt["parties"].values() for r in p["releases"]
            if r["kind"] == "exponential"} == {1.0}


def test_report_skips_utility_when_the_holdout_has_one_class() -> None:
    real = _table(800, 4)
    model = fit_synthesizer(real, SCHEMA, SynthConfig(epsilon=2.0))
    synthetic = _table(400, 5)
    holdout = {k: v[real["y"] == "0"][:100] for k, v in real.items()}
    doc = evaluate(SCHEMA, synthetic, real_train=real, holdout=holdout, model=model)
    assert "utility" not in doc and "one class" in doc["skipped"]["utility"]
    with pytest.raises(ValueError, match="is the label"):
        model_group_stats(model, "y")


@pytest.mark.parametrize("column, message", [
    ({"name": "g", "kind": "categorical", "categories": "yes"}, "'categories' must be a list"),
    ({"name": "a", "kind": "numeric", "bounds": 5}, "'bounds' must be a list"),
    ({"name": "a", "kind": "numeric", "bounds": [0, 1], "integer": "no"}, "'integer' must be true or false"),
])
def test_schema_fields_of_the_wrong_type_are_refused(column, message) -> None:
    with pytest.raises(SchemaError, match=message):
        SynthSchema.from_dict({"columns": [column]})


def test_inferring_a_column_with_no_values_is_refused() -> None:
    with pytest.raises(SchemaError, match="every value is missing"):
        release_domain({"y": np.array(["0", "1"], dtype=object), "amt": np.array([None, None], dtype=object)},
                       label="y", party="p", ledger=Ledger({"p": Budget(1.0, 1e-5)}, accountant="rdp"), rho=0.01,
                       threshold_delta=1e-6)
