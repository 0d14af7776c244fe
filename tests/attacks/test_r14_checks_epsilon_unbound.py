"""R14-CHECKS-2: a party answers a checks release at whatever epsilon the request carries. The job each party is
told (and approves) says only ``protections: ["dp"]``: neither the [checks.dp] epsilons nor a cap travel with it
(`checks_job`, `sampan.deploy.allow.job_description`), the agent sets no ``max_epsilon`` option, and the consent
spec plans such a job as open-ended (`planned_spend` -> None), so a coordinator that announced
``histogram_epsilon = 1.0`` can ask for epsilon 1e9 and receive the exact histogram (noise scale 3e-9).

Fixed: the job carries each release's epsilon (`job["checks"]["dp"]`), required exactly by the agent and the
party's DP mod; the mod holds 1/epsilon to the policy's min_noise_multiplier; the consent spec plans the job's
`budget_epsilon`."""

from __future__ import annotations

import _checks_parties as fixture
import numpy as np

from sampan.checks.capability import CHECKS, checks_job
from sampan.checks.protocol import histogram_counts
from sampan.core.capability import PartySetup
from sampan.deploy.allow_checks import check_checks_request
from sampan.wire import Message

DP = {"dp": {"label_epsilon": 0.5, "histogram_epsilon": 1.0}}
COLUMNS = [["age", 18.0, 80.0], ["utilisation", 0.0, 1.0], ["delinquencies", 0.0, 10.0]]


def test_a_histogram_is_never_released_above_the_epsilon_the_job_announced() -> None:
    data = fixture.banks()["bank_0"]
    job = checks_job(fixture.config(DP))
    app = CHECKS.party_app(PartySetup("bank_0", data, job, options={"schema": fixture.SCHEMA}))
    meta = {"dp": {"epsilon": 1e9}, "columns": COLUMNS, "bins": 10}
    refused_by_agent = False
    try:
        check_checks_request("bank_0", "checks.histogram", meta, job)
    except Exception:
        refused_by_agent = True
    reply = app.handle(Message("r1", 4, "coordinator", "bank_0", "checks.histogram", {}, meta))
    exact = histogram_counts("bank_0", data, COLUMNS, 10)
    leaked = reply.kind != "error" and np.allclose(np.rint(reply.arrays["counts"]), exact, atol=0)
    assert refused_by_agent or not leaked, "the party released its exact histogram under a 'DP' checks job"


def test_a_checks_release_is_held_to_the_partys_noise_floor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sampan.deploy.allow import privacy_policy
    from sampan.deploy.allow_section import AllowSection

    data = fixture.banks()["bank_0"]
    job = checks_job(fixture.config(DP))
    allow = AllowSection.model_validate({"require": ["dp"], "min_noise_multiplier": 1.0})  # Laplace: epsilon <= 1
    policy = privacy_policy(allow, job, ledger_path=tmp_path / "ledger.json")
    app = CHECKS.party_app(PartySetup("bank_0", data, job, policy=policy, options={"schema": fixture.SCHEMA}))
    reply = app.handle(Message("r1", 3, "coordinator", "bank_0", "checks.label", {}, {"dp": {"epsilon": 1e9}}))
    assert reply.kind == "error", (f"label counts released at epsilon 1e9 (noise scale 2e-9: {reply.meta}) by a "
                                   "party whose floor is noise multiplier 1.0")


def test_a_job_epsilon_above_the_partys_floor_is_refused_even_when_announced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The floor binds the job's own epsilon too: Laplace noise multiplier 1/3 < the party's 1.0."""
    from sampan.deploy.allow import privacy_policy
    from sampan.deploy.allow_section import AllowSection

    data = fixture.banks()["bank_0"]
    job = checks_job(fixture.config({"dp": {"label_epsilon": 3.0}}))
    allow = AllowSection.model_validate({"min_noise_multiplier": 1.0})
    policy = privacy_policy(allow, job, ledger_path=tmp_path / "ledger.json")
    app = CHECKS.party_app(PartySetup("bank_0", data, job, policy=policy, options={"schema": fixture.SCHEMA}))
    reply = app.handle(Message("r1", 3, "coordinator", "bank_0", "checks.label", {}, {"dp": {"epsilon": 3.0}}))
    assert reply.kind == "error" and "minimum noise multiplier" in reply.meta["error"]


def test_the_consent_spec_reserves_the_checks_budget() -> None:
    """A DP checks job is not open-ended: its approval reserves the most it spends at any one party."""
    from sampan.deploy.consent.spec import job_spec

    config = {"run": {"workflow": "checks"}, "checks": {"dp": {"label_epsilon": 0.5, "histogram_epsilon": 1.0}}}
    spec = job_spec(config, parties=list(fixture.BANKS), datasets={b: {"dataset": "loans", "columns": []}
                                                                   for b in fixture.BANKS},
                    label_holder=None, operator="op", job_id="r1")
    assert spec.planned() == (1.5, 0.0)
    assert spec.job["checks"]["dp"] == {"label_epsilon": 0.5, "histogram_epsilon": 1.0, "budget_epsilon": 1.5}
    assert spec.job["checks"]["histogram"]["bins"] == 10
