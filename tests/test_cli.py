"""The CLI as a user meets it: demo, run from TOML with CSV/Parquet parties, runs list/show/report, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sampan.cli import app
from sampan.data import make_sme_consortium

runner = CliRunner()


def _write_parties(folder: Path) -> tuple[dict[str, Path], list[str]]:
    consortium = make_sme_consortium(n_smes=3000, seed=4)
    paths = consortium.write_csv(folder)
    schema = consortium.schema_for(next(iter(paths)))
    return paths, [c.name for c in schema.features]


def _toml(tmp_path: Path, paths: dict[str, Path], store: str, extra: str = "") -> Path:
    consortium = make_sme_consortium(n_smes=300, seed=4)
    schema = consortium.schema_for(next(iter(paths)))
    features = ", ".join(
        f'{{ name = "{c.name}", kind = "{c.kind}"'
        + (
            f", categories = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in c.categories)}]"
            if c.categories
            else ""
        )
        + " }"
        for c in schema.features
    )
    parties = "".join(f'[[parties]]\nname = "{name}"\npath = "{path.name}"\n' for name, path in paths.items())
    config = tmp_path / "run.toml"
    config.write_text(
        f'[run]\nname = "cli-test"\nrounds = 3\nseed = 1\nstore = "{store}"\nreport_dir = "{tmp_path / "reports"}"\n'
        f'[schema]\nid = "{schema.id_column}"\nlabel = "{schema.label_column}"\nfeatures = [{features}]\n'
        f"{parties}{extra}"
    )
    return config


def test_help_for_every_command_is_useful() -> None:
    for args, phrase in (
        (["--help"], "demo"),
        (["demo", "--help"], "three"),
        (["run", "--help"], "--resume"),
        (["runs", "--help"], "list"),
        (["runs", "report", "--help"], "HTML"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and phrase in result.output, (args, result.output)


def test_run_from_csv_parties_then_inspect(tmp_path: Path) -> None:
    paths, _ = _write_parties(tmp_path)
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    result = runner.invoke(app, ["run", str(_toml(tmp_path, paths, store))])
    assert result.exit_code == 0, result.output
    assert "completed" in result.output and "Report:" in result.output
    listing = runner.invoke(app, ["runs", "list", "--store", store])
    assert "cli-test" in listing.output and "completed" in listing.output
    run_id = listing.output.split("│")[1].strip() if "│" in listing.output else None
    from sampan.runtime.store import Store

    run_id = Store.open(store).list_runs()[0].run_id
    shown = runner.invoke(app, ["runs", "show", run_id, "--store", store])
    assert shown.exit_code == 0 and "intact" in shown.output and "3/3" in shown.output
    report = runner.invoke(app, ["runs", "report", run_id, "--store", store, "--out", str(tmp_path / "again")])
    assert report.exit_code == 0 and (tmp_path / "again" / f"{run_id}.html").exists()


def test_parquet_party_works(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    from pyarrow import csv as pacsv
    from pyarrow import parquet as pq

    paths, _ = _write_parties(tmp_path)
    name = next(iter(paths))
    parquet = paths[name].with_suffix(".parquet")
    pq.write_table(
        pacsv.read_csv(paths[name], convert_options=pacsv.ConvertOptions(column_types={"br_number": pa.string()})),
        parquet,
    )
    paths[name] = parquet
    result = runner.invoke(app, ["run", str(_toml(tmp_path, paths, f"sqlite:///{tmp_path / 'r.db'}"))])
    assert result.exit_code == 0, result.output


def test_bad_party_data_is_named_before_training(tmp_path: Path) -> None:
    paths, features = _write_parties(tmp_path)
    victim = sorted(paths)[1]
    rows = list(csv.DictReader(paths[victim].open()))
    column = features[0]
    for i in (2, 5, 11):
        rows[i][column] = ""
    with paths[victim].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    result = runner.invoke(app, ["run", str(_toml(tmp_path, paths, store))])
    assert result.exit_code == 2
    assert f"party '{victim}'" in result.output and column in result.output and "3 missing" in result.output
    assert "Traceback" not in result.output


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[training]\nlearning_rat = 0.1\n[source]\nkind = "consortium"\n')
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "training.learning_rat" in result.output
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    neither = runner.invoke(app, ["run"])
    assert neither.exit_code == 2 and "--resume" in neither.output
    unknown = runner.invoke(app, ["run", "--resume", "nope", "--store", f"sqlite:///{tmp_path / 'x.db'}"])
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.output


def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--rounds", "3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "federated (Sampan)" in result.output and "pooled data" in result.output
    reports = list((tmp_path / "sampan-reports").glob("*.html"))
    assert len(reports) == 1 and "bank_" in reports[0].read_text()
    assert (tmp_path / "sampan-runs" / "sampan.db").exists()


def test_demo_with_epsilon_spends_within_budget_and_audit_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--rounds", "3", "--seed", "2", "--epsilon", "1"])
    assert result.exit_code == 0, result.output
    assert "Privacy spent per bank" in result.output
    import json

    [receipt_path] = list((tmp_path / "sampan-reports").glob("*.receipt.json"))
    receipt = json.loads(receipt_path.read_text())
    assert receipt["differential_privacy"] and receipt["noise_multipliers"]["DP2"] > 0
    assert all(p["epsilon_spent"] <= 1.0 for p in receipt["parties"].values())
    assert all(
        "DP2: DP-SGD" in s["protection"]
        for p in receipt["parties"].values()
        for s in p["sent"]
        if s["kind"] == "fit_result"
    )
    run_id = receipt["run_id"]
    audited = runner.invoke(app, ["audit", run_id, "--shadows", "4"])
    assert audited.exit_code == 0, audited.output
    assert "lira_online" in audited.output and "claimed" in audited.output
    receipt = json.loads(receipt_path.read_text())
    assert receipt["membership_audit"]["target"]["claimed_epsilon"] <= 1.0


def test_regenerated_report_keeps_the_demo_comparisons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["demo", "--rounds", "2", "--seed", "5"]).exit_code == 0
    [report] = list((tmp_path / "sampan-reports").glob("*.html"))
    run_id = report.stem
    again = runner.invoke(app, ["runs", "report", run_id, "--out", str(tmp_path / "again")])
    assert again.exit_code == 0
    html = (tmp_path / "again" / f"{run_id}.html").read_text()
    assert "pooled data (simulation only)" in html and "Each party alone vs the consortium" in html
    assert "Privacy receipt" in html and (tmp_path / "again" / f"{run_id}.receipt.json").exists()


def test_vertical_demo_then_score_an_application(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["demo", "--vertical", "--seed", "5"])
    assert result.exit_code == 0, result.output
    for model in ("bank alone (LR, own columns)", "vertical LR (secure)", "vertical scorecard", "vertical GBDT"):
        assert model in result.output
    assert "Gain from the partners' data (secure vertical LR over the bank's own LR): AUC +" in result.output
    reports = list((tmp_path / "sampan-reports").glob("*.html"))
    assert len(reports) == 1
    html = reports[0].read_text()
    assert "Entity alignment (PSI)" in html and "What each party learned" in html
    assert "Model comparison" in html and "Scorecard (600 points" in html and "base points" in html
    assert "Stability index (PSI): not computed" in html  # same population by construction: omitted, with why
    applicant = result.output.split("sampan score ")[1].split()[0]
    scored = runner.invoke(app, ["score", applicant])
    assert scored.exit_code == 0, scored.output
    assert applicant in scored.output and "joint scoring itself" in scored.output
    unknown = runner.invoke(app, ["score", "BR-NOT-A-CUSTOMER"])
    assert unknown.exit_code == 2 and "not in the bank's table" in unknown.output


def _vertical_toml(tmp_path: Path, extra_bank: str = "") -> Path:
    consortium = make_sme_consortium(n_smes=3000, seed=8)
    paths = consortium.write_csv(tmp_path / "data", view="vertical")
    parties = []
    for name, path in paths.items():
        schema = consortium.schema_for(name)
        names = [f'"{c.name}"' for c in schema.features]
        cats = ", ".join(
            f"{c.name} = [{', '.join(chr(34) + x + chr(34) for x in c.categories)}]"
            for c in schema.features
            if c.categories
        )
        label = f'label = "{schema.label_column}"\n' if name == "bank" else ""
        parties.append(
            f'[[vertical.parties]]\nname = "{name}"\npath = "data/{path.name}"\n{label}'
            f"features = [{', '.join(names)}]\ncategories = {{ {cats} }}\n{extra_bank if name == 'bank' else ''}"
        )
    schema = consortium.schema_for("bank")
    toml = tmp_path / "vertical.toml"
    toml.write_text(
        f'[run]\nname = "v-cli"\nseed = 2\nstore = "sqlite:///{tmp_path / "runs.db"}"\n'
        f'report_dir = "{tmp_path / "reports"}"\n'
        f'[vertical]\nlabel_holder = "bank"\nid = "{schema.id_column}"\nmodels = ["lr", "gbdt"]\n'
        + "".join(parties)
        + "[vertical.lr]\nepochs = 3\n[vertical.gbdt]\nn_trees = 5\nmax_depth = 2\n"
    )
    return toml


def test_sampan_run_with_a_vertical_config_then_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    toml = _vertical_toml(tmp_path)
    result = runner.invoke(app, ["run", str(toml)])
    assert result.exit_code == 0, result.output
    assert "vertical LR (secure)" in result.output and "vertical GBDT" in result.output
    applicant = next(iter(make_sme_consortium(n_smes=3000, seed=8).vertical["bank"].ids))
    scored = runner.invoke(app, ["score", str(applicant), "--store", f"sqlite:///{tmp_path / 'runs.db'}"])
    assert scored.exit_code == 0, scored.output
    assert str(applicant) in scored.output
    trees = runner.invoke(
        app, ["score", str(applicant), "--model", "gbdt", "--store", f"sqlite:///{tmp_path / 'runs.db'}"]
    )
    assert trees.exit_code == 0, trees.output
    assert str(applicant) in trees.output and "joint scoring itself" in trees.output


def test_vertical_config_errors_name_the_field(tmp_path: Path) -> None:
    bad = _vertical_toml(tmp_path, extra_bank="")
    text = bad.read_text().replace('label_holder = "bank"', 'label_holder = "nobody"')
    bad.write_text(text)
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "label_holder 'nobody' is not one of the parties" in result.output
    bad.write_text(
        text.replace('label_holder = "nobody"', 'label_holder = "bank"').replace("n_trees = 5", "n_trees = 0")
    )
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "vertical.gbdt.n_trees" in result.output


# --- one error path, --version, a fast --help (issue 12, item 6) -----------------------------------------


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in output, output
    return lines[0]


def test_an_exceeded_budget_is_one_line_and_exit_4(tmp_path: Path) -> None:
    """Was a 50-line traceback: BudgetExceeded from the ledger before the first round."""
    paths, _ = _write_parties(tmp_path)
    config = _toml(
        tmp_path,
        paths,
        f"sqlite:///{tmp_path / 'runs.db'}",
        "[data]\nstandardize = false\n[privacy]\nepsilon = 0.05\ndelta = 1e-5\n"
        "[privacy.dp2]\nnoise_multiplier = 0.5\nmax_grad_norm = 1.0\n",
    )
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 4, result.output
    line = _one_error_line(result.output)
    assert "party '" in line and "budget" in line


def test_a_category_column_without_categories_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Was a 50-line traceback; now the config names the column before any party loads data."""
    import re

    paths, _ = _write_parties(tmp_path)
    config = _toml(tmp_path, paths, f"sqlite:///{tmp_path / 'runs.db'}")
    config.write_text(re.sub(r", categories = \[[^\]]*\]", "", config.read_text(), count=1))
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 2, result.output
    assert "'sector'" in _one_error_line(result.output) and "categories" in result.output


def test_version() -> None:
    import sampan

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sampan {sampan.__version__}"


HEAVY = (
    "numpy",
    "pydantic",
    "sqlalchemy",
    "grpc",
    "pyarrow",
    "pandas",
    "cryptography",
    "dp_accounting",
    "scipy",
    "sampan.config",
    "sampan.runtime",
    "sampan.data",
    "sampan.models",
)


def test_help_imports_no_heavy_module() -> None:
    """`sampan --help` lists every command from stored lines: no numpy, pydantic, sqlalchemy, grpc ..."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom sampan.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\nassert result.exit_code == 0, result.output\n"
        "assert 'synth' in result.output and 'submit' in result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"`sampan --help` imported {out.stdout.strip()}"


def test_stored_help_lines_match_the_commands() -> None:
    """The root --help shows stored lines (so it imports nothing): they must say what each command says."""
    from sampan.cli import SampanGroup
    from sampan.cli.lazy import load

    for name, entry in SampanGroup.lazy_commands.items():
        command = load(entry, name)
        own = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
        assert own.startswith(entry.help.rstrip(".")), (name, own, entry.help)  # the same line (or its start)
        assert runner.invoke(app, [name, "--help"]).exit_code == 0, name


def test_default_store_url_in_help_is_the_stores() -> None:
    from sampan.cli.run import DEFAULT_STORE_URL
    from sampan.runtime.store import DEFAULT_STORE_URL as STORE_DEFAULT

    assert DEFAULT_STORE_URL == STORE_DEFAULT
