"""Attacks by a curious or malicious coordinator on the checks job (`sampan.checks.privacy`).

Claims: a bank whose checks job announced DP releases no exact count, whatever the request says; it answers each
release once per run, so the coordinator cannot average the noise away; the sensitivity (and so the noise) is the
bank's own, not the request's; and a histogram never names a row: a column the bank does not hold is refused.
"""

from __future__ import annotations

from pathlib import Path

import _checks_parties as fixture
import numpy as np
import pytest

from sampan.checks.capability import CHECKS, checks_job
from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.core.transport import PartyError
from sampan.data import PartyData
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

DP = {"dp": {"label_epsilon": 0.5, "histogram_epsilon": 1.0}}
COLUMNS = [["utilisation", 0.0, 1.0]]


def _bank(dp: bool = True) -> tuple[PartyApp, PartyData]:
    data = fixture.banks()["bank_0"]
    app = CHECKS.party_app(PartySetup("bank_0", data, checks_job(fixture.config(DP if dp else {})),
                                      options={"schema": fixture.SCHEMA}))
    return app, data


def _ask(app: PartyApp, kind: str, meta: dict, run_id: str = "r1") -> Message:
    return app.handle(Message(run_id, 1, "coordinator", "bank_0", kind, {}, meta))


def test_a_dp_job_answers_no_exact_label_or_histogram() -> None:
    app, _ = _bank()
    for kind, meta in (("checks.label", {}), ("checks.histogram", {"columns": COLUMNS, "bins": 10})):
        reply = _ask(app, kind, meta)
        assert reply.kind == "error" and "announced DP" in reply.meta["error"]
    for bad in ({"epsilon": 0}, {"epsilon": "1"}, {"epsilon": float("inf")}, {}):
        reply = _ask(app, "checks.label", {"dp": bad}, run_id=f"r-{bad}")
        assert reply.kind == "error" and "epsilon" in reply.meta["error"]


def test_a_second_release_in_the_same_run_is_refused() -> None:
    """Averaging k noised answers would cut the noise by sqrt(k): the second request is refused, with or without
    DP (two exact answers around a change would otherwise be differenced)."""
    for dp in (True, False):
        app, _ = _bank(dp)
        meta = {"dp": {"epsilon": 0.5}} if dp else {}
        assert _ask(app, "checks.label", meta).kind == "checks.label"
        again = _ask(app, "checks.label", meta)
        assert again.kind == "error" and "once per run" in again.meta["error"]
        hist = {"columns": COLUMNS, "bins": 10, **({"dp": {"epsilon": 1.0}} if dp else {})}
        assert _ask(app, "checks.histogram", hist).kind == "checks.histogram"
        assert _ask(app, "checks.histogram", hist).kind == "error"


def test_the_noise_follows_the_banks_sensitivity_not_the_request() -> None:
    """A sensitivity in the request is ignored (the noise is at the bank's own scale), and asking the same column
    m times, which would multiply the sensitivity (or tile the column into windows), is refused (R14-CHECKS-4)."""
    app, data = _bank()
    exact = np.array([float(len(data.ids)), float(np.sum(np.asarray(data.y) == 1))])
    label = _ask(app, "checks.label", {"dp": {"epsilon": 0.5, "sensitivity": 1e-9}})
    noised = np.array([label.meta["n"], label.meta["positives"]])
    assert not np.array_equal(noised, exact)  # a sensitivity in the request is ignored: noise at scale 2/0.5
    many = _ask(app, "checks.histogram", {"columns": COLUMNS * 20, "bins": 10, "dp": {"epsilon": 1.0}}, run_id="b")
    assert many.kind == "error" and "twice" in many.meta["error"]
    one = _ask(app, "checks.histogram", {"columns": COLUMNS, "bins": 10, "dp": {"epsilon": 1.0}}, run_id="a")
    truth = np.bincount(np.minimum((data.X[:, 1] * 10).astype(int), 9), minlength=10)
    assert not np.array_equal(one.arrays["counts"][0, :10], truth)


def test_a_column_the_bank_does_not_hold_is_refused_with_its_name() -> None:
    app, _ = _bank(dp=False)
    reply = _ask(app, "checks.histogram", {"columns": [["income", 0.0, 1.0]], "bins": 10})
    assert reply.kind == "error" and "'income'" in reply.meta["error"] and "bank_0" in reply.meta["error"]
    with pytest.raises(PartyError, match="overlap"):
        list(InProcessTransport({"bank_0": _bank(dp=False)[0]}).exchange(
            [Message("r", 1, "coordinator", "bank_0", "checks.overlap", {}, {"peer": "x"})]))


def test_psi_in_a_mode_that_reveals_matches_is_refused_by_the_parties() -> None:
    """In a vertical checks job a coordinator asking for PSI mode 'both' (each side would learn which of its ids
    match) or 'label_holder' is refused by the party itself, before any point is blinded."""
    import sampan
    from sampan.vertical.psi import run_psi
    from sampan.vertical.session import VerticalSession

    cfg = sampan.config.parse_config({"run": {"workflow": "checks"}, "source": {"kind": "consortium", "n_smes": 300},
                                      "vertical": {"label_holder": "bank"}})
    setups = CHECKS.simulate(cfg, 1)
    transport = InProcessTransport({n: CHECKS.party_app(s) for n, s in setups.items()})
    VerticalSession(transport, label_holder="bank", partners=[p for p in setups if p != "bank"],
                    run_id="r-attack").connect()
    for mode in ("both", "label_holder"):
        with pytest.raises(PartyError, match="mode 'cardinality' only"):
            run_psi(transport, "r-attack", "bank", "payments", mode)


def test_the_deployed_gate_answers_only_the_checks_requests_the_job_announced() -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request, job_description

    config = {"run": {"workflow": "checks"}, "checks": {"dp": {"label_epsilon": 0.5}}}
    job = job_description(config, workflow="checks", operator="op", parties=list(fixture.BANKS), label_holder=None)
    assert "dp" in job["protections"] and job["vertical"] is False
    for kind, meta, rule in (("fit", {}, "not a request of a checks job"),
                             ("psi.offer", {"mode": "cardinality"}, "not a request of a checks job"),
                             ("checks.label", {}, "carries no dp")):
        with pytest.raises(JobRefused, match=rule):
            check_request(None, "bank_0", kind, meta, job)
    check_request(None, "bank_0", "checks.label", {"dp": {"epsilon": 0.5}}, job)
    vertical = job_description({**config, "vertical": {"label_holder": "bank"}}, workflow="checks", operator="op",
                               parties=["bank", "payments"], label_holder="bank")
    with pytest.raises(JobRefused, match="cardinality"):
        check_request(None, "payments", "psi.accept", {"mode": "both"}, vertical)
    with pytest.raises(JobRefused, match="partners"):  # PSI names partners: the vertical default (none) applies
        check_job(None, "payments", vertical, "loans", [])
    check_job(AllowSection(partners=["bank"], label_holders=["bank"]), "payments", vertical, "loans", [])


def test_the_banks_own_ledger_is_charged_first_and_refuses_beyond_its_budget(tmp_path: Path) -> None:
    """A bank's own policy (its persistent ledger, authoritative over the coordinator's mirror): each noised
    release is charged there before it leaves, and one its remaining budget cannot pay is refused."""
    from sampan.privacy import Ledger
    from sampan.privacy.party_policy import PartyPrivacyPolicy

    path = tmp_path / "ledger.json"
    policy = PartyPrivacyPolicy(epsilon=1.2, ledger_path=path)
    data = fixture.banks()["bank_0"]
    app = CHECKS.party_app(PartySetup("bank_0", data, checks_job(fixture.config(DP)), policy=policy,
                                      options={"schema": fixture.SCHEMA}))
    assert _ask(app, "checks.label", {"dp": {"epsilon": 0.5}}).kind == "checks.label"
    assert Ledger.from_json(path.read_text()).spent("bank_0") == pytest.approx(0.5)
    refused = _ask(app, "checks.histogram", {"columns": COLUMNS, "bins": 10, "dp": {"epsilon": 1.0}})
    assert refused.kind == "error" and "own budget" in refused.meta["error"]
    assert Ledger.from_json(path.read_text()).spent("bank_0") == pytest.approx(0.5)  # nothing recorded for it
    strict = CHECKS.party_app(PartySetup("bank_0", data, checks_job(fixture.config()), options={},
                                         policy=PartyPrivacyPolicy(required_levels=frozenset({"DP1"}))))
    exact = _ask(strict, "checks.label", {})
    assert exact.kind == "error" and "requires DP" in exact.meta["error"]  # its policy, whatever the job says
