"""Review (issue 12, vertical) R12-VER-3 (fixed): `vertical.summary` never opens a partner's raw-column LR weights.

`PartRecords.summary` releases the "scorecard rows" (points and WOE per bin) of the part a party filed as
``(run, "scorecard")``, and `VerticalParty._finish_lr` files the part as a scorecard whenever
``vertical.use_woe`` is on *at vlr.finish*, attaching the WOE tables to whatever weights the secure LR
produced. The coordinator decides when ``vertical.use_woe`` arrives: trained on raw columns, switched on
just before ``vlr.finish``, the partner's raw LR part is filed as a scorecard and `vertical.summary` then
releases ``-factor * (w_j / scale_j) * woe_bin + share`` per bin. Two bins of one feature give the
partner's raw weight ``w_j / scale_j`` exactly: the secure LR receipt says "each party learns only its
own final weights", and `party_parts` says "nothing else of a party's model leaves".

All through public messages on the in-process transport (the deployed gate answers every one of these
kinds in a vertical job).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from sampan.core.transport import PartyError, Transport
from sampan.data import make_sme_consortium
from sampan.models.scorecard import ScoreScaling
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig
from sampan.vertical.woe import federated_woe
from sampan.wire import Message


class _SwitchBeforeFinish(Transport):
    """A curious coordinator: just before `vlr.finish` reaches the partner, it switches the partner's WOE on."""

    def __init__(self, inner: Transport, target: str) -> None:
        self.inner, self.target = inner, target
        self.refused: list[str] = []

    @property
    def parties(self) -> list[str]:
        return self.inner.parties

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for m in messages:
            if m.kind == "vlr.finish" and m.recipient == self.target:
                switch = Message(m.run_id, m.step, "coordinator", self.target, "vertical.use_woe", {}, {"on": True})
                try:  # the fixed party refuses the switch; the curious coordinator carries on regardless
                    list(self.inner.exchange([switch]))
                except PartyError as exc:
                    self.refused.append(str(exc))
            yield from self.inner.exchange([m])


def test_summary_never_opens_a_partner_s_raw_lr_weights() -> None:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    inner, parties = build_inprocess_vertical(tables)
    transport = _SwitchBeforeFinish(inner, "payments")
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="r12-ver-3")
    s.connect()
    s.align()
    splits = Splits.random(s.n_aligned or 0, seed=1)
    federated_woe(transport, s.run_id, "bank", ["payments"], splits.train, min_iv=0.0)  # the scorecard's WOE step
    s.train(splits, VerticalLRConfig(epochs=1), seed=1)  # an ordinary LR on RAW columns (use_woe is off)
    reply = s.relay.wave(transport, [s.relay.request("payments", "vertical.summary")])[0]
    rows = reply.meta["scorecard"]
    # fixed: the WOE/raw choice is made at vlr.setup and the switch before vlr.finish is refused, so the raw part
    # is filed as "lr" and the summary releases no scorecard rows of it at all
    assert rows == [], "the partner released scorecard rows of a part trained on raw columns"
    assert ("r12-ver-3", "scorecard") not in parties["payments"].records.parts
    assert ("r12-ver-3", "lr") in parties["payments"].records.parts
    assert transport.refused and "use_woe" in transport.refused[0]
    # the coordinator's arithmetic: two bins of one feature give -factor * beta_j
    factor = ScoreScaling().factor
    recovered: dict[str, float] = {}
    by_feature: dict[str, list[dict]] = {}
    for r in rows:
        by_feature.setdefault(r["feature"], []).append(r)
    for feature, rs in by_feature.items():
        a, b = rs[0], rs[-1]
        if a["woe"] != b["woe"]:
            recovered[feature] = -(a["points"] - b["points"]) / (factor * (a["woe"] - b["woe"]))
    part = parties["payments"].lr.part  # ground truth only, to check the arithmetic
    raw_beta = part.weights / part.scaler.scale
    assert len(part.weights) == len(tables["payments"].feature_names)  # trained on the raw columns
    got = np.array(list(recovered.values()))
    # (the pre-fix leak: rows released for this raw part gave w/scale exactly; with none released nothing is derived)
    assert not rows or len(got) >= 1
    assert not len(got) or not np.allclose(got, raw_beta[:len(got)], rtol=1e-6, atol=1e-9), (
        f"the coordinator read the partner's raw LR weights w/scale = {raw_beta[:len(got)]} from the summary")
