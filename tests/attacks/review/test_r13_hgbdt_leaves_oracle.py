"""Review R13-HGB-5: `hgb.leaves` is an uncharged membership oracle under DP (error iff a node holds a row).

The bank's leaves handler indexes the coordinator's leaf values by each training row's node
(`values[self.node]`), unchecked, and the DP mod (`sampan.privacy.gbdt_dp`) passes `hgb.leaves` and `hgb.split`
through uncharged. So the coordinator routes rows with a split (here "f0 > 5" to node 1, a bin that holds one
target row alone), then sends a leaves vector shorter than the node ids: the bank answers an IndexError exactly
when some row sits in node 1. After one charged root release (to start a tree), `hgb.setup` (new edges) and
`hgb.split` (routing back to node 0) can be re-sent without limit or charge: exact emptiness queries on any box.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

DP = {"noise_multiplier": 4.0, "clip": [1.0, 0.25]}


def _probe(with_target: bool) -> tuple[bool, int]:
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(40, 3)), (rng.random(40) < 0.4).astype(np.int8)
    if with_target:
        X, y = np.vstack([X, [[9.0, 9.0, 9.0]]]), np.append(y, np.int8(1))  # the only row with f0 > 5
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(len(X))], dtype=object), X=X, y=y,
                     feature_names=["f0", "f1", "f2"])
    policy = PartyPrivacyPolicy()
    job = {"workflow": "horizontal", "model": "gbdt", "gbdt": {"n_trees": 2, "max_depth": 2, "dp": True}}
    app = HORIZONTAL.party_app(PartySetup("bank", (data, data.subset(np.arange(5))), job, policy=policy))

    def ask(step: int, kind: str, arrays: dict, meta: dict) -> Message:
        return app.handle(Message("run", step, "coordinator", "bank", kind, arrays, meta))

    ask(1, "hgb.setup", {"edges": np.array([5.0, 0.0, 0.0]), "counts": np.array([1, 1, 1])}, {"base_score": 0.0})
    ask(2, "hgb.hist", {"nodes": np.array([0])}, {"new_tree": True, "dp": DP})  # the one charged release
    ask(3, "hgb.split", {"splits": np.array([[0, 0, 0, 0, 1]], dtype=np.int64)}, {})  # f0 > 5 -> node 1
    reply = ask(4, "hgb.leaves", {"values": np.array([0.0])}, {})  # no value for node 1
    return reply.is_error, sum(e.count for e in policy.ledger("bank").events)


@pytest.mark.xfail(strict=True, reason="R13-HGB-5: hgb.leaves errors exactly when a coordinator-routed node holds "
                                       "a row: an uncharged membership oracle under DP")
def test_leaves_replies_do_not_depend_on_whether_a_node_holds_a_row() -> None:
    (without, charges), (with_target, _) = _probe(False), _probe(True)
    assert charges == 1
    assert without == with_target, "the leaves reply (error or not) reveals the target row's membership exactly"
