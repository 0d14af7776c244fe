"""Review non-finding (issue 12): select_tree baselines are checked before they steer a choice on the records.

A baseline is public (post-processing of earlier noisy sums), so the score's sensitivity holds for any
fixed table; still, a coordinator's baseline that is negative, does not sum to 1, has the wrong shape or
leaves pairs out is refused on its own content (before any charge or record), the same on every table.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.synth import protocol
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.encoders import CategoryGroups
from sampan.synth.party import synthesis_party_app
from sampan.synth.workflow import simulated_setups
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

A, B = "has_guarantee", "sector"


def _select(baselines: dict) -> tuple[str, int]:
    table = next(iter(consortium_tables(300, seed=17).values()))
    setups = simulated_setups({"bank": table}, epsilon=5.0, delta=1e-5, secure=False, schema=SME_SYNTH_SCHEMA)
    transport = InProcessTransport({"bank": synthesis_party_app(setups["bank"])})

    def send(step: int, kind: str, arrays: dict, meta: dict) -> Message:
        return list(transport.exchange([Message("run", step, "coordinator", "bank", kind, arrays, meta)]))[0]

    send(0, protocol.OPEN, {}, {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False, "parties": ["bank"]})
    send(1, protocol.RELEASE, {}, {"op": "label", "sigma": 50.0})
    encoders = {n: CategoryGroups(SME_SYNTH_SCHEMA.column(n), np.arange(SME_SYNTH_SCHEMA.column(n).size),
                                  np.ones(SME_SYNTH_SCHEMA.column(n).size)) for n in (A, B)}
    enc_meta, enc_arrays = protocol.encode_encoders(encoders)
    keys, arrays = protocol.encode_baselines(baselines)
    try:
        reply = send(2, protocol.SELECT_TREE, {**enc_arrays, **arrays},
                     {"features": [A, B], "baselines": keys, "epsilon": 0.1, "encoders": enc_meta})
    except Exception as exc:
        return f"error: {exc}", 0
    return "released", len(reply.meta["releases"])


def _uniform() -> np.ndarray:
    ka, kb = SME_SYNTH_SCHEMA.column(A).size, SME_SYNTH_SCHEMA.column(B).size
    return np.full((ka, kb), 1.0 / (ka * kb))


def test_a_normalised_baseline_is_answered_and_charged() -> None:
    assert _select({(A, B): _uniform()}) == ("released", 1)


@pytest.mark.parametrize("case", ["negative", "sum", "shape", "missing", "nan"])
def test_malformed_baselines_are_refused_before_any_charge(case: str) -> None:
    good = _uniform()
    shifted = good.copy()
    shifted[0, 0], shifted[0, 1] = -0.1, shifted[0, 1] + shifted[0, 0] + 0.1  # still sums to 1
    bad = {"negative": {(A, B): shifted},
           "sum": {(A, B): good * 3},
           "shape": {(A, B): good[:, :1] / good[:, :1].sum()},
           "missing": {},
           "nan": {(A, B): np.where(np.eye(*good.shape, dtype=bool), np.nan, good)}}[case]
    outcome, charged = _select(bad)
    assert outcome.startswith("error") and "baseline" in outcome and charged == 0
