"""Review (issue 12, vertical; fixed): a deployed vertical party's request gate is bound to the job it accepted.

`deploy.party_agent.PartyAgent.handle` checks every request with `deploy.allow.check_request(allow, party,
kind, meta, job)` and the vertical handlers enforce `deploy.allow.privacy_policy(allow)` (the agent's
`_vertical_policy`). Both read only the party's `[allow]` list, never the job the party accepted:

* R12-VER-1: the job announces DP on the federated WOE counts (`woe_dp`, a noise multiplier) and noise on
  the GBDT histograms (`gbdt_hist_noise`); the party accepts it at `deploy.open_run`. A coordinator that then
  sends `woe.sum` with `dp_epsilon = None` (exact per-bin counts to the bank) or `vgb.setup` with
  `hist_noise = 0` is answered by any partner whose list does not itself *require* DP: the job it agreed to
  (and whose receipt shows "dp") is silently downgraded. The horizontal side binds the announced levels
  (`_horizontal_policy`, review R8-3); the synthesis side has the same hole (R12-SYN-3).
* R12-VER-9: a "scoring" job (a separate `[allow] workflows` entry) answers every `VERTICAL_KINDS` request: PSI,
  secure LR, WOE, GBDT, the bank baseline, though scoring needs only keys, `vertical.load_model` and `score.*`.
* R12-VER-2: the job description carries no vertical `models`, so a partner that accepted an LR-only job
  answers `woe.*` (its binned columns to the dealer, counts to the bank) and `vgb.*` (per-node histograms and
  split partitions to the bank) requests the job never announced.
"""

from __future__ import annotations

import pytest

from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request, job_description, privacy_policy
from sampan.privacy.party_policy import PolicyRefused
from sampan.vertical.woe import partner_sensitivity2

# a partner that lists its bank but does not itself require DP (the job is what promises it)
ALLOW = AllowSection(partners=["bank"], label_holders=["bank"])
COLUMNS = [f"c{j}" for j in range(4)]


def _accepted(vertical: dict) -> dict:
    job = job_description({"vertical": vertical}, workflow="vertical", operator=None, parties=["bank", "payments"],
                          label_holder="bank")
    job = {**job, "workflow": "vertical"}
    check_job(ALLOW, "payments", job, "vertical", COLUMNS)  # the partner accepts the job as announced
    return job


def test_a_job_announcing_vertical_dp_cannot_be_downgraded_to_exact_histograms() -> None:
    job = _accepted({"scorecard": {"dp_epsilon": 1.0}, "gbdt_privacy": {"hist_noise": 4.0}})
    assert {"woe_dp", "gbdt_dp", "dp"} <= set(job["protections"])
    policy = privacy_policy(ALLOW)  # what `PartyAgent._vertical_policy` builds for every vertical run
    downgraded = []
    for kind, meta in (("woe.sum", {"bank": "bank", "dp_epsilon": None}),
                       ("woe.finish", {"partners": ["payments"], "dp_epsilon": None}),
                       ("vgb.setup", {"bank": "bank", "hist_noise": 0.0})):
        try:
            check_request(ALLOW, "payments", kind, meta, job)
        except JobRefused:
            continue
        downgraded.append(kind)
    # and the handlers' own policy lets the exact release out
    try:
        policy.admit_histograms("payments", "woe", instance="n1", release="sum", sigma=0.0,
                                sensitivity2=partner_sensitivity2(len(COLUMNS)))
        downgraded.append("policy: exact WOE counts")
    except PolicyRefused:
        pass
    assert not downgraded, f"accepted without the announced noise: {downgraded}"


def test_an_lr_only_job_gets_no_woe_or_gbdt_releases() -> None:
    job = _accepted({"models": ["lr"]})
    answered = []
    for kind, meta in (("woe.setup", {"bank": "bank"}), ("woe.sum", {"bank": "bank", "dp_epsilon": None}),
                       ("vgb.setup", {"bank": "bank", "hist_noise": 0.0}), ("vgb.step", {})):
        try:
            check_request(ALLOW, "payments", kind, meta, job)
        except JobRefused:
            continue
        answered.append(kind)
    assert not answered, f"requests of models the job never announced were accepted: {answered}"


def test_a_scoring_job_gets_no_alignment_or_training() -> None:
    allow = AllowSection(partners=["bank"], label_holders=["bank"], workflows=["scoring"])
    job = {**job_description({}, workflow="scoring", operator=None, parties=["bank", "payments"],
                             label_holder="bank"), "workflow": "scoring"}
    check_job(allow, "payments", job, "vertical", COLUMNS)  # accepted: scoring an existing model is allowed
    with pytest.raises(JobRefused):
        check_job(allow, "payments", {**job, "workflow": "vertical"}, "vertical", COLUMNS)  # training is not
    answered = []
    for kind, meta in (("psi.offer", {}), ("psi.align", {}), ("vlr.setup", {}), ("woe.setup", {"bank": "bank"}),
                       ("woe.sum", {"bank": "bank", "dp_epsilon": None}), ("vgb.setup", {"bank": "bank"}),
                       ("vertical.local_baseline", {}), ("vertical.splits", {})):
        try:
            check_request(allow, "payments", kind, meta, job)
        except JobRefused:
            continue
        answered.append(kind)
    assert not answered, f"a scoring job answered training/alignment requests: {answered}"


def test_the_bank_grows_no_more_or_deeper_trees_than_the_job_announced() -> None:
    """R12-VER-7b (the bank's side): `vgb.start` params are checked against the job's GBDT shape, which bounds
    the node releases the run charged (the partner-side cap per instance is still open, see the review test)."""
    job = _accepted({"models": ["lr", "gbdt"], "gbdt": {"n_trees": 2, "max_depth": 2}})
    check_request(ALLOW, "bank", "vgb.start", {"params": {"n_trees": 2, "max_depth": 2}}, job)
    for params in ({"n_trees": 4, "max_depth": 2}, {"n_trees": 2, "max_depth": 3}, {}):
        with pytest.raises(JobRefused, match="vgb.start"):
            check_request(ALLOW, "bank", "vgb.start", {"params": params}, job)
