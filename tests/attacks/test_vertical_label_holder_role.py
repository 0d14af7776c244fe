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


# --- review R12-2: a job that names no label holder, or a partner as one ----------------------------------------
# `admit_role` returned early when the job's label_holder was None and `check_job` never looked at it, so a
# coordinator naming no bank (or a colluding partner as the bank) ran that partner as "the bank". Now a vertical
# job must name a label holder among its parties that this party lists in `[allow] label_holders` (default:
# itself only), and `PeerAllowList` refuses every label-holder signer in a job that names none. Both cases fail
# on commit 1064fb2 (they were the xfail(strict) reproduction before the fix).


@pytest.mark.parametrize("job_label_holder", [None, "payments"])
def test_a_partner_cannot_pose_as_label_holder_through_the_job_description(job_label_holder: str | None) -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_job

    tables = make_sme_consortium(400, seed=9).vertical
    job = {"workflow": "vertical", "operator": "op", "parties": ["payments", "delivery"],
           "label_holder": job_label_holder, "protections": []}
    allow = AllowSection(partners=["bank", "payments"])  # delivery trusts payments as a partner only
    with pytest.raises(JobRefused, match="label"):
        check_job(allow, "delivery", job, "d", list(tables["delivery"].feature_names))
    check_job(AllowSection(partners=["bank", "payments"], label_holders=["bank"]), "delivery",
              {**job, "parties": ["bank", "delivery"], "label_holder": "bank"}, "d",
              list(tables["delivery"].feature_names))  # the bank it lists is accepted
    with pytest.raises(JobRefused, match="label_holders"):
        check_job(AllowSection(partners=["bank", "payments"], label_holders=["bank"]), "delivery", job
                  if job_label_holder else {**job, "label_holder": "payments"}, "d", [])


def test_a_job_naming_no_label_holder_admits_no_label_holder_signer() -> None:
    tables = make_sme_consortium(400, seed=9).vertical
    payments = dataclasses.replace(tables["payments"], y=np.zeros(len(tables["payments"].ids), dtype=np.int8))
    datasets = {"payments": payments, "delivery": tables["delivery"]}
    verifier, identities = simulated_consortium(list(datasets))
    parties = {n: VerticalParty(d, identity=identities[n],
                                verifier=PeerAllowList(verifier, n, ["payments", "delivery"], label_holder=None))
               for n, d in datasets.items()}
    transport = InProcessTransport({n: p.app for n, p in parties.items()})
    s = VerticalSession(transport, label_holder="payments", partners=["delivery"], run_id="r12-2")
    with pytest.raises(Exception, match="names no label holder"):
        s.connect()
    assert parties["delivery"].channels is None
    with pytest.raises(IdentityError):
        PeerAllowList(verifier, "delivery", ["payments"]).admit_role("payments", "label_holder")
