"""Finding 21: a party agent refuses any job outside the allow-list in its own party.toml.

On commit 1064fb2 an operator paired a bank's loan book with a payments provider neither had agreed to:
both agents accepted silently and PSI told each the customers they share. Now each agent checks the
job against its `[allow]` section (operators, workflows, partners, datasets, columns, required
protections, minimum noise) when asked to approve it (`consent.request`, issue 14: `[allow]` is the party's
hard limit and its local standing rule) and again at `deploy.open_run` — before any protocol message —,
refuses with the rule and the reason, logs it and records it in its own signed audit log. Without `[allow]`
a party joins no vertical run (its partners must be listed).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from _consent_grant import open_with_consent
from _deploy_federation import ThreadFederation, run_config, wait_until

from sampan.config import ConfigError
from sampan.deploy.config import load_party_config
from sampan.runtime.store import Store
from sampan.transport.grpc_hub import Identity
from sampan.wire import Message

pytestmark = pytest.mark.slow


def _audit(fed: ThreadFederation, party: str, run_id: str) -> list[tuple[str, dict]]:
    store = Store.open(fed.agents[party].config.store_url)
    try:
        assert store.verify_audit(run_id).ok
        return [(e.kind, dict(e.detail)) for e in store.events(run_id)]
    finally:
        store.close()


def test_an_operator_cannot_pair_a_bank_with_a_payments_provider_it_never_listed(tmp_path: Path) -> None:
    allow = {"bank": {"partners": ["delivery"]}, "delivery": {"partners": ["bank"]}}  # payments: no [allow]
    fed = ThreadFederation(tmp_path, vertical=True, allow=allow)
    try:
        run_id = fed.submit({"run": {"name": "unagreed", "seed": 1},
                             "deploy": {"workflow": "vertical", "dataset": "vertical", "parties": ["bank", "payments"],
                                        "label_holder": "bank"},
                             "vertical": {"epochs": 1}})
        status = fed.wait(run_id)
        assert status["status"] == "failed" and "refuses this job (partners)" in status["error"], status
        # Nothing but consent reached the bank (it refused to approve, so the run never opened): no PSI, no keys
        assert fed.kinds("bank", run_id) == ["consent.request"], fed.kinds("bank", run_id)
        assert fed.kinds("payments", run_id) == []  # asked after the bank: never reached
        entries = _audit(fed, "bank", run_id)
        refused = [d for k, d in entries if k == "consent_refused"]
        assert refused and refused[0]["rule"] == "partners" and "payments" in refused[0]["reason"], entries
        assert fed.kinds("delivery", run_id) == []
        db = Path(fed.agents["bank"].config.store_url.removeprefix("sqlite:///"))
        assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    finally:
        fed.close()


def test_a_coordinator_that_announces_other_partners_is_caught_before_anything_opens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator tells the bank its partner is delivery, then pairs it with payments: the job description
    disagrees with the parties of the spec the bank approves, so it refuses to approve, before any opening (a
    coordinator that got further is still caught by the signed peer keys, `PeerAllowList`)."""
    import sampan.deploy.allow as allow_module

    honest = allow_module.job_description

    def lying(config, **kw):  # type: ignore[no-untyped-def]
        job = honest(config, **kw)
        return {**job, "parties": ["bank", "delivery"]}

    monkeypatch.setattr(allow_module, "job_description", lying)
    allow = {"bank": {"partners": ["delivery"]}, "payments": {"partners": ["bank", "delivery"]}}
    fed = ThreadFederation(tmp_path, vertical=True, allow=allow)
    try:
        run_id = fed.submit({"run": {"name": "switched", "seed": 1},
                             "deploy": {"workflow": "vertical", "dataset": "vertical", "parties": ["bank", "payments"],
                                        "label_holder": "bank"},
                             "vertical": {"epochs": 1}})
        status = fed.wait(run_id)
        assert status["status"] == "failed" and "job description disagrees" in status["error"], status
        for party in ("bank", "payments"):
            assert "deploy.open_run" not in fed.kinds(party, run_id), fed.kinds(party, run_id)
            assert not [k for k in fed.kinds(party, run_id) if k.startswith("psi")], fed.kinds(party, run_id)
    finally:
        fed.close()


def test_jobs_without_the_required_protections_or_from_other_operators_are_refused(tmp_path: Path) -> None:
    allow = {"bank_harbour": {"require": ["secure_aggregation"]},
             "bank_kowloon": {"require": ["dp"], "min_noise_multiplier": 1.0},
             "bank_lionrock": {"operators": ["ops"], "workflows": ["horizontal"]}}
    fed = ThreadFederation(tmp_path, allow=allow)
    try:
        plain = fed.submit(run_config("plain"), operator=Identity("mallory", "operator"))
        assert fed.wait(plain)["status"] == "failed"
        weak = fed.submit(run_config("weak-noise", privacy={"epsilon": 50.0, "dp3": {"noise_multiplier": 0.3,
                                                                                    "mode": "distributed"}},
                                     secure_aggregation={"enabled": True}, data={"standardize": False}))
        assert fed.wait(weak)["status"] == "failed"
        expected = {("bank_harbour", plain): "require", ("bank_kowloon", plain): "require",
                    ("bank_lionrock", plain): "operators", ("bank_kowloon", weak): "min_noise_multiplier"}
        refusals = 0
        for (party, run_id), rule in expected.items():
            refused = [d for k, d in _audit(fed, party, run_id) if k == "consent_refused"]
            refusals += len(refused)
            assert not refused or refused[0]["rule"] == rule, (party, run_id, refused)
            assert "fit" not in fed.kinds(party, run_id) and "stats" not in fed.kinds(party, run_id)
            assert "deploy.open_run" not in fed.kinds(party, run_id)
        assert refusals >= 2  # the coordinator asks the parties in turn and stops at the first refusal
        accepted = [k for k, _ in _audit(fed, "bank_harbour", weak)]
        assert "consent_approved" in accepted  # SecAgg present: bank_harbour approved, bank_kowloon refused
        released = fed.agents["bank_harbour"].consent.book.entry(weak)  # the job never opened: reservation released
        assert wait_until(lambda: fed.agents["bank_harbour"].consent.book.entry(weak).state == "settled")
        assert released is not None and released.spent_epsilon == 0.0
    finally:
        fed.close()


def test_a_coordinator_cannot_announce_protections_and_then_drop_them(tmp_path: Path) -> None:
    """The per-request check: a `fit` without the SecAgg the job promised, or with less noise, is refused."""
    fed = ThreadFederation(tmp_path, allow={"bank_harbour": {"require": ["secure_aggregation", "dp3"],
                                                             "min_noise_multiplier": 1.0}}, start=False)
    agent = fed.agents["bank_harbour"]
    job = {"operator": "ops", "parties": ["bank_harbour", "bank_kowloon", "bank_lionrock"],
           "protections": ["dp", "dp3", "secure_aggregation"], "noise_multipliers": {"dp3": 1.5}}
    silent = open_with_consent(agent, Message("r0", 0, "coordinator", "bank_harbour", "deploy.open_run", meta={
        "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1}))
    assert silent.is_error and "no job description" in str(silent.meta.get("error"))  # an undescribed job: refused
    opened = open_with_consent(agent, Message("r1", 0, "coordinator", "bank_harbour", "deploy.open_run", meta={
        "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": job}))
    assert not opened.is_error, opened.meta
    for meta in ({"dp3": {"clip": 1.0, "sum_sigma": 1.5, "mode": "distributed"}},                       # no SecAgg
                 {"secagg": {}, "dp3": {"clip": 1.0, "sum_sigma": 0.2, "mode": "distributed"}}):  # too little noise
        reply = agent.handle(Message("r1", 1, "coordinator", "bank_harbour", "fit", meta=meta))
        assert reply.is_error and "refuses this job" in str(reply.meta.get("error")), reply.meta
    fed.coordinator.security.close()


def test_the_allow_section_is_checked_when_party_toml_is_loaded(tmp_path: Path) -> None:
    toml = tmp_path / "party.toml"
    toml.write_text('[party]\nname = "b"\ncoordinator = "h:1"\n[tls]\nca = "a"\ncert = "b"\nkey = "c"\n'
                    '[data.d]\npath = "x.csv"\n[data.d.schema]\nid = "id"\nfeatures = ["f"]\n'
                    '[allow]\nrequire = ["secure_aggregation", "magic"]\n')
    with pytest.raises(ConfigError, match="allow.require"):
        load_party_config(toml)


def test_the_allow_list_covers_vertical_woe_and_gbdt_noise() -> None:
    """Review R3: `[allow]` covered only dp1/dp2/dp3, so a deployed partner obeyed a coordinator that sent
    vertical WOE without `dp_epsilon` or GBDT with `hist_noise = 0`."""
    from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request, job_description, privacy_policy
    from sampan.privacy.party_policy import PolicyRefused
    from sampan.vertical.gbdt import histogram_sensitivity2

    allow = AllowSection(partners=["bank"], label_holders=["bank"], require=["woe_dp", "gbdt_dp"],
                         min_noise_multiplier=1.0)
    with pytest.raises(JobRefused, match=r"\(require\).*woe_dp"):
        check_request(allow, "payments", "woe.sum", {"bank": "bank", "dp_epsilon": None})
    with pytest.raises(JobRefused, match="min_noise_multiplier"):
        check_request(allow, "payments", "woe.sum", {"bank": "bank", "dp_epsilon": 50.0, "dp_delta": 1e-5})
    check_request(allow, "payments", "woe.sum", {"bank": "bank", "dp_epsilon": 1.0, "dp_delta": 1e-5})
    with pytest.raises(JobRefused, match=r"\(require\).*gbdt_dp"):
        check_request(allow, "payments", "vgb.setup", {"bank": "bank", "hist_noise": 0.0})
    # the job as announced: WOE epsilon and GBDT noise are protections with noise multipliers
    job = job_description({"vertical": {"scorecard": {"dp_epsilon": 1.0}, "gbdt_privacy": {"hist_noise": 1.0}}},
                          workflow="vertical", operator=None, parties=["bank", "payments"], label_holder="bank")
    assert {"woe_dp", "gbdt_dp", "dp"} <= set(job["protections"]) and job["noise_multipliers"]["woe_dp"] > 1.0
    with pytest.raises(JobRefused, match="vertical GBDT hist_noise"):  # 1.0 over 6 columns: multiplier 0.28
        check_job(allow, "payments", {**job, "workflow": "vertical"}, "vertical", [f"c{j}" for j in range(6)])
    # in the handlers: the party's own policy, built from the same list (GBDT's floor needs its column count)
    policy = privacy_policy(allow)
    with pytest.raises(PolicyRefused, match="below its minimum"):
        policy.admit_histograms(
            "payments",
            "gbdt",
            instance="n1",
            release="1",
            sigma=0.9 * histogram_sensitivity2(6) ** 0.5,
            sensitivity2=histogram_sensitivity2(6),
        )
    with pytest.raises(PolicyRefused, match="without noise"):
        policy.admit_histograms("payments", "woe", instance="n2", release="sum", sigma=0.0, sensitivity2=24.0)


# --- adversarial review R4: a coordinator downgrades protections mid-run past `[allow]` ----------------------
# `check_request` re-checks every request of a run against the list and the job the party accepted. Each test
# builds the request a lying coordinator would send and asserts the party refuses it.
FLOOR = 1.0
JOB = {
    "workflow": "horizontal",
    "operator": "ops",
    "parties": ["bank", "other", "third"],
    "label_holder": None,
    "protections": ["dp", "dp3", "secure_aggregation"],
    "noise_multipliers": {"dp3": 2.0},
}


def _dp3_settings(z: float, parties: int = 3) -> dict:
    from sampan.config import DP3Section
    from sampan.privacy.dp3 import DP3Aggregation

    return DP3Aggregation(DP3Section(noise_multiplier=z, mode="distributed")).settings(parties)  # type: ignore[arg-type]


def test_dp3_record_level_noise_below_floor_is_refused() -> None:
    import math

    from sampan.deploy.allow import AllowSection, JobRefused, check_request
    from sampan.privacy.dp3 import settings_noise_multiplier

    settings = _dp3_settings(0.5)  # record-level z = 0.5 < floor 1.0
    assert math.isclose(settings_noise_multiplier(settings), 0.5, rel_tol=1e-6)
    with pytest.raises(JobRefused):
        check_request(AllowSection(min_noise_multiplier=FLOOR), "bank", "fit", {"dp3": settings, "round": 1})


def test_dp3_adaptive_count_sigma_drags_record_level_noise_below_floor() -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_request
    from sampan.privacy.dp3 import settings_noise_multiplier

    settings = {"clip": 1.0, "mode": "central", "parties": 3, "sum_sigma": 2.0, "count_sigma": 0.6}
    assert settings_noise_multiplier(settings) < 0.6 * FLOOR
    with pytest.raises(JobRefused):
        check_request(AllowSection(min_noise_multiplier=FLOOR), "bank", "fit", {"dp3": settings, "round": 1})


def test_dp3_noise_share_diluted_by_an_inflated_party_count_is_refused() -> None:
    """Distributed DP3: each party adds sum_sigma/sqrt(noise_parties or parties). Both come from the coordinator;
    inflating them to 10**6 removed the noise. A party refuses more than the parties of the job it accepted —
    in `check_request` and in its own privacy policy."""
    import math

    from sampan.deploy.allow import AllowSection, JobRefused, check_request
    from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused

    settings = _dp3_settings(2.0)  # announced z = 2 (passes every check)
    settings["parties"] = settings["noise_parties"] = 10**6  # each party's share: sigma / 1000
    assert settings["sum_sigma"] / math.sqrt(settings["parties"]) / settings["clip"] < 0.01
    meta = {"dp3": settings, "secagg": {"label": "r1"}, "round": 1}
    with pytest.raises(JobRefused, match="exceeds the 3 parties"):
        check_request(
            AllowSection(min_noise_multiplier=FLOOR, require=["dp3", "secure_aggregation"]), "bank", "fit", meta, JOB
        )
    with pytest.raises(JobRefused, match="exceeds the 3 parties"):
        check_request(None, "bank", "fit", meta, JOB)  # no [allow] at all: still refused
    with pytest.raises(PolicyRefused, match="its job has only 3 parties"):
        PartyPrivacyPolicy(max_parties=3).admit_fit("bank", meta, 100)
    honest = {"dp3": {**_dp3_settings(2.0), "noise_parties": 3}, "secagg": {"label": "r1"}, "round": 1}
    check_request(AllowSection(min_noise_multiplier=FLOOR, require=["dp3"]), "bank", "fit", honest, JOB)


def test_require_dp_fit_without_any_dp_is_refused() -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_request

    with pytest.raises(JobRefused):
        check_request(AllowSection(require=["dp"]), "bank", "fit", {"round": 1, "seed": 3})


def test_a_fit_must_carry_exactly_the_dp_and_secagg_the_accepted_job_announced() -> None:
    """Announce DP3 + SecAgg, then send a plain fit (or swap DP3 for DP2): refused even without [allow]."""
    from sampan.deploy.allow import JobRefused, check_request

    with pytest.raises(JobRefused, match="announced"):
        check_request(None, "bank", "fit", {"round": 1, "secagg": {"label": "r1"}}, JOB)
    with pytest.raises(JobRefused, match="announced"):
        check_request(
            None, "bank", "fit", {"round": 1, "secagg": {"label": "r1"}, "dp2": {"noise_multiplier": 1.0}}, JOB
        )
    with pytest.raises(JobRefused, match="secure aggregation"):
        check_request(None, "bank", "fit", {"round": 1, "dp3": {**_dp3_settings(2.0), "noise_parties": 3}}, JOB)


def test_evaluate_without_secagg_is_refused_when_required() -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_request

    with pytest.raises(JobRefused):
        check_request(AllowSection(require=["secure_aggregation"]), "bank", "evaluate", {"model": {}, "bins": 20})


def test_stats_and_describe_without_dp_are_refused_when_required() -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_request

    with pytest.raises(JobRefused):
        check_request(AllowSection(require=["dp1"]), "bank", "stats", {})
    with pytest.raises(JobRefused):
        check_request(AllowSection(require=["dp"]), "bank", "describe", {})
    with pytest.raises(JobRefused):
        check_request(None, "bank", "describe", {}, JOB)  # the job announced DP
    with pytest.raises(JobRefused, match="min_noise_multiplier|<"):
        check_request(
            AllowSection(min_noise_multiplier=FLOOR), "bank", "describe", {"dp_count": {"noise_multiplier": 0.1}}
        )


def test_request_kinds_outside_the_horizontal_job_and_secagg_steps_without_secagg_are_refused() -> None:
    from sampan.deploy.allow import JobRefused, check_request

    with pytest.raises(JobRefused, match="not a request"):
        check_request(None, "bank", "psi.blind", {}, JOB)
    plain = {**JOB, "protections": []}
    with pytest.raises(JobRefused, match="no secure aggregation"):
        check_request(None, "bank", "secagg_unmask", {}, plain)
    check_request(None, "bank", "secagg_unmask", {}, JOB)


def test_require_dp_refuses_a_dp1_only_horizontal_job_and_stats_without_dp1_in_a_dp_job() -> None:
    """Review R8-3/R8-4: `require = ["dp"]` accepted a DP1-only job, whose fits carry exact updates; and in a job
    announced with DP (DP2 here), `stats` without dp1 returned exact sums. Both refused now."""
    from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request

    dp1_only = {**JOB, "protections": ["dp", "dp1"], "noise_multipliers": {"dp1": 2.0}}
    with pytest.raises(JobRefused, match="without DP2 or DP3"):
        check_job(AllowSection(require=["dp"]), "bank", dp1_only, "loans", ["x"])
    check_job(AllowSection(require=["dp1"]), "bank", dp1_only, "loans", ["x"])  # asked for DP1 only: accepted
    with pytest.raises(JobRefused, match="carries no DP mechanism"):
        check_request(AllowSection(require=["dp"]), "bank", "fit", {"round": 1}, dp1_only)
    dp2_job = {**JOB, "protections": ["dp", "dp2"], "noise_multipliers": {"dp2": 2.0}}
    with pytest.raises(JobRefused, match="no dp1"):
        check_request(None, "bank", "stats", {}, dp2_job)


def test_vertical_releases_are_charged_to_the_party_s_persisted_ledger(tmp_path: Path) -> None:
    """Review R8-5: a vertical run's policy had no ledger file and no budget (in-memory, reset every run). Now a
    vertical histogram release is charged to the same persisted ledger (and budget) as the horizontal runs."""
    from sampan.deploy.party_agent import PartyAgent

    fed = ThreadFederation(tmp_path, start=False)
    try:
        name = "bank_harbour"
        agent = PartyAgent(load_party_config(fed.files.party_configs[name]))
        policy = agent._vertical_policy()
        assert policy.ledger_path is not None
        policy.admit_histograms(name, "WOE", instance="nonce-1", release="counts", sigma=4.0, sensitivity2=1.0)
        assert policy.ledger_path.exists() and oct(policy.ledger_path.stat().st_mode & 0o777) == "0o600"
        restarted = PartyAgent(load_party_config(fed.files.party_configs[name]))
        events = restarted._vertical_policy().ledger(name).events
        assert [e.note for e in events] == ["party-side: vertical WOE histogram"]
        assert restarted._vertical_policy().ledger(name) is restarted._horizontal_policy(
            {"parties": [name], "protections": []}
        ).ledger(name)  # one ledger for both workflows
    finally:
        fed.coordinator.security.close()
