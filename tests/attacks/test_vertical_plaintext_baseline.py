"""Review R12-4: every vertical party, the deployed agent's too, answered the INSECURE plaintext LR baseline.

`VerticalParty` registered `plr.setup` / `plr.forward` / `plr.residual` by default (benchmarks price the
cryptography with them), and `plr.residual` returns sigmoid(z) - y in clear for a coordinator-chosen z:
z = 0 gives r = 0.5 - y, every label of the aligned rows. Now parties register `plr.*` only when built with
`with_baselines=True` (benchmarks), the deployed agent never does, and a deployed party's `check_request`
refuses any request of a vertical job outside the vertical workflow's kinds (`VERTICAL_KINDS`).
The first test fails on commit 1064fb2 (it was the xfail(strict) reproduction before the fix).
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.deploy.allow import VERTICAL_KINDS, AllowSection, JobRefused, check_request
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.session import VerticalSession
from sampan.vertical.training import Relay


def test_a_vertical_party_does_not_hand_out_plaintext_residuals() -> None:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="r12-4")
    s.connect()
    s.align()
    n = s.n_aligned or 0
    relay, rows = Relay(s.run_id), np.arange(n, dtype=np.int64)
    with pytest.raises(PartyError, match="does not handle 'plr.setup'"):
        relay.wave(transport, [relay.request("bank", "plr.setup", {"train_rows": rows},
                                             {"bank": "bank", "lr": 0.0, "l2": 0.0})])
    with pytest.raises(PartyError, match="does not handle 'plr.residual'"):
        relay.wave(transport, [relay.request("bank", "plr.residual", {"z_total": np.zeros(n)})])
    assert all(not any(k.startswith("plr.") for k in p.app._handlers) for p in parties.values())


@pytest.mark.parametrize("kind", ["plr.setup", "plr.forward", "plr.residual", "fit", "vertical.debug"])
def test_a_deployed_party_refuses_kinds_outside_the_vertical_workflow(kind: str) -> None:
    job = {"workflow": "vertical", "parties": ["bank", "payments"], "label_holder": "bank", "protections": [],
           # every model announced (R12-VER-2: WOE/GBDT requests are answered only when the job announced them)
           "vertical": {"models": ["lr", "scorecard", "gbdt"]}}
    with pytest.raises(JobRefused, match="not a request of the vertical workflow"):
        check_request(AllowSection(partners=["payments"]), "bank", kind, {}, job)
    for allowed in sorted(VERTICAL_KINDS):
        if allowed in ("woe.sum", "woe.finish", "vgb.setup", "vgb.start"):  # these carry checked meta
            continue
        if allowed.startswith("psi.rr22."):  # answered only when the job announced psi_backend = 'rr22'
            with pytest.raises(JobRefused, match="did not announce"):
                check_request(AllowSection(partners=["payments"]), "bank", allowed, {}, job)
            rr22_job = {**job, "vertical": {**job["vertical"], "psi_backend": "rr22"}}
            check_request(AllowSection(partners=["payments"]), "bank", allowed, {}, rr22_job)
            continue
        check_request(AllowSection(partners=["payments"]), "bank", allowed, {}, job)


def test_the_vertical_kinds_are_exactly_what_a_deployed_party_handles() -> None:
    from sampan.crypto.identity import simulated_consortium
    from sampan.vertical.party import VerticalParty

    table = make_sme_consortium(300, seed=1).vertical["bank"]
    verifier, identities = simulated_consortium(["bank"])
    party = VerticalParty(table, identity=identities["bank"], verifier=verifier)
    assert set(party.app._handlers) == VERTICAL_KINDS
