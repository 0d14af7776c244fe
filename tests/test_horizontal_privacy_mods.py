"""Privacy is composed, not sprinkled: horizontal handlers and the workflow call no noise function and read no
privacy flag; the capability composes the privacy mods onto every party app (issue 12, item 3)."""

from __future__ import annotations

import inspect
import re

import numpy as np

import sampan.horizontal.evaluation_stage as evaluation_stage_module
import sampan.horizontal.party as party_module
import sampan.horizontal.secure_rounds as secure_rounds_module
import sampan.horizontal.setup_stage as setup_stage_module
import sampan.horizontal.workflow as workflow_module
from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.wire import Message

NOISE = re.compile(r"GaussianMechanism|dp_sgd_train|party_release|secure_generator|\.release\(|dp1_noise")
FLAGS = re.compile(r"""privacy\.enabled|["'](dp1|dp2|dp3|dp_count|secagg)["']\s+(not\s+)?in\b""")


def _code(module: object) -> str:
    source = inspect.getsource(module)  # type: ignore[arg-type]
    return source[source.index('"""', 3) + 3:]  # after the module docstring (which describes the protections)


def test_protocol_code_calls_no_noise_function_and_reads_no_privacy_flag() -> None:
    for module in (party_module, workflow_module, secure_rounds_module, setup_stage_module,
                   evaluation_stage_module):  # the workflow and its stage mixins
        code = _code(module)
        assert not NOISE.search(code), (module.__name__, NOISE.search(code))
        assert not FLAGS.search(code), (module.__name__, FLAGS.search(code))


def _table(n: int) -> PartyData:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 2))
    return PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object), X=X,
                     y=(X[:, 0] > 0).astype(np.int8), feature_names=["a", "b"])


def test_the_capability_composes_the_privacy_mods_onto_the_party_app() -> None:
    app = HORIZONTAL.party_app(PartySetup("bank", (_table(500), _table(50)), {"workflow": "horizontal"}))
    assert len(app.mods) >= 6
    exact = app.handle(Message("run", 0, "coordinator", "bank", "describe"))
    assert exact.meta["n_train"] == 500 and exact.meta["positive_rate"] is not None
    # the same handler behind the DP1 mod: the count is released once through the Gaussian, no positive rate
    released = [app.handle(Message(f"run-{i}", 0, "coordinator", "bank", "describe",
                                   meta={"dp_count": {"noise_multiplier": 50.0}})) for i in range(8)]
    assert all("positive_rate" not in r.meta for r in released)
    assert len({r.meta["n_train"] for r in released}) > 1  # noised per run
    again = app.handle(
        Message("run-0", 0, "coordinator", "bank", "describe", meta={"dp_count": {"noise_multiplier": 50.0}})
    )
    assert again.meta["n_train"] == released[0].meta["n_train"]  # one release per run
