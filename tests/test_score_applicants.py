"""`sampan score --model NAME --data applicants.csv`: new applicants, no label, any number of rows, missing values
imputed as training did, reason codes never all zero, clear errors naming the file, column and rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _scoring_models import IMPUTED, NATIVE, train_models
from typer.testing import CliRunner

import sampan
from sampan.cli import app
from sampan.models.scorer import Scorer
from sampan.runtime.scorers import load_scorer
from sampan.runtime.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train_models(tmp_path_factory)


def _score(trained: dict, *args: str) -> object:
    result = runner.invoke(app, ["score", *args, "--store", trained["store"]])
    return result


@pytest.mark.parametrize("model", ["lr", "mlp", "trees"])
def test_a_file_without_labels_scores_with_reasons_never_all_zero(trained: dict, model: str) -> None:
    out = trained["tmp"] / f"{model}.json"
    result = _score(trained, "--model", model, "--data", str(trained["applicants"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    assert len(scored) == len(trained["rows"])
    assert [r["id"] for r in scored] == [r[trained["schema"].id_column] for r in trained["rows"]]
    for r in scored:
        assert 0.0 < r["pd"] < 1.0 and r["reasons"]
        assert any(reason["contribution"] != 0.0 for reason in r["reasons"])
        assert r["score"] == pytest.approx(600 + 20 / np.log(2) * (np.log((1 - r["pd"]) / r["pd"]) - np.log(50)))
    # the same PDs as the Python API on the training encoding (imputation included), to the last bit
    scorer = load_scorer(Store.open(trained["store"]), model)
    direct = scorer.score([{k: v for k, v in row.items()} for row in trained["rows"]])
    assert [r.pd for r in direct] == [r["pd"] for r in scored]


def test_one_row_and_csv_output_keeps_full_precision(trained: dict) -> None:
    one = trained["tmp"] / "one.csv"
    lines = trained["applicants"].read_text().splitlines()
    one.write_text("\n".join(lines[:2]) + "\n")
    out = trained["tmp"] / "one-out.csv"
    result = _score(trained, "--model", "lr@1", "--data", str(one), "--out", str(out))
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    expected = load_scorer(Store.open(trained["store"]), "lr").score([trained["rows"][0]])[0]
    assert row["pd"] == repr(expected.pd) and float(row["pd"]) == expected.pd
    assert row["reason_1"] == expected.reasons[0]["feature"]


def test_ten_thousand_rows_in_chunks_match_one_batch(trained: dict) -> None:
    big = trained["tmp"] / "big.csv"
    lines = trained["applicants"].read_text().splitlines()
    body = lines[1:]
    big.write_text("\n".join([lines[0], *(body[k % len(body)] for k in range(10_000))]) + "\n")
    out = trained["tmp"] / "big.jsonl"
    result = _score(trained, "--model", "trees", "--data", str(big), "--out", str(out), "--chunk-rows", "3000")
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == 10_000
    first = {r["id"]: r["pd"] for r in scored[: len(body)]}
    assert all(first[r["id"]] == r["pd"] for r in scored)  # a row scores the same in any chunk


def test_missing_values_are_imputed_or_routed_as_training_did(trained: dict) -> None:
    store = Store.open(trained["store"])
    row = {k: v for k, v in trained["rows"][0].items()}
    for model in ("lr", "mlp", "trees"):
        scorer = load_scorer(store, model)
        gap = scorer.score([{**row, IMPUTED: "?"}])[0]
        assert np.isfinite(gap.pd)
    lr = load_scorer(store, "lr")
    fill = lr.predictor.scaler["impute"][lr.predictor.feature_names.index(IMPUTED)]
    assert lr.score([{**row, IMPUTED: ""}])[0].pd == lr.score([{**row, IMPUTED: repr(float(fill))}])[0].pd
    mlp = load_scorer(store, "mlp")  # indicator policy: the <name>_missing column is derived from the gap
    assert mlp.score([{**row, IMPUTED: None}])[0].pd != mlp.score([row])[0].pd
    trees = load_scorer(store, "trees")  # native: NaN follows each split's learned direction
    assert np.isfinite(trees.score([{**row, NATIVE: "?"}])[0].pd)


def test_errors_name_the_file_column_and_rows(trained: dict, tmp_path: Path) -> None:
    lines = trained["applicants"].read_text().splitlines()
    header = lines[0].split(",")
    bad = tmp_path / "bad.csv"
    rows = [line.split(",") for line in lines[1:6]]
    sector = header.index('"sector"') if '"sector"' in header else header.index("sector")
    rows[2][sector] = "space_mining"
    bad.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    result = _score(trained, "--model", "lr", "--data", str(bad), "--out", str(tmp_path / "x.csv"))
    assert result.exit_code == 2
    assert "bad.csv" in result.output and "'sector'" in result.output and "row 3" in result.output
    assert "space_mining" in result.output and not (tmp_path / "x.csv").exists()  # nothing half-written
    assert not list(tmp_path.glob(".*partial"))
    no_column = tmp_path / "nocol.csv"
    keep = [k for k, h in enumerate(header) if IMPUTED not in h]
    no_column.write_text("\n".join(",".join(line.split(",")[k] for k in keep) for line in lines[:4]) + "\n")
    result = _score(trained, "--model", "lr", "--data", str(no_column))
    assert result.exit_code == 2 and IMPUTED in result.output and "missing column" in result.output
    holes = tmp_path / "holes.csv"
    native = header.index(f'"{NATIVE}"') if f'"{NATIVE}"' in header else header.index(NATIVE)
    rows = [line.split(",") for line in lines[1:6]]
    rows[1][native] = "?"
    holes.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    scorer = load_scorer(Store.open(trained["store"]), "lr")
    assert NATIVE in dict.fromkeys(scorer.inputs)  # the lr run imputed it with the mean: no error
    result = _score(trained, "--model", "nope", "--data", str(holes))
    assert result.exit_code == 2 and "no model 'nope'" in result.output
    result = _score(trained, "--model", "lr", "--data", str(holes), "--id-column", "reg_no")
    assert result.exit_code == 2 and "'reg_no' (--id-column)" in result.output


def test_a_column_without_imputation_is_refused_with_its_rows(trained: dict) -> None:
    scorer = load_scorer(Store.open(trained["store"]), "lr")
    rows = [dict(r) for r in trained["rows"][:6]]
    rows[4]["years_in_business"] = "?"
    with pytest.raises(sampan.DataError, match=r"'years_in_business'.*row 4.*no imputation value"):
        scorer.score(rows)


def test_gbdt_reasons_add_up_to_the_logit(trained: dict) -> None:
    from sampan.models.tree_scoring import TreeEnsemble

    entry = Store.open(trained["store"]).get_model("trees")
    scorer = Scorer.from_registered(entry.arrays, entry.meta, name="trees", top=50)
    ensemble = TreeEnsemble.from_payload(entry.meta["model"], entry.arrays)
    for r in scorer.score(trained["rows"][:20]):
        assert ensemble.bias + sum(x["contribution"] for x in r.reasons) == pytest.approx(r.logit, abs=1e-12)
    from sampan.horizontal.gbdt import predict_gbdt_payload

    X = scorer.predictor.encode({k: np.array([r[k] for r in trained["rows"]], dtype=object)
                                 for k in trained["rows"][0]})
    np.testing.assert_allclose(predict_gbdt_payload(entry.meta["model"], entry.arrays, X),
                               [r.pd for r in scorer.score(trained["rows"])], rtol=0, atol=1e-12)
    X[:40:3, 5] = np.nan  # a few rows walk their paths in Python, many node by node: the same bits either way
    many, few = ensemble.logits_and_contributions(X[:40]), ensemble.logits_and_contributions(X[:10])
    assert np.array_equal(many[0][:10], few[0]) and np.array_equal(many[1][:10], few[1])


def _vertical_run(tmp: Path) -> tuple[str, str, object]:
    """A small vertical run (bank + payments + delivery, secure LR) from files; returns store, run id, consortium."""
    from sampan.data import make_sme_consortium

    consortium = make_sme_consortium(n_smes=3000, seed=8)
    paths = consortium.write_csv(tmp / "data", view="vertical")
    parties = []
    for name, path in paths.items():
        schema = consortium.schema_for(name)
        cats = ", ".join(f"{c.name} = [{', '.join(json.dumps(x) for x in c.categories)}]"
                         for c in schema.features if c.categories)
        label = f'label = "{schema.label_column}"\n' if name == "bank" else ""
        parties.append(f'[[vertical.parties]]\nname = "{name}"\npath = "{path}"\n{label}'
                       f"features = {json.dumps([c.name for c in schema.features])}\ncategories = {{ {cats} }}\n")
    store = f"sqlite:///{tmp / 'v.db'}"
    toml = tmp / "vertical.toml"
    toml.write_text(f'[run]\nname = "v-score"\nseed = 2\nstore = "{store}"\n[vertical]\nlabel_holder = "bank"\n'
                    f'id = "{consortium.schema_for("bank").id_column}"\nmodels = ["lr"]\n' + "".join(parties)
                    + "[vertical.lr]\nepochs = 2\n")
    result = runner.invoke(app, ["run", str(toml)])
    assert result.exit_code == 0, result.output
    run_id = Store.open(store).list_runs(1)[0].run_id
    return store, run_id, consortium


def test_vertical_applicants_from_a_file_and_one_unknown_to_a_partner(tmp_path: Path) -> None:
    store, run_id, consortium = _vertical_run(tmp_path)
    bank, payments = consortium.vertical["bank"], consortium.vertical["payments"]
    known_to_payments = set(map(str, payments.ids))
    ids = [str(i) for i in bank.ids[:8]]
    stranger = next(str(i) for i in bank.ids if str(i) not in known_to_payments)
    id_column = consortium.schema_for("bank").id_column
    applicants = tmp_path / "applicants.csv"  # the bank's file: ids only, no label
    applicants.write_text(f"{id_column}\n" + "\n".join([*ids, stranger]) + "\n")
    out = tmp_path / "scores.json"
    result = runner.invoke(app, ["score", "--run", run_id, "--data", str(applicants), "--out", str(out),
                                 "--store", store, "--chunk-rows", "5"])
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    assert [r["id"] for r in scored] == [*ids, stranger]
    assert all(0 < r["pd"] < 1 and any(x["contribution"] != 0 for x in r["reasons"]) for r in scored)
    assert "payments" in scored[-1]["notes"]["unknown_at"]  # only the bank learns it; the partner answered alike
    by_id = {r["id"]: r["pd"] for r in scored}
    new_applicants = tmp_path / "new.csv"  # the bank's own columns in the file: a new applicant scores too
    with open(tmp_path / "data" / "bank.csv", newline="") as handle:
        bank_rows = [r for r in csv.DictReader(handle)]
    label = consortium.schema_for("bank").label_column
    chosen = [{k: v for k, v in r.items() if k != label} for r in bank_rows if r[id_column] in ids[:3]]
    chosen.append({**chosen[0], id_column: "BR-NEW-0001"})
    with open(new_applicants, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
        writer.writeheader()
        writer.writerows(chosen)
    fresh = runner.invoke(app, ["score", "--run", run_id, "--data", str(new_applicants), "--out",
                                str(tmp_path / "new.json"), "--store", store])
    assert fresh.exit_code == 0, fresh.output
    new_scores = {r["id"]: r for r in json.loads((tmp_path / "new.json").read_text())}
    assert set(new_scores["BR-NEW-0001"]["notes"]["unknown_at"]) == {"payments", "delivery"}
    for r in chosen[:3]:  # a known applicant's file row equals its table row: the same PD
        assert new_scores[r[id_column]]["pd"] == pytest.approx(by_id[r[id_column]], abs=1e-9)
    not_a_customer = tmp_path / "stranger.csv"
    not_a_customer.write_text(f"{id_column}\n{ids[0]}\nBR00000000\n")
    refused = runner.invoke(app, ["score", "--run", run_id, "--data", str(not_a_customer), "--store", store])
    assert refused.exit_code == 2 and "stranger.csv" in refused.output and "row(s) 2" in refused.output
    from sampan.cli.vertical import score_applicants  # what positional `sampan score ID...` runs

    (again,) = score_applicants(Store.open(store), run_id, [ids[0]])
    assert again.probability_of_default == pytest.approx(by_id[ids[0]], abs=1e-9)


def test_the_decision_follows_the_models_threshold(trained: dict) -> None:
    entry = Store.open(trained["store"]).get_model("lr")
    meta = {**entry.meta, "threshold": 0.3, "decision": {"rule": "max_ks", "threshold": 0.3, "approve_if": "pd < 0.3"}}
    results = Scorer.from_registered(entry.arrays, meta, name="lr").score(trained["rows"][:50])
    assert {r.decision for r in results} <= {"approve", "decline"}
    assert all((r.decision == "decline") == (r.pd >= 0.3) for r in results)
    plain = Scorer.from_registered(entry.arrays, {k: v for k, v in entry.meta.items() if k != "threshold"}, name="lr")
    assert plain.score(trained["rows"][:2])[0].decision is None


def test_a_parquet_applicants_file_scores_like_the_csv(trained: dict, tmp_path: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(trained["applicants"]).slice(0, 30)  # typed columns (numbers, booleans, text)
    pq.write_table(table, tmp_path / "applicants.parquet")
    out = tmp_path / "p.json"
    result = _score(trained, "--model", "trees", "--data", str(tmp_path / "applicants.parquet"), "--out", str(out))
    assert result.exit_code == 0, result.output
    expected = load_scorer(Store.open(trained["store"]), "trees").score(trained["rows"][:30])
    assert [r["pd"] for r in json.loads(out.read_text())] == pytest.approx([r.pd for r in expected], abs=1e-12)


def test_the_banks_file_rows_are_filled_with_its_own_training_values(tmp_path: Path) -> None:
    from sampan.data.loaders import from_columns
    from sampan.data.missing import impute_locally
    from sampan.data.schema import ColumnSpec, TableSchema
    from sampan.vertical.capability import with_applicants

    schema = TableSchema(id="id", label="y", features=(ColumnSpec("a", "float", missing=["?"], impute="median"),
                                                       ColumnSpec("b", "float", missing=["?"], impute="native")))
    data = from_columns({"id": ["x1", "x2", "x3", "x4"], "y": [0, 1, 0, 1], "a": ["1", "?", "3", "10"],
                         "b": ["5", "6", "?", "8"]}, schema, "bank")
    path = tmp_path / "applicants.csv"
    path.write_text("id,a,b,requested\nnew1,?,?,5000\nx1,2,5,100\n")
    merged = with_applicants(data, str(path), schema, "bank")
    trained = impute_locally(data)
    assert list(merged.ids) == ["x1", "x2", "x3", "x4", "new1", "x1"] and list(merged.y[-2:]) == [-1, -1]
    assert np.isnan(merged.X[4]).all()  # the file's missing cells stay missing until the party fills them
    filled = impute_locally(merged, values=merged.fill_values)  # as the bank's party does (`vertical_party`)
    np.testing.assert_array_equal(filled.X[:4], trained.X)  # the training rows as training filled them
    assert filled.X[4, 0] == trained.fill_values[0] == 3.0  # median of the bank's own rows, applicants excluded
    assert np.isnan(filled.trees_X[4, 1]) and not np.isnan(filled.X).any()  # native: NaN for trees only
    ids_only = tmp_path / "ids.csv"
    ids_only.write_text("id\nx2\n")
    assert with_applicants(data, str(ids_only), schema, "bank") is data


def test_a_json_applicant_may_omit_a_field_training_imputed(trained: dict) -> None:
    store = Store.open(trained["store"])
    row = {k: v for k, v in trained["rows"][0].items() if k != IMPUTED}
    lr = load_scorer(store, "lr")
    assert lr.score([row])[0].pd == lr.score([{**row, IMPUTED: "?"}])[0].pd  # omitted = missing = imputed
    with pytest.raises(sampan.DataError, match="'years_in_business'.*no imputation value"):
        lr.score([{k: v for k, v in row.items() if k != "years_in_business"}])
