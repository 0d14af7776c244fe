"""Fixed target marginals and constraints are honoured in samples, or the shortfall is reported."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.privacy.randomness import seeded_generator
from sampan.synth import (
    ConstraintError,
    SynthColumn,
    SynthConfig,
    SynthSchema,
    TargetError,
    TargetMarginal,
    fit_synthesizer,
    generate,
    parse_constraint,
)
from sampan.synth.bias import bias_report
from sampan.synth.spec import parse_target

SCHEMA = SynthSchema(
    columns=(
        SynthColumn("default", "categorical", ("0", "1")),
        SynthColumn("gender", "categorical", ("F", "M")),
        SynthColumn("industry", "categorical", ("retail", "food", "tech", "transport")),
        SynthColumn("monthly_revenue", "numeric", bounds=(0.0, 2e6)),
        SynthColumn("loan_amount", "numeric", bounds=(0.0, 5e7)),
        SynthColumn("balance", "numeric", bounds=(-1e5, 1e6)),
    ),
    label="default",
)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    n = 6000
    gender = np.where(rng.random(n) < 0.25, "F", "M").astype(object)  # under-represented group
    industry = rng.choice(np.array(["retail", "food", "tech", "transport"], dtype=object), n, p=[.4, .3, .2, .1])
    revenue = rng.lognormal(11, 0.8, n)
    loan = revenue * rng.lognormal(1.5, 0.9, n)  # sometimes above 10x revenue
    balance = rng.normal(5e4, 8e4, n)  # sometimes negative
    p = 1 / (1 + np.exp(-(-2.2 + 0.4 * (np.log(loan / revenue) - 1.5) + 0.5 * (gender == "F"))))
    table = {"default": np.where(rng.random(n) < p, "1", "0").astype(object), "gender": gender,
             "industry": industry, "monthly_revenue": revenue, "loan_amount": loan, "balance": balance}
    return fit_synthesizer(table, SCHEMA, SynthConfig(epsilon=3.0), rng=seeded_generator(1))


def _share(values: np.ndarray, cat: str) -> float:
    return float((values == cat).mean())


def test_fixed_label_rate_is_exact(model) -> None:
    rows, report = generate(model, 2001, targets=[TargetMarginal(("default",), {("1",): 0.10, ("0",): 0.90})],
                            rng=seeded_generator(2))
    assert (rows["default"] == "1").sum() == 200  # round(0.1 * 2001)
    assert report.exact and report.targets[0]["max_abs_difference"] < 1 / 2001


def test_group_parity_and_label_rate_together_are_exact(model) -> None:
    targets = [TargetMarginal.uniform(model, "gender"), parse_target("default: 1=0.1, 0=0.9", model),
               parse_target("industry: retail=0.25, food=0.25, tech=0.25, transport=0.25", model)]
    rows, report = generate(model, 4000, targets=targets, rng=seeded_generator(3))
    assert (rows["gender"] == "F").sum() == 2000
    assert (rows["default"] == "1").sum() == 400
    by_method = {tuple(t["columns"]): t for t in report.targets}
    assert by_method[("industry",)]["method"].startswith("raking")
    assert by_method[("industry",)]["max_abs_difference"] < 0.03  # approximate, and reported
    # conditioning keeps the model's relation within groups: F still defaults more than M (planted)
    rate_f = (rows["default"][rows["gender"] == "F"] == "1").mean()
    rate_m = (rows["default"][rows["gender"] == "M"] == "1").mean()
    assert rate_f > rate_m
    bias = bias_report(model, rows, ["gender"])["gender"]
    assert bias["before_model"]["F"]["share"] < 0.35 and bias["after_synthetic"]["F"]["share"] == 0.5


def test_joint_target_with_label_is_exact(model) -> None:
    target = parse_target("gender,default: F|1=0.05, F|0=0.45, M|1=0.05, M|0=0.45", model)
    rows, report = generate(model, 1000, targets=[target], rng=seeded_generator(4))
    for g in ("F", "M"):
        assert ((rows["gender"] == g) & (rows["default"] == "1")).sum() == 50
    assert report.exact


def test_constraints_are_honoured_exactly(model) -> None:
    cons = [parse_constraint("loan_amount <= 10 * monthly_revenue", SCHEMA), parse_constraint("balance >= 0", SCHEMA),
            parse_constraint("industry not in ['tech']", SCHEMA)]
    rows, report = generate(model, 3000, targets=[TargetMarginal.uniform(model, "gender")], constraints=cons,
                            rng=seeded_generator(5))
    assert np.all(rows["loan_amount"] <= 10 * rows["monthly_revenue"])
    assert np.all(rows["balance"] >= 0)
    assert not np.any(rows["industry"] == "tech")
    assert (rows["gender"] == "F").sum() == 1500
    assert all(c["violations"] == 0 for c in report.constraints) and report.exact
    assert report.rows_drawn > 3000


def test_unsatisfiable_constraint_is_reported_not_hidden(model) -> None:
    con = parse_constraint("monthly_revenue > 3e6", SCHEMA)  # outside the public bounds: never true
    rows, report = generate(model, 200, constraints=[con], rng=seeded_generator(6), max_draw_factor=3)
    assert len(rows["gender"]) == 200
    assert report.constraints[0]["violations"] == 200 and not report.exact
    assert "could not satisfy" in report.notes[0]


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "__import__"),
    ("loan_amount.real > 0", "not allowed"),
    ("salary > 0", "unknown column"),
    ("gender > 'F'", "only support =="),
    ("gender == 3", "not both numeric or both text"),
    ("loan_amount + ", "not a valid expression"),
])
def test_constraint_parser_rejects_with_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConstraintError, match=message):
        parse_constraint(text, SCHEMA)


def test_target_errors_name_the_problem(model) -> None:
    with pytest.raises(TargetError, match="'X' is not a category of column 'gender'"):
        generate(model, 10, targets=[TargetMarginal(("gender",), {("X",): 1.0})])
    with pytest.raises(TargetError, match="sum to"):
        generate(model, 10, targets=[TargetMarginal(("gender",), {("F",): 0.7, ("M",): 0.7})])
    with pytest.raises(TargetError, match="numeric"):
        generate(model, 10, targets=[TargetMarginal(("balance",), {("1",): 1.0})])


def test_joint_quotas_meet_both_margins_exactly() -> None:
    """Controlled rounding: a merged (column, label) target never leaves a margin one unit off."""
    from sampan.synth.quotas import joint_quotas, quotas

    rng = np.random.default_rng(0)
    for _ in range(500):
        r, c = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        joint = rng.random((r, c))
        row_p, col_p, n = rng.dirichlet(np.ones(r)), rng.dirichlet(np.ones(c)), int(rng.integers(1, 5000))
        q = joint_quotas(joint / joint.sum(), n, row_p, col_p).reshape(r, c)
        assert (q >= 0).all() and (q.sum(1) == quotas(row_p, n)).all() and (q.sum(0) == quotas(col_p, n)).all()
