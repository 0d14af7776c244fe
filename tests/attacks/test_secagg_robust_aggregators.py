"""Finding 22 (part): robust aggregators cannot run under secure aggregation.

A median, trimmed mean or Krum needs every individual update, which secure aggregation hides; running
one "under SecAgg" would either silently fall back to the mean (a false robustness claim) or need the
individual updates (a false privacy claim). Every path refuses the combination with a clear error: the
simulation config, a run submitted to a deployed coordinator, and the workflow itself for a config
built without validation. Federated synthesis has no aggregator choice (it sums noisy counts).
Client-side clipping (DP3) is what bounds each update under SecAgg.
"""

from __future__ import annotations

from typing import Any

import pytest

from sampan.config import ConfigError, parse_config
from sampan.deploy.config import parse_run_spec
from sampan.horizontal.workflow import FederationError, HorizontalWorkflow

ROBUST = ["median", "trimmed_mean", "krum"]
BASE: dict[str, Any] = {"run": {"name": "robust", "rounds": 1, "seed": 1},
                        "schema": {"id": "id", "label": "y", "features": ["a"]},
                        "parties": [{"name": "p", "path": "p.csv"}]}


@pytest.mark.parametrize("aggregator", ROBUST)
def test_the_simulation_config_refuses_robust_aggregation_under_secagg(aggregator: str) -> None:
    with pytest.raises(ConfigError, match="robust aggregators need them"):
        parse_config({**BASE, "strategy": {"aggregator": aggregator}, "secure_aggregation": {}})
    assert parse_config({**BASE, "strategy": {"aggregator": aggregator}}).strategy.aggregator == aggregator


@pytest.mark.parametrize("aggregator", ROBUST)
def test_a_deployed_run_spec_refuses_it(aggregator: str) -> None:
    spec = {"run": {"name": "robust", "rounds": 1}, "deploy": {"dataset": "loans"},
            "strategy": {"aggregator": aggregator}, "secure_aggregation": {}}
    with pytest.raises(ConfigError, match="robust aggregators need them"):
        parse_run_spec(spec)


@pytest.mark.parametrize("aggregator", ROBUST)
def test_the_workflow_refuses_an_unvalidated_config(aggregator: str) -> None:
    valid = parse_config({**BASE, "secure_aggregation": {}})
    forged = valid.model_copy(update={"strategy": valid.strategy.model_copy(update={"aggregator": aggregator})})
    with pytest.raises(FederationError, match=f"{aggregator!r} cannot run under secure_aggregation"):
        HorizontalWorkflow(forged)
