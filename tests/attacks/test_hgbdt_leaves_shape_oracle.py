"""R13-HGB-5: `hgb.leaves` must not be a membership oracle (an error iff a coordinator-routed node holds a row).

The bank's leaves handler indexed the coordinator's leaf values by each training row's node
(`values[self.node]`), unchecked, and the DP mod (`sampan.privacy.gbdt_dp`) passes `hgb.leaves` and `hgb.split`
through uncharged. So the coordinator routed rows with a split (here "f0 > 5" to a node, a bin that holds one
target row alone), then sent a leaves vector shorter than the node ids: the bank answered an IndexError exactly
when some row sat in that node, and `hgb.setup` / `hgb.split` could be re-sent without limit or charge. The bank
now checks every split and the leaves vector against the tree's public shape (the node ids the coordinator's own
splits created, `sampan.horizontal.gbdt_checks.TreeShape`) before it reads a row: the reply depends on the request
only. Both the reviewer's split (children numbered out of order) and a well-formed one are probed.
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


def _probe(with_target: bool, split: list[int]) -> tuple[bool, int]:
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
    ask(3, "hgb.split", {"splits": np.array([split], dtype=np.int64)}, {})  # f0 > 5 -> the right child
    reply = ask(4, "hgb.leaves", {"values": np.array([0.0])}, {})  # no value for node 1
    return reply.is_error, sum(e.count for e in policy.ledger("bank").events)


@pytest.mark.parametrize("split", [[0, 0, 0, 0, 1], [0, 0, 0, 1, 2]])
def test_leaves_replies_do_not_depend_on_whether_a_node_holds_a_row(split: list[int]) -> None:
    (without, charges), (with_target, _) = _probe(False, split), _probe(True, split)
    assert charges == 1
    assert without == with_target, "the leaves reply (error or not) reveals the target row's membership exactly"
