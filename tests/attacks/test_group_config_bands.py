"""Bad `[evaluation]` group settings are refused by the config, naming the field, before anything runs.

The finding it pins (issue 13 review, item 8):

R13-GRP-6: `EvaluationSection._bands_of_groups` tests ``b <= a`` between cut points, which is False for NaN, so
``group_bands.age = [nan]`` or ``[1.0, nan, 3.0]`` (TOML has ``nan`` and ``inf``) and ``[inf]`` pass; and bands on a
CATEGORY column pass too (run_config only asks bands of numeric ones). The run then trains to the end and fails at
`evaluate_groups`: with NaN as a `WireError` ("message meta must be plain JSON") naming no config field, with a
category as a `PartyError` from each bank ("unknown columns or bad cut points"). Expected: a `ConfigError` naming
``evaluation.group_bands.<column>`` before anything runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from sampan.config import parse_config
from sampan.errors import ConfigError

SCHEMA = {"id": "id", "label": "y", "features": [{"name": "sector", "kind": "category", "categories": ["a", "b"]},
                                                 "age", "x"]}


def _config(evaluation: dict[str, Any]) -> Any:
    return parse_config({"run": {"name": "fair", "rounds": 2, "seed": 4}, "schema": SCHEMA,
                         "parties": [{"name": "p", "path": "unused.csv"}], "evaluation": evaluation})


@pytest.mark.parametrize("evaluation", [
    {"groups": ["age"], "group_bands": {"age": [float("nan")]}},
    {"groups": ["age"], "group_bands": {"age": [1.0, float("nan"), 3.0]}},
    {"groups": ["age"], "group_bands": {"age": [float("inf")]}},
    {"groups": ["sector"], "group_bands": {"sector": [1.0]}},
], ids=["nan", "nan-inside", "inf", "category-banded"])
def test_bad_group_bands_are_refused_by_the_config(evaluation: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="group_bands"):
        _config(evaluation)
