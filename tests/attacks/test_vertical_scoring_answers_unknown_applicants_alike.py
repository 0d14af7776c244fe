"""Review (issue 12, vertical) R12-VER-8 (fixed): scoring is no bank-membership oracle for the coordinator.

`sampan.vertical.scoring` says "The coordinator never learns who applied", and PSI shows the coordinator only
intersection sizes, never whether a given id is a bank customer. But in the restructured flow the applicants
are the coordinator's own input (`VerticalJob.applicants`, `ScoringJob.applicants`, sent in clear in the
``score.start`` meta), and the bank's `score.start` fails with "an applicant of this request is not in the
bank's table" for an id it does not hold, while scoring one it holds succeeds (`score.save` then counts it).
One applicant per request (as `VerticalWorkflow._lr` sends them) therefore tells a curious coordinator, for any
registration number it likes, whether it is the bank's customer; no cap or rate limit applies.
"""

from __future__ import annotations

import numpy as np

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.session import VerticalSession


def test_scoring_does_not_tell_the_coordinator_who_is_a_bank_customer() -> None:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    for name, p in parties.items():  # any loaded part (a scoring run loads each party's own)
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        np.zeros(d))
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="r12-ver-8")
    s.connect()
    customer = str(tables["bank"].ids[0])
    stranger = "BR00000000"
    assert stranger not in set(map(str, tables["bank"].ids))

    def is_customer(reg_no: str) -> bool:  # the coordinator's oracle: did the bank accept the request?
        try:
            s.score([reg_no])
            return True
        except PartyError:
            return False

    answers = {customer: is_customer(customer), stranger: is_customer(stranger)}
    assert answers[customer] == answers[stranger], f"bank membership read by the coordinator: {answers}"
