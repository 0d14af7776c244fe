"""Review R9 (A5): a deployed party admitted any allowed peer signing its run keys as label holder.

Certificates carry no protocol role, so a partner colluding with the coordinator could sign as label
holder in a run where the job named the bank, and every other party would treat it as "the bank"
(labels' role in WOE, GBDT and scoring). `PeerAllowList` now knows the job's `label_holder` and admits
only that party in that role (and it in no other); a vertical party consults it for itself and every
peer before it checks the signed keys. Fails on commit 1064fb2 (the run connected there).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sampan.crypto.identity import IdentityError, simulated_consortium
from sampan.data import make_sme_consortium
from sampan.deploy.allow import PeerAllowList
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.party import VerticalParty
from sampan.vertical.session import VerticalSession


def test_only_the_jobs_label_holder_may_sign_as_label_holder() -> None:
    tables = make_sme_consortium(400, seed=9).vertical
    # the job: bank (label holder), payments, delivery; the bank is absent and payments poses as the label holder
    payments = dataclasses.replace(tables["payments"], y=np.zeros(len(tables["payments"].ids), dtype=np.int8))
    datasets = {"payments": payments, "delivery": tables["delivery"]}
    verifier, identities = simulated_consortium(list(datasets))
    parties = {n: VerticalParty(d, identity=identities[n],
                                verifier=PeerAllowList(verifier, n, ["bank", "payments", "delivery"],
                                                       label_holder="bank"))
               for n, d in datasets.items()}
    transport = InProcessTransport({n: p.app for n, p in parties.items()})
    s = VerticalSession(transport, label_holder="payments", partners=["delivery"], run_id="r9-a5")
    with pytest.raises(Exception, match="'bank' as label holder"):
        s.connect()
    assert all(p.channels is None for p in parties.values())


def test_the_allow_list_admits_the_jobs_label_holder_in_that_role_only() -> None:
    allow = PeerAllowList(object(), "payments", ["bank", "payments"], label_holder="bank")
    allow.admit_role("bank", "label_holder")
    allow.admit_role("payments", "partner")
    for peer, role in (("payments", "label_holder"), ("bank", "partner")):
        with pytest.raises(IdentityError):
            allow.admit_role(peer, role)
