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

    for path in (ROOT / "examples").glob("*.toml"):
        (load_vertical_config if is_vertical_config(path) else load_config)(path)


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
