"""The web console over the FakeGateway: pages need a sign-in, and a whole consortium flow runs through the forms
(admin invites banks, operators register datasets and approve, the job runs, a model is promoted and exported),
with the wizard, edits that void approvals, budgets, rules, TOTP, accounts. Access per role and CSRF on every
form: tests/test_console_access.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyotp
from _console import PASSWORD, csrf, make_console, post, run_job, seeded, wizard_form
from _web_plane import BANKS
from sqlalchemy import update

from sampan.web import db


def test_pages_need_sign_in(tmp_path: Path) -> None:
    console = make_console(tmp_path)
    browser = console.browser()
    for path in ("/console/", "/console/consortia", "/console/datasets", "/console/jobs", "/console/jobs/new",
                 "/console/approvals", "/console/runs", "/console/models", "/console/audit", "/console/account"):
        reply = browser.get(path, follow_redirects=False)
        assert reply.status_code == 303, path
        assert reply.headers["location"].startswith("/console/sign-in?next=/"), path
    assert "Sign in" in browser.get("/console/consortia").text  # followed: the sign-in form
    assert browser.get("/", follow_redirects=False).headers["location"] == "/console/"










def test_a_whole_consortium_through_the_forms(tmp_path: Path) -> None:
    console = make_console(tmp_path)
    world = console.world
    admin = console.signed_in("admin", world.admin_password)
    made = post(admin, "/console/consortia", "/console/consortia", {"name": "HK SME lending"})
    assert made.status_code == 200 and str(made.url).endswith("/console/consortia/1")
    credentials = {}
    for bank in BANKS:
        invited = post(admin, "/console/consortia/1", "/console/consortia/1/members",
                       {"organisation": bank, "role": "bank"})
        user = re.search(r'data-test="invited-username">([^<]+)<', invited.text).group(1)  # type: ignore[union-attr]
        secret = re.search(r'data-test="invited-password">([^<]+)<', invited.text)
        credentials[bank] = (user, secret.group(1))  # type: ignore[union-attr]
    again = admin.get("/console/consortia/1").text
    assert all(password not in again for _, password in credentials.values())  # shown once only
    assert again.count('data-test="member-row"') == 3
    operators = {}
    for bank, (user, one_time) in credentials.items():
        operator = console.signed_in(user, one_time)
        changed = post(operator, "/console/account", "/console/account/password",
                       {"old_password": one_time, "new_password": PASSWORD})
        assert "Your password was changed" in changed.text
        page = operator.get("/console/datasets")
        assert 'data-test="register-sme_loans"' in page.text
        registered = operator.post("/console/datasets", data={"consortium_id": "1", "name": "sme_loans",
                                                               "csrf_token": csrf(page.text)})
        assert "schema and row count only" in registered.text and 'data-test="budget-remaining"' in registered.text
        assert "<svg" in registered.text and 'data-test="spend-chart"' in registered.text
        operators[bank] = operator
    draft = post(admin, "/console/jobs/new?consortium_id=1", "/console/jobs", wizard_form("sme-lr"))
    job_id = int(str(draft.url).rsplit("/", 1)[1])
    job = world.plane.job(world.admin, job_id)
    assert job["status"] == "draft"
    shown = re.search(r'data-test="spec-hash">([0-9a-f]{64})<', draft.text).group(1)  # type: ignore[union-attr]
    assert shown == job["spec_hash"]
    assert job["spec"]["data"]["bank_a"]["columns"] == ["turnover", "years_trading", "default"]
    assert 'data-test="inbox-empty"' in operators["bank_a"].get("/console/approvals").text  # a draft is not sent
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    inbox = operators["bank_a"].get("/console/approvals").text
    assert 'data-test="inbox-columns">turnover, years_trading, default<' in inbox
    assert 'data-test="inbox-partners">bank_b, bank_c' in inbox
    assert re.search(r'data-test="inbox-remaining-after">9(\.0+)?<', inbox)  # lifetime 10, the job spends 1
    for operator in operators.values():
        done = post(operator, "/console/approvals", f"/console/approvals/{job_id}/approve", {})
        assert "your agent signed the approval" in done.text
    started = post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/start", {})
    run_id = str(started.url).rsplit("/", 1)[1]
    run = admin.get(f"/console/runs/{run_id}").text
    assert 'data-test="run-status">completed<' in run and 'data-test="epsilon-table"' in run
    for page in ("/console/runs", f"/console/jobs?consortium_id={job['consortium_id']}", f"/console/jobs/{job_id}"):
        listed = admin.get(page).text  # one word for a run that ended well, wherever a person reads it
        assert ">completed<" in listed and ">finished<" not in listed, page
    assert f'data-poll-api="/api/v1/runs/{run_id}"' in run and 'data-state="final"' in run
    assert admin.get(f"/api/v1/runs/{run_id}").status_code == 200  # what console.js polls, with the cookie
    spent = operators["bank_a"].get("/console/datasets/1").text
    assert re.search(r'data-test="budget-spent">1(\.0+)?<', spent)
    # a second run, then compare the two
    _, run2 = run_job(_Reuse(console, admin, operators), "sme-lr-2", epsilon="0.5")
    compared = admin.get(f"/console/runs/compare?run={run_id}&run={run2}")
    assert compared.status_code == 200 and compared.text.count('data-test="compare-metric"') >= 1
    assert 'data-test="compare-config"' in compared.text  # the epsilon differs
    # the model: promote, then export
    model = next(m for m in world.plane.models(world.admin) if m["run_id"] == run_id)
    path = f"/console/models/{model['name']}/{model['version']}"
    promoted = post(admin, path, f"{path}/stage", {"stage": "approved", "note": "validated"})
    assert 'data-test="model-stage">approved<' in promoted.text and run_id in promoted.text
    exported = admin.get(f"{path}/export")
    assert exported.headers["content-disposition"].startswith("attachment;")
    assert json.loads(exported.text)["format"].startswith("sampan-model")
    audit = admin.get("/console/audit").text
    assert 'data-ok="true"' in audit and "cp.model_stage" in audit
    assert post(admin, "/console/runs", "/console/sign-out", {}).url.path == "/console/sign-in"
    assert admin.get("/console/consortia", follow_redirects=False).status_code == 303


class _Reuse:
    """`run_job` with browsers already signed in (the bank operators changed their passwords)."""

    def __init__(self, console, admin, operators) -> None:  # type: ignore[no-untyped-def]
        self.console, self.admin, self.operators = console, admin, operators

    def signed_in(self, username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
        if username == "admin2":
            return self.admin
        return self.operators[username.split("-")[0]]


def test_editing_a_job_voids_its_approvals(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    admin = console.signed_in("admin2")
    draft = post(admin, "/console/jobs/new", "/console/jobs", wizard_form("edit-me"))
    job_id = int(str(draft.url).rsplit("/", 1)[1])
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    post(console.signed_in("bank_a-op"), "/console/approvals", f"/console/approvals/{job_id}/approve", {})
    assert console.world.plane.job(console.world.admin, job_id)["approvals"]["bank_a"] == "approved"
    config = console.world.plane.job(console.world.admin, job_id)["config"]
    config["run"]["rounds"] = 5
    edited = post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/edit",
                  {"name": "edit-me", "config": json.dumps(config)})
    assert "every approval was voided" in edited.text
    assert console.world.plane.job(console.world.admin, job_id)["approvals"]["bank_a"] == "pending"
    bad = post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/edit", {"config": "{not json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.text


def test_a_job_beyond_the_remaining_budget_cannot_be_approved(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    admin = console.signed_in("admin2")
    draft = post(admin, "/console/jobs/new", "/console/jobs", wizard_form("greedy", epsilon="25"))
    job_id = int(str(draft.url).rsplit("/", 1)[1])
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    operator = console.signed_in("bank_a-op")
    inbox = operator.get("/console/approvals").text
    assert "this job cannot be approved" in inbox
    assert re.search(rf'data-test="approve-{job_id}"[^>]*\n?[^>]*disabled', inbox)
    refused = post(operator, "/console/approvals", f"/console/approvals/{job_id}/approve", {})
    assert refused.status_code == 409 and "epsilon" in refused.text
    assert console.world.plane.job(console.world.admin, job_id)["approvals"]["bank_a"] == "pending"
    no_reason = post(operator, "/console/approvals", f"/console/approvals/{job_id}/refuse", {"reason": " "})
    assert no_reason.status_code == 400
    said_no = post(operator, "/console/approvals", f"/console/approvals/{job_id}/refuse", {"reason": "too costly"})
    assert said_no.status_code == 200
    assert "too costly" in admin.get(f"/console/jobs/{job_id}").text


def test_wizard_errors_name_the_field_and_keep_the_input(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    admin = console.signed_in("admin2")
    form = wizard_form("bad", extra="[run\nrounds = ")
    reply = post(admin, "/console/jobs/new", "/console/jobs", form)
    assert reply.status_code == 400 and "not valid TOML" in reply.text and 'value="bad"' in reply.text
    reply = post(admin, "/console/jobs/new", "/console/jobs", {**wizard_form("bad"), "rounds": "many"})
    assert reply.status_code == 400 and "rounds must be a whole number" in reply.text
    assert console.world.plane.jobs(console.world.admin, 1) == []


def test_standing_rules_through_the_inbox(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    operator = console.signed_in("bank_a-op")
    added = post(operator, "/console/approvals", "/console/rules",
                 {"rule_id": "lr-eps1", "workflows": "horizontal", "max_epsilon": "1", "columns": "turnover, default"})
    assert added.status_code == 200 and "lr-eps1" in added.text
    rules = console.world.plane.rules(console.world.admin, "bank_a")
    assert rules[0]["rule"]["max_epsilon"] == 1.0 and rules[0]["rule"]["columns"] == ["turnover", "default"]
    removed = post(operator, "/console/approvals", f"/console/rules/{rules[0]['id']}/remove", {})
    assert removed.status_code == 200
    assert console.world.plane.rules(console.world.admin, "bank_a")[0]["active"] is False
    bad = post(operator, "/console/approvals", "/console/rules", {"rule_id": "x", "max_epsilon": "-1"})
    assert bad.status_code == 400


def test_sign_in_asks_for_the_authenticator_code_when_enrolled(tmp_path: Path) -> None:
    """The code is asked WITH the password (R14-WEB-14): a right password alone answers like a wrong one."""
    console, _ = seeded(tmp_path)
    clock = console.world.clock
    browser = console.signed_in("analyst")
    enrol = post(browser, "/console/account", "/console/account/totp", {})
    secret = re.search(r'data-test="totp-secret">([A-Z2-7]+)<', enrol.text).group(1)  # type: ignore[union-attr]
    code = pyotp.TOTP(secret).at(clock.now)
    confirmed = browser.post("/console/account/totp/confirm", data={"code": code, "csrf_token": csrf(enrol.text)})
    assert "Your authenticator is on" in confirmed.text
    fresh = console.browser()
    page = fresh.get("/console/sign-in")
    assert 'data-test="field-code"' in page.text
    no_code = fresh.post("/console/sign-in", data={"username": "analyst", "password": PASSWORD,
                                                  "csrf_token": csrf(page.text)})
    wrong = fresh.post("/console/sign-in", data={"username": "analyst", "password": "not the password",
                                                "csrf_token": csrf(page.text)})
    assert no_code.status_code == wrong.status_code == 401 and PASSWORD not in no_code.text
    clock.advance(seconds=30)
    good_code = pyotp.TOTP(secret).at(clock.now)
    good = fresh.post("/console/sign-in", data={"username": "analyst", "password": PASSWORD, "code": good_code,
                                               "csrf_token": csrf(page.text)})
    assert good.status_code == 200 and 'data-test="signed-in-as"' in good.text
    again = console.browser()  # the same code replayed from another browser: refused
    replay = again.post("/console/sign-in", data={"username": "analyst", "password": PASSWORD, "code": good_code,
                                                 "csrf_token": csrf(again.get("/console/sign-in").text)})
    assert replay.status_code == 401


def test_a_one_time_password_session_is_sent_to_choose_its_password(tmp_path: Path) -> None:
    """R14-WEB-1 in the console: every page sends a one-time-password session to /account until it changed."""
    console, cid = seeded(tmp_path)
    world = console.world
    invited = world.plane.invite_member(world.admin, cid, "bank_q")
    browser = console.browser()
    page = browser.get("/console/sign-in")
    first = browser.post("/console/sign-in", data={"username": invited["operator_username"],
                                                  "password": invited["one_time_password"],
                                                  "csrf_token": csrf(page.text)})
    assert str(first.url).endswith("/console/account")
    assert str(browser.get("/console/approvals").url).endswith("/console/account")
    changed = post(browser, "/console/account", "/console/account/password",
                   {"old_password": invited["one_time_password"], "new_password": "bank q's own password"})
    assert "Your password was changed" in changed.text
    assert str(browser.get("/console/approvals").url).endswith("/console/approvals")


def test_replacing_the_authenticator_needs_the_current_password(tmp_path: Path) -> None:
    """R14-WEB-5 in the console: without the password or code nothing changes; with it, the old factor stays
    until the new one is confirmed."""
    console, _ = seeded(tmp_path)
    accounts = console.world.plane.accounts
    analyst = console.world.users["analyst"]
    secret, _ = accounts.enrol_totp(analyst)
    accounts.confirm_totp(analyst, pyotp.TOTP(secret).at(console.world.clock.now))
    console.world.clock.advance(seconds=30)
    browser = console.browser()
    page = browser.get("/console/sign-in")
    browser.post("/console/sign-in", data={"username": "analyst", "password": PASSWORD,
                                           "code": pyotp.TOTP(secret).at(console.world.clock.now),
                                           "csrf_token": csrf(page.text)})
    refused = post(browser, "/console/account", "/console/account/totp", {"proof": "not my password"})
    assert 'data-test="totp-secret"' not in refused.text
    started = post(browser, "/console/account", "/console/account/totp", {"proof": PASSWORD})
    assert 'data-test="totp-secret"' in started.text
    assert accounts.user_by_id(analyst.user_id).totp_confirmed  # the old factor is still required


def test_assets_ship_in_the_package(tmp_path: Path) -> None:
    browser = make_console(tmp_path).browser()
    for path in ("/console/static/console.css", "/console/static/console.js"):
        reply = browser.get(path)
        assert reply.status_code == 200 and len(reply.content) > 500
        assert "http://" not in reply.text and "https://" not in reply.text  # nothing from another origin
        assert "max-age" in reply.headers["cache-control"]


def test_pages_load_no_inline_script_and_label_every_field(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    run_job(console)
    browser = console.signed_in("admin2")
    for path in ("/console/consortia", "/console/consortia/1", "/console/datasets", "/console/jobs/new",
                 "/console/jobs/1", "/console/runs", "/console/models", "/console/audit", "/console/account"):
        html = browser.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert " on" + "click=" not in html and "javascript:" not in html, path
        assert 'class="skip-link" href="#main"' in html and 'id="main"' in html
        ids = set(re.findall(r'<label for="([^"]+)"', html))
        typed = r'<(?:input|select|textarea)(?![^>]*type="(?:hidden|checkbox|radio)")[^>]*\bid="([^"]+)"'
        for field_id in re.findall(typed, html):
            assert field_id in ids, (path, field_id)


def test_sign_in_offers_openid_connect_when_configured_and_is_audited(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    assert 'data-test="sign-in-oidc"' not in console.browser().get("/console/sign-in").text
    console.app.state.console.oidc_login_path = "/auth/oidc/login"  # what sampan.web.oidc.mount_oidc sets
    page = console.browser().get("/console/sign-in?next=/runs").text
    assert 'href="/auth/oidc/login?next=/console/runs"' in page or \
        'href="/auth/oidc/login?next=%2Fconsole%2Fruns"' in page
    console.signed_in("auditor")
    entries = [e for e in console.world.plane.store.events("control-plane") if e.kind == "cp.signed_in"]
    assert entries and entries[-1].detail["actor"] == "person:auditor"


def test_admin_makes_and_disables_accounts(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    admin = console.signed_in("admin2")
    made = post(admin, "/console/users", "/console/users", {"username": "risk-analyst", "role": "analyst"})
    one_time = re.search(r'data-test="created-password">([^<]+)<', made.text).group(1)  # type: ignore[union-attr]
    assert one_time not in admin.get("/console/users").text  # shown once
    analyst = console.signed_in("risk-analyst", one_time)
    assert analyst.get("/console/jobs").status_code == 200
    assert 'href="/console/audit"' not in analyst.get("/console/jobs").text  # no link to what the role cannot see
    user_id = next(u["id"] for u in console.world.plane.users(console.world.admin) if u["username"] == "risk-analyst")
    post(admin, "/console/users", f"/console/users/{user_id}/disable", {})
    assert "/sign-in" in str(analyst.get("/console/jobs").url)  # its session ended
    refused = post(admin, "/console/users", "/console/users", {"username": "op", "role": "party_operator"})
    assert refused.status_code == 400 and "organisation" in refused.text
    auditor = console.signed_in("auditor")
    assert 'data-test="create-user-form"' not in auditor.get("/console/users").text


def test_the_wizard_makes_a_job_for_every_workflow(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    admin = console.signed_in("admin2")
    for workflow in ("horizontal", "vertical", "evaluation", "scoring", "synthesis", "checks"):
        form = {**wizard_form(f"job-{workflow}", epsilon="" if workflow != "horizontal" else "1.0"),
                "workflow": workflow, "label_holder": "bank_a" if workflow == "vertical" else ""}
        made = post(admin, "/console/jobs/new", "/console/jobs", form)
        assert made.status_code == 200 and "/console/jobs/" in str(made.url), (workflow, made.text[-400:])
        assert f">{workflow}<" in made.text  # the spec's workflow, on the draft's page
    jobs = console.world.plane.jobs(console.world.admin, 1)
    assert [j["spec"]["workflow"] for j in jobs] == ["horizontal", "vertical", "evaluation", "scoring", "synthesis",
                                                    "checks"]
    assert jobs[1]["spec"]["label_holder"] == "bank_a"
    missing = post(admin, "/console/jobs/new", "/console/jobs", {**wizard_form("v"), "workflow": "vertical"})
    assert missing.status_code == 400 and "label holder" in missing.text


def test_the_live_page_of_a_running_run_polls_and_cancels(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    job_id, run_id = run_job(console)
    store = console.world.plane.store
    store.set_status(run_id, "running")
    with console.world.plane.engine.begin() as c:  # the fake agents finish at once: play a run still going
        c.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(status="running"))
    admin = console.signed_in("admin2")
    live = admin.get(f"/console/runs/{run_id}").text
    assert 'data-state="live"' in live and 'data-test="cancel-run"' in live and "updates every 2 s" in live
    assert 'data-test="cancel-run"' not in console.signed_in("auditor").get(f"/console/runs/{run_id}").text
    cancelled = post(admin, f"/console/runs/{run_id}", f"/console/runs/{run_id}/cancel", {})
    assert "Cancel sent" in cancelled.text
    assert store.get_run(run_id).status == "cancelled"
    assert console.world.plane.job(console.world.admin, job_id)["status"] == "cancelled"
