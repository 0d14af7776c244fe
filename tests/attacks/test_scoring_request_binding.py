"""R13-SCO-16..18 (review, issue 13): a malicious coordinator swaps a partner's sealed scoring answer between requests.

Partner answers (`score.partial`: the partner's masked partial logits and unknown flags, sealed to the bank) are
sealed under AAD "run_id|sender->recipient|arrays" (`crypto/channel.py` `seal_arrays`): nothing binds an envelope
to its request id, its applicants or its wave. The coordinator, which relays every envelope (`core/relay.py`), can
hand the bank, in request 2's `score.finish`, the partner envelope of request 1 (same batch size): the bank opens
it without complaint and scores request 2's applicant with request 1's applicant's partner data — a silently
wrong PD and decision, with no way for the bank to notice. (With two or more partners the coordinator replays all
of request 1's envelopes; their masks cancel as before.) The same holds for the bank's sealed id query.

R13-SCO-17: the partners of a scoring request are whatever the coordinator's meta lists (`ScoringParty.start` /
`finish` read ``msg.meta["partners"]``; `check_request` does not compare them with the job's parties): with
``partners = []`` the bank scores with its own part alone, reports ``missing_at == []`` and a zero partner
contribution, so its PD and decision are silently wrong and nothing tells it a partner was left out.

R13-SCO-18: the same list decides the masks: a partner adds a pairwise zero-sum mask only toward the other partners
the coordinator names in its `score.partial` meta (`ScoringParty.partial`), so a coordinator that lists one partner
alone (to it and to the bank) hands the bank that partner's exact partial logit, where `vertical/scoring.py` says
"with two or more partners ... the bank learns only the *sum* of partner contributions". (Needs a coordinator
working for the bank; nothing at the partner, nor `check_request`, compares the list with the job's parties.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.session import VerticalSession
from sampan.wire import Message


class SwappingCoordinator:
    """Relays honestly, except that request 2's partner envelopes to the bank are request 1's."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kept, self.finishes = inner, {}, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        out = []
        for m in messages:
            if m.kind == "score.finish":
                self.finishes += 1
                mail = {k: v for k, v in m.arrays.items() if k.startswith("from:")}
                if self.finishes == 1:
                    self.kept = mail
                else:
                    m = Message(m.run_id, m.step, m.sender, m.recipient, m.kind, {**m.arrays, **self.kept}, m.meta)
            out.append(m)
        return self.inner.exchange(out)


def test_the_bank_refuses_a_partner_answer_from_another_request() -> None:
    tables = {k: v for k, v in make_sme_consortium(300, seed=9).vertical.items() if k in ("bank", "payments")}
    inner, parties = build_inprocess_vertical(tables)
    rng = np.random.default_rng(3)
    for name, p in parties.items():
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        rng.normal(size=d))
    known = set(map(str, tables["payments"].ids))
    a, b = [str(i) for i in tables["bank"].ids if str(i) in known][:2]
    honest = VerticalSession(inner, label_holder="bank", partners=["payments"], run_id="honest")
    honest.connect()
    truth = {r.applicant: r.partner_contribution for r in parties["bank"].scoring.results[honest.score([a, b])]}
    session = VerticalSession(SwappingCoordinator(inner), label_holder="bank", partners=["payments"],  # type: ignore[arg-type]
                              run_id="swapped")
    session.connect()
    session.score([a])
    with pytest.raises(PartyError):
        request = session.score([b])
        got = parties["bank"].scoring.results[request][0].partner_contribution
        assert got == truth[b], f"applicant b scored with partner data {got} (a's: {truth[a]}, b's: {truth[b]})"


def test_the_bank_never_scores_without_the_models_partners_unflagged() -> None:
    tables = {k: v for k, v in make_sme_consortium(300, seed=9).vertical.items() if k in ("bank", "payments")}
    inner, parties = build_inprocess_vertical(tables)
    rng = np.random.default_rng(3)
    for name, p in parties.items():
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        rng.normal(size=d))
    known = set(map(str, tables["payments"].ids))
    a = next(str(i) for i in tables["bank"].ids if str(i) in known)
    session = VerticalSession(inner, label_holder="bank", partners=["payments"], run_id="dropped")
    session.connect()
    full = parties["bank"].scoring.results[session.score([a])][0]
    session.partners = []  # the coordinator's meta: partners = [] in score.start and score.finish
    try:
        alone = parties["bank"].scoring.results[session.score([a])][0]
    except PartyError:
        return  # refused: the defence holds
    assert alone.missing_at == ["payments"] or alone.probability_of_default == full.probability_of_default, (
        f"PD {alone.probability_of_default} (true {full.probability_of_default}), missing_at {alone.missing_at}")


def test_with_two_partners_the_bank_never_sees_one_partners_part() -> None:
    tables = make_sme_consortium(300, seed=9).vertical
    inner, parties = build_inprocess_vertical(tables)
    rng = np.random.default_rng(3)
    for name, p in parties.items():
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        0.1 * rng.normal(size=d))
    partners = sorted(n for n in parties if n != "bank")
    assert len(partners) >= 2
    target = partners[0]
    known = set(map(str, tables[target].ids))
    a = next(str(i) for i in tables["bank"].ids if str(i) in known)
    session = VerticalSession(inner, label_holder="bank", partners=partners, run_id="unmasked")
    session.connect()
    session.partners = [target]  # the coordinator's meta to the bank and to the target: no other partner
    try:
        seen = parties["bank"].scoring.results[session.score([a])][0].partner_contribution
    except PartyError:
        return  # refused: the defence holds
    scoring = parties[target].scoring
    exact = float(parties[target].loaded_part.partial_logit(scoring.X[scoring._rows_for([a])])[0])
    assert abs(seen - exact) > 1e-3, f"the bank read {target}'s own partial logit {exact} (saw {seen})"
