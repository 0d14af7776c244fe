"""Run configuration: the README's example is valid, typos and contradictions are named."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from sampan.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_config_is_valid() -> None:
    block = re.search(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README lost its TOML example"
    config = parse_config(tomllib.loads(block.group(1)), source="README")
    assert [p.name for p in config.parties] == ["bank_a", "bank_b"]
    assert config.schema_ is not None and config.schema_.features[2].kind == "category"


def test_shipped_examples_are_valid() -> None:
    from sampan.vertical.config import is_vertical_config, load_vertical_config

    for path in (ROOT / "examples").glob("*.toml"):  # one dialect: load_config reads every workflow
        named = (tomllib.loads(path.read_text(encoding="utf-8")).get("run") or {}).get("workflow")
        assert load_config(path).workflow == (named or ("vertical" if is_vertical_config(path) else "horizontal"))
        if is_vertical_config(path):
            assert load_vertical_config(path) == load_config(path)


@pytest.mark.parametrize("data,needle", [
    ({"source": {"kind": "consortium"}, "run": {"rounds": 0}}, "run.rounds"),
    ({"source": {"kind": "consortium"}, "strategy": {"name": "fedsgd"}}, "strategy.name"),
    ({"source": {"kind": "consortium"}, "parties": [{"name": "a", "path": "a.csv"}]}, "not both"),
    ({"parties": [{"name": "a", "path": "a.csv"}]}, "[schema]"),
    ({}, "either [[parties]]"),
    ({"schema": {"id": "i", "label": "y", "features": ["x"]},
      "parties": [{"name": "a", "path": "a.csv"}, {"name": "a", "path": "b.csv"}]}, "repeated: ['a']"),
])
def test_bad_configs_are_named(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="t.toml")
    assert needle in str(info.value) and "t.toml" in str(info.value)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "run.toml"
    path.write_text('[schema]\nid = "i"\nlabel = "y"\nfeatures = ["x"]\n[[parties]]\nname = "a"\npath = "data/a.csv"\n')
    assert load_config(path).parties[0].path == str(tmp_path / "cfg" / "data" / "a.csv")
    path.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_readme_privacy_example_is_valid() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    privacy = next(b for b in blocks if "[privacy]" in b)
    config = parse_config({**tomllib.loads(privacy), "source": {"kind": "consortium"}}, source="README")
    assert config.privacy is not None and config.privacy.dp1 and config.privacy.dp2 and config.privacy.dp3


# --- one run config for every workflow (issue 12, item 4) ------------------------------------------------
SCHEMA = {"id": "id", "label": "y", "features": ["a", "b", {"name": "s", "kind": "category", "categories": ["x", "z"]}]}
VERTICAL = {
    "run": {"name": "v", "seed": 1},
    "schema": SCHEMA,
    "vertical": {"label_holder": "bank", "models": ["lr", "gbdt"], "lr": {"learning_rate": 0.3},
                 "gbdt": {"n_trees": 7}, "scorecard": {"dp_epsilon": 1.0}},
    "parties": [{"name": "bank", "path": "/d/bank.csv", "features": ["a"]},
                {"name": "shop", "path": "/d/shop.csv", "features": ["b", "s"]}],
}


def _without_paths(data: dict) -> dict:
    return {**data, "parties": [{k: v for k, v in p.items() if k not in ("path", "format")} for p in data["parties"]]}


def test_every_example_loads_and_a_simulation_becomes_a_deployment_by_dropping_paths() -> None:
    from sampan.config import read_run_toml
    from sampan.deploy.config import load_run_spec, parse_run_spec

    for path in sorted((ROOT / "examples").glob("*.toml")):
        config = load_config(path)
        data = read_run_toml(path)
        if config.parties:
            spec = parse_run_spec({**_without_paths(data), "deploy": {"dataset": "loans"}}, source=str(path))
            assert spec.config.workflow == config.workflow
            assert spec.config.vertical == config.vertical and spec.config.schema_ == config.schema_
            assert spec.deploy.parties == config.party_names
            with pytest.raises(ConfigError, match="remove path/format"):
                parse_run_spec(data, source=str(path))
    for path in sorted((ROOT / "examples" / "deploy").glob("run-*.toml")):
        spec = load_run_spec(path)
        assert parse_run_spec(spec.stored).stored == spec.stored  # what the store keeps parses back (resume)


def test_workflow_is_inferred_and_an_explicit_one_is_authoritative() -> None:
    assert parse_config({"source": {"kind": "consortium"}}).workflow == "horizontal"
    assert parse_config(VERTICAL).workflow == "vertical"
    config = parse_config({"source": {"kind": "consortium"}, "run": {"workflow": "evaluation"}})
    assert config.workflow == "evaluation" and config.to_dict()["run"]["workflow"] == "evaluation"
    with pytest.raises(ConfigError, match=r"\[vertical\] is set but run.workflow is 'horizontal'"):
        parse_config({**VERTICAL, "run": {"workflow": "horizontal"}})
    with pytest.raises(ConfigError, match=r"needs a \[synthesis\] section"):
        parse_config({"source": {"kind": "consortium"}, "run": {"workflow": "synthesis"}})


def test_vertical_section_is_typed_and_gives_the_lr_and_gbdt_configs() -> None:
    from sampan.models.gbdt import GBDTParams
    from sampan.vertical.training import VerticalLRConfig

    config = parse_config(VERTICAL)
    v = config.vertical
    assert v is not None and v.models == ("lr", "gbdt")
    lr = v.to_lr_config()
    assert isinstance(lr, VerticalLRConfig) and lr.learning_rate == 0.3 and lr.shared_weights
    defaults = VerticalLRConfig()
    plain = parse_config({**VERTICAL, "vertical": {"label_holder": "bank"}}).vertical
    assert plain is not None and plain.to_lr_config() == defaults  # run and submit share these defaults
    assert v.gbdt_params() == GBDTParams(n_trees=7) and v.scorecard.dp_epsilon == 1.0
    assert config.party_schema("bank").label == "y" and config.party_schema("bank").feature_names() == ["a"]
    shop = config.party_schema("shop")
    assert shop.label is None and shop.feature_names() == ["b", "s=x", "s=z"] and shop.id == "id"


@pytest.mark.parametrize("change,needle", [
    ({"vertical": {"label_holder": "bank", "lr": {"learning_rat": 0.1}}}, "vertical.lr.learning_rat"),
    ({"vertical": {"label_holder": "bank", "gbdt": {"n_bins": 1}}}, "vertical.gbdt.n_bins"),
    ({"vertical": {"label_holder": "bank", "models": ["gbdt"]}}, "vertical.models"),
    ({"vertical": {"label_holder": "nobody"}}, "label_holder 'nobody'"),
    ({"vertical": {"label_holder": "bank", "lr": {"batch_size": 64, "shared_weights": False, "epochs": 100}}},
     "vertical.lr.shared_weights"),
    ({"parties": [{"name": "bank", "path": "b.csv", "features": ["a"]},
                  {"name": "shop", "path": "s.csv", "features": ["a", "b"]}]}, "parties.1.features"),
    ({"parties": [{"name": "bank", "path": "b.csv", "features": ["a"]},
                  {"name": "shop", "path": "s.csv", "features": ["nope"]}]}, "['nope']"),
    ({"parties": [{"name": "bank", "path": "b.csv", "features": ["a"]}, {"name": "shop", "path": "s.csv"}]},
     "parties.1.features"),
    ({"schema": {**SCHEMA, "label": None}}, "schema.label"),
    ({"privacy": {"epsilon": 1.0, "dp2": {}}}, "horizontal run's"),
])
def test_vertical_errors_name_the_field(change: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**VERTICAL, **change}, source="v.toml")
    assert needle in str(info.value) and str(info.value).startswith("v.toml: ")


def test_model_kind_gbdt_with_its_params() -> None:
    from sampan.models.gbdt import GBDTParams

    config = parse_config({"source": {"kind": "consortium"},
                           "model": {"kind": "gbdt", "n_trees": 20, "max_depth": 3, "l2": 2.0}})
    assert config.model.gbdt_params() == GBDTParams(n_trees=20, max_depth=3, l2=2.0)
    assert parse_config(config.to_dict()) == config
    logistic = parse_config({"source": {"kind": "consortium"}})
    assert "n_trees" not in logistic.to_dict()["model"] and parse_config(logistic.to_dict()) == logistic
    for model, needle in [({"kind": "mlp", "n_trees": 5}, "model.n_trees applies to kind = 'gbdt'"),
                          ({"kind": "gbdt", "learning_rate": 2.0}, "model.learning_rate"),
                          ({"kind": "forest"}, "model.kind")]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            parse_config({"source": {"kind": "consortium"}, "model": model})


def test_scoring_and_synthesis_sections() -> None:
    from sampan.synth.schema import SynthSchema
    from sampan.synth.settings import synth_config_of

    scoring = parse_config({**VERTICAL, "run": {"workflow": "scoring"},
                            "scoring": {"model": "run-123", "applicants": ["BR1", "BR2"]}})
    assert scoring.workflow == "scoring" and scoring.scoring is not None
    assert scoring.scoring.applicants == ("BR1", "BR2")
    with pytest.raises(ConfigError, match="scoring.applicants"):
        parse_config({"source": {"kind": "consortium"}, "scoring": {"model": "m", "applicants": []}})
    schema = {
        "id": "id",
        "label": "y",
        "features": [{"name": "a", "bounds": [0, 10]}, {"name": "n", "kind": "int", "bounds": [1, 99]}, "c"],
    }
    synth = parse_config(
        {"schema": schema, "parties": [{"name": "b1", "path": "b1.csv"}], "synthesis": {"epsilon": 2.0, "n_rows": 500}}
    )
    assert synth.workflow == "synthesis" and synth.synthesis is not None
    assert synth_config_of(synth.synthesis).epsilon == 2.0
    assert synth.synthesis.secure_sum
    assert synth.schema_ is not None and synth.schema_.features[0].bounds == (0.0, 10.0)
    with pytest.raises(ValueError, match="'c'.*needs public 'bounds'"):
        SynthSchema.from_table(synth.schema_)
    domain = SynthSchema.from_table(synth.schema_.model_copy(update={"features": synth.schema_.features[:2]}))
    assert domain.names == ["y", "a", "n"] and domain.column("n").integer and domain.label == "y"
    with pytest.raises(ConfigError, match="synthesis.epsilon"):
        parse_config({"source": {"kind": "consortium"}, "synthesis": {"epsilon": 0}})


def test_deployment_refuses_paths_and_sources_and_keeps_the_earlier_submit_dialect() -> None:
    from sampan.deploy.config import parse_run_spec

    spec = parse_run_spec({**_without_paths(VERTICAL), "deploy": {"dataset": "d"}})
    assert spec.vertical is spec.config.vertical and spec.deploy.label_holder == "bank"
    assert spec.deploy.workflow == "vertical" and spec.deploy.parties == ["bank", "shop"]
    with pytest.raises(ConfigError, match=r"remove path/format of parties \['bank', 'shop'\]"):
        parse_run_spec(VERTICAL)
    with pytest.raises(ConfigError, match="no data binding"):
        parse_run_spec({"source": {"kind": "consortium"}})
    with pytest.raises(ConfigError, match="differ from the"):
        parse_run_spec({**_without_paths(VERTICAL), "deploy": {"parties": ["bank", "other"]}})
    earlier = parse_run_spec(
        {
            "deploy": {"workflow": "vertical", "label_holder": "bank", "dataset": "d"},
            "vertical": {"epochs": 3, "learning_rate": 0.5},
        }
    )  # a stored run of the earlier dialect
    assert earlier.config.workflow == "vertical" and earlier.vertical is not None
    assert earlier.vertical.lr.epochs == 3 and earlier.vertical.epochs == 3 and earlier.vertical.learning_rate == 0.5
    with pytest.raises(ConfigError, match="deploy.workflow 'vertical' differs from run.workflow"):
        parse_run_spec({"run": {"workflow": "horizontal"}, "deploy": {"workflow": "vertical"}})


def test_the_earlier_vertical_run_dialect_is_converted(tmp_path: Path) -> None:
    from sampan.vertical.config import load_vertical_config

    path = tmp_path / "old.toml"
    path.write_text(
        '[run]\nname = "old"\n[vertical]\nlabel_holder = "bank"\nid = "id"\n'
        '[[vertical.parties]]\nname = "bank"\npath = "b.csv"\nlabel = "y"\nfeatures = ["a"]\n'
        '[[vertical.parties]]\nname = "shop"\npath = "s.csv"\nfeatures = ["s"]\n'
        'categories = { s = ["x", "z"] }\n[vertical.lr]\nepochs = 4\n'
    )
    config = load_vertical_config(path)
    assert config.workflow == "vertical" and config.run.seed == 0 and config.vertical is not None
    assert config.vertical.lr.epochs == 4 and config.parties[1].path == str(tmp_path / "s.csv")
    assert config.party_schema("shop").feature_names() == ["s=x", "s=z"]


def test_one_table_schema_class() -> None:
    import sampan.config as config_module
    import sampan.data as data_module
    from sampan.data.schema import ColumnSpec, TableSchema
    from sampan.deploy import config as deploy_config

    assert config_module.SchemaSection is TableSchema and config_module.ColumnSection is ColumnSpec
    assert data_module.TableSchema is TableSchema and data_module.ColumnSpec is ColumnSpec
    assert deploy_config.DataSchema is TableSchema
    assert deploy_config.DatasetSection.model_fields["schema_"].annotation is TableSchema
    assert config_module.RunConfig.model_fields["schema_"].annotation == TableSchema | None
    # the earlier dataclass's spellings still build the same object
    old = TableSchema("id", "y", (ColumnSpec("a"), ColumnSpec("s", "category", ["x"])))
    new = TableSchema.model_validate(
        {"id": "id", "label": "y", "features": ["a", {"name": "s", "kind": "category", "categories": ["x"]}]}
    )
    assert old == new and old.id_column == "id" and old.label_column == "y" and hash(old) == hash(new)
    assert TableSchema(id_column="id", label_column=None, features=()).label is None
    with pytest.raises(ValueError, match="bounds are for float and int"):
        ColumnSpec("s", "category", ["x"], bounds=(0, 1))


def test_errors_name_the_file_and_are_never_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[run]\nrounds = 0\n[source]\nkind = "consortium"\n[model]\nkind = "mlp"\nhiden = [3]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(str(path)) and "run.rounds" in text and "model.hiden" in text
    assert "Traceback" not in text and "pydantic" not in text
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_to_dict_round_trips_every_workflow() -> None:
    configs = [
        parse_config(VERTICAL),
        parse_config({**VERTICAL, "run": {"workflow": "scoring"}, "scoring": {"model": "m", "applicants": ["a"]}}),
        parse_config(
            {
                "source": {"kind": "consortium"},
                "model": {"kind": "mlp", "hidden": [8, 4]},
                "privacy": {"epsilon": 2.0, "dp2": {}},
                "data": {"standardize": False},
            }
        ),
        parse_config({"source": {"kind": "consortium"}, "synthesis": {"epsilon": 1.0, "tree": False}}),
    ]
    for config in configs:
        assert parse_config(config.to_dict()) == config
    promoted = parse_config(_without_paths(VERTICAL), deployment=True)  # no [deploy] needed: defaults
    assert parse_config(promoted.to_dict(), deployment=True) == promoted


def test_evaluation_section_names_a_registered_model_and_infers_its_workflow() -> None:
    evaluation = parse_config({"source": {"kind": "consortium"}, "evaluation": {"model": "pd-model"}})
    assert evaluation.workflow == "evaluation" and evaluation.evaluation is not None
    assert (evaluation.evaluation.model, evaluation.evaluation.version, evaluation.evaluation.bins) == (
        "pd-model",
        None,
        None,
    )
    pinned = parse_config(
        {
            "schema": SCHEMA,
            "parties": [{"name": "b1", "path": "b1.csv"}],
            "evaluation": {"model": "pd-model", "version": 3, "bins": 50},
        }
    )
    assert pinned.evaluation is not None and (pinned.evaluation.version, pinned.evaluation.bins) == (3, 50)
    assert parse_config(pinned.to_dict()) == pinned
    deployed = parse_config(
        {"parties": [{"name": "b1"}, {"name": "b2"}], "evaluation": {"model": "m"}}, deployment=True
    )
    assert deployed.workflow == "evaluation"
    for data, needle in [
        ({"evaluation": {"model": "m"}}, "give either [[parties]]"),  # a data binding, as for a horizontal run
        ({"source": {"kind": "consortium"}, "evaluation": {"model": ""}}, "evaluation.model"),
        ({"source": {"kind": "consortium"}, "evaluation": {"model": "m", "version": 0}}, "evaluation.version"),
        ({"source": {"kind": "consortium"}, "evaluation": {"model": "m", "bins": 2001}}, "evaluation.bins"),
        ({"source": {"kind": "consortium"}, "evaluation": {"model": "m", "typo": 1}}, "evaluation.typo"),
        (
            {"source": {"kind": "consortium"}, "run": {"workflow": "horizontal"}, "evaluation": {"model": "m"}},
            "[evaluation] is set but run.workflow is 'horizontal'",
        ),
        (
            {
                "source": {"kind": "consortium"},
                "evaluation": {"model": "m", "bins": 50},
                "privacy": {"epsilon": 2.0, "dp2": {}},
                "data": {"standardize": False},
            },
            "exactly 100",
        ),
        (
            {"source": {"kind": "consortium"}, "evaluation": {"model": "m"}, "secure_aggregation": {}},
            "remove [secure_aggregation]",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            parse_config(data)


def test_scoring_kind_chooses_the_model_and_reaches_the_scoring_job() -> None:
    from sampan.vertical.capability import scoring_job_of

    def scoring(**extra: object) -> object:
        return parse_config(
            {**VERTICAL, "run": {"workflow": "scoring"}, "scoring": {"model": "run-1", "applicants": ["a"], **extra}}
        )

    assert scoring().scoring.kind == "lr" and scoring_job_of(scoring()).kind == "lr"  # type: ignore[attr-defined]
    for kind in ("scorecard", "gbdt"):
        config = scoring(kind=kind)
        assert scoring_job_of(config).kind == kind and parse_config(config.to_dict()) == config  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="scoring.kind"):
        scoring(kind="forest")
