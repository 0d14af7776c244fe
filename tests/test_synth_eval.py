"""Evaluation report: fidelity, utility, privacy checks and the HTML/JSON files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from sampan.privacy.randomness import seeded_generator
from sampan.synth import SynthConfig, fit_synthesizer, generate, parse_constraint
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.evaluate import evaluate, headline
from sampan.synth.fidelity import fidelity
from sampan.synth.privacy_eval import privacy
from sampan.synth.report import write_evaluation

SCHEMA = SME_SYNTH_SCHEMA


@pytest.fixture(scope="module")
def split():
    table = consortium_tables(6000, seed=5)["bank_harbour"]
    n = len(table["sector"])
    perm = np.random.default_rng(0).permutation(n)
    cut = n // 2
    return ({k: v[perm[:cut]] for k, v in table.items()}, {k: v[perm[cut:]] for k, v in table.items()})


def test_fidelity_of_the_real_table_itself_is_perfect(split) -> None:
    train, _ = split
    result = fidelity(train, train, SCHEMA)
    assert result["score"] == pytest.approx(1.0) and result["mean_correlation_difference"] == pytest.approx(0.0)


def test_copying_the_training_rows_is_caught(split) -> None:
    train, holdout = split
    result = privacy(train, train, holdout, SCHEMA, max_rows=5000)  # every row compared
    assert result["exact_copies"]["of_training_rows"] == len(train["sector"])
    assert result["dcr"]["share_closer_to_train"] > 0.9
    assert result["membership_inference"]["auc"] > 0.9


def test_dp_synthesis_passes_the_privacy_checks_and_report_is_written(split, tmp_path) -> None:
    train, holdout = split
    model = fit_synthesizer(train, SCHEMA, SynthConfig(epsilon=1.0), rng=seeded_generator(1))
    rows, sample_report = generate(model, len(train["sector"]), rng=seeded_generator(2))
    cons = [parse_constraint("log10_loan_amount_hkd <= log10_annual_revenue_hkd", SCHEMA)]
    doc = evaluate(SCHEMA, rows, real_train=train, holdout=holdout, model=model, constraints=cons,
                   groups=["sector"], sample_report=sample_report.to_dict(), privacy_rows=800)
    head = headline(doc)
    assert 0.8 < head["fidelity_score"] <= 1.0
    assert head["tstr_auc"] > 0.6 and head["trtr_auc"] > 0.7
    assert abs(head["mia_auc"] - 0.5) < 0.1 and head["exact_copies_count"] == 0
    assert doc["privacy_receipt"]["epsilon"] == 1.0
    assert "real_violation_rate" in doc["constraints"][0]
    paths = write_evaluation(doc, tmp_path / "report")
    html = paths["confidential_html"].read_text()
    ET.fromstring(html.split("\n", 1)[1])  # well-formed XML after the doctype
    assert "Privacy receipt" in html and "Bias report" in html
    data = json.loads(paths["confidential_json"].read_text())
    assert data["utility"]["tstr_auc"] == pytest.approx(head["tstr_auc"])
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "report.confidential.html", "report.confidential.json", "report.releasable.html", "report.releasable.json"]
    assert "CONFIDENTIAL TO THE DATA OWNER" in html
    releasable = paths["releasable_html"].read_text()
    ET.fromstring(releasable.split("\n", 1)[1])
    assert "Privacy receipt" in releasable and "Fidelity" not in releasable and "Utility" not in releasable


def test_evaluation_skips_what_it_cannot_compute(split) -> None:
    train, _ = split
    doc = evaluate(SCHEMA, train)
    assert set(doc["skipped"]) == {"fidelity", "utility", "privacy"}
