"""The portal's pages over HTTP (Starlette's TestClient on the real app, a real Portal on a real store; a fake
qualifier and runner only where the network would be): every security claim of the page layer attacked.

- CSRF: every POST page refuses a form without the session's token, and one carrying another session's token;
- sign-in redirects, cookies (HttpOnly, SameSite=Strict, path /portal), security headers and CSP on every page;
- stored XSS: a project name with markup comes back escaped;
- roles: an applicant gets 403 on the reviewer and admin pages, 404 on another applicant's project, evaluation,
  progress JSON and downloads; the full report is refused until a reviewer grants it;
- open redirect: the sign-in form's `next` never leaves the portal;
- the admin's allow-list: validated, saved, applied to the Portal's egress policy and audited;
- a one-time-password session sees nothing but its account page until it chose its own password.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from _core_fixtures import PASSWORD, TOKEN, FakeRunner, applicant, claimed_project, make_portal

from sampan.runtime.store import Store

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sampan.web.portal.app import PortalSettings, create_portal_app, page_routes  # noqa: E402
from sampan.web.portal.pages_base import SESSION_COOKIE  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def stack(tmp_path) -> Any:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    runner = FakeRunner(tmp_path / "runs")
    portal = make_portal(store, tmp_path / "portal", runner=runner)
    app = create_portal_app(portal, PortalSettings(accounts=portal.accounts))
    yield portal, app, runner
    store.close()


def _client(app: Any) -> TestClient:
    return TestClient(app, follow_redirects=False)


def _token(client: TestClient, path: str) -> str:
    found = CSRF.search(client.get(path).text)
    assert found, path
    return found.group(1)


def _signed_in(app: Any, email: str, password: str = PASSWORD) -> TestClient:
    client = _client(app)
    answer = client.post("/portal/sign-in", data={"email": email, "password": password, "next": "/projects",
                                                  "csrf_token": _token(client, "/portal/sign-in")})
    assert answer.status_code == 303, answer.text[:300]
    return client


def test_every_post_page_refuses_a_missing_or_foreign_csrf_token(stack) -> None:
    portal, app, _runner = stack
    applicant(portal, "vendor@acme.example")
    applicant(portal, "other@beta.example", "Beta")
    vendor, other = _signed_in(app, "vendor@acme.example"), _signed_in(app, "other@beta.example")
    foreign = _token(other, "/portal/projects")
    posts = [path for method, path in page_routes() if method == "POST"]
    assert "/portal/projects/new" in posts and "/portal/register" in posts
    for path in posts:
        url = re.sub(r"\{[a-z_]+\}", "1", path)
        for form in ({}, {"csrf_token": foreign}, {"csrf_token": "0" * 64}):
            answer = vendor.post(url, data=form)
            assert answer.status_code == 403, (url, form, answer.status_code)
            assert "security token" in answer.text
    assert portal.projects(portal.accounts.authenticate("vendor@acme.example", PASSWORD)) == []


def test_pages_need_a_session_and_carry_the_security_headers(stack) -> None:
    portal, app, _runner = stack
    client = _client(app)
    for path in ("/portal/projects", "/portal/projects/1", "/portal/evaluations/1", "/portal/review", "/portal/admin",
                 "/portal/evaluations/1/progress.json", "/portal/evaluations/1/download/json"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/portal/sign-in?next="), path
    home = client.get("/portal/")
    assert home.status_code == 200
    csp = home.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert home.headers["x-frame-options"] == "DENY" and home.headers["cache-control"] == "no-store"
    assert "<script>" not in home.text and "onclick" not in home.text  # no inline script anywhere
    applicant(portal, "vendor@acme.example")
    signed_in = _client(app)
    answer = signed_in.post("/portal/sign-in", data={"email": "vendor@acme.example", "password": PASSWORD,
                                                     "csrf_token": _token(signed_in, "/portal/sign-in")})
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/portal" in cookie


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil.example", "/%2F%2Fevil"])
def test_sign_in_never_redirects_off_the_portal(stack, target: str) -> None:
    portal, app, _runner = stack
    applicant(portal, "vendor@acme.example")
    client = _client(app)
    answer = client.post("/portal/sign-in", data={"email": "vendor@acme.example", "password": PASSWORD,
                                                  "next": target, "csrf_token": _token(client, "/portal/sign-in")})
    assert answer.status_code == 303 and answer.headers["location"] == "/portal/projects"


def test_markup_in_a_project_name_is_escaped(stack) -> None:
    portal, app, _runner = stack
    vendor = applicant(portal, "vendor@acme.example")
    pid = portal.create_project(vendor, '<script>alert("x")</script><img src=x onerror=alert(1)>',
                                "https://fl.acme.example/bench", "", TOKEN)
    client = _signed_in(app, "vendor@acme.example")
    for path in ("/portal/projects", f"/portal/projects/{pid}"):
        page = client.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert" in page
        assert TOKEN not in page  # the bench token is never shown back


def test_an_applicant_cannot_reach_staff_pages_or_another_applicants_work(stack) -> None:
    portal, app, runner = stack
    owner = applicant(portal, "owner@alpha.example", "Alpha")
    pid = claimed_project(portal, owner)
    eid = portal.start_evaluation(owner, pid)
    runner.finish(eid)
    applicant(portal, "snoop@beta.example", "Beta")
    snoop = _signed_in(app, "snoop@beta.example")
    for path in ("/portal/review", "/portal/admin", "/portal/admin/audit"):
        assert snoop.get(path).status_code == 403, path
    for path in (f"/portal/projects/{pid}", f"/portal/evaluations/{eid}", f"/portal/evaluations/{eid}/progress.json",
                 f"/portal/evaluations/{eid}/download/json", f"/portal/evaluations/{eid}/download/html?full=1"):
        answer = snoop.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "Acme FL" not in answer.text
    token = _token(snoop, "/portal/projects")
    for action in (f"/portal/projects/{pid}/qualify", f"/portal/projects/{pid}/evaluate",
                   f"/portal/projects/{pid}/questionnaire", f"/portal/evaluations/{eid}/full-report"):
        assert snoop.post(action, data={"csrf_token": token, "invoice_reference": "X"}).status_code == 404, action
    assert "Acme FL" not in snoop.get("/portal/projects").text


def test_full_report_only_after_a_reviewers_grant(stack) -> None:
    portal, app, runner = stack
    owner = applicant(portal, "owner@alpha.example", "Alpha")
    pid = claimed_project(portal, owner)
    eid = portal.start_evaluation(owner, pid)
    runner.finish(eid)
    client = _signed_in(app, "owner@alpha.example")
    page = client.get(f"/portal/evaluations/{eid}").text
    assert 'data-test="claims-table"' in page and 'data-test="full-json"' not in page
    summary = client.get(f"/portal/evaluations/{eid}/download/json")
    assert summary.status_code == 200 and "attachment" in summary.headers["content-disposition"]
    assert "sandbox" in summary.headers["content-security-policy"]
    assert client.get(f"/portal/evaluations/{eid}/download/json?full=1").status_code == 403
    assert client.get(f"/portal/evaluations/{eid}/download/exe").status_code == 400
    client.post(f"/portal/evaluations/{eid}/full-report",
                data={"csrf_token": _token(client, f"/portal/evaluations/{eid}"), "invoice_reference": "INV-1"})
    portal.accounts.create_user("reviewer@portal.example", "reviewer", PASSWORD)
    reviewer = _signed_in(app, "reviewer@portal.example")
    queue = reviewer.get("/portal/review").text
    assert "INV-1" in queue
    request_id = re.search(r'action="/portal/review/(\d+)"', queue).group(1)  # type: ignore[union-attr]
    assert reviewer.post(f"/portal/review/{request_id}", data={
        "csrf_token": _token(reviewer, "/portal/review"), "decision": "grant", "note": "paid"}).status_code == 303
    full = client.get(f"/portal/evaluations/{eid}/download/json?full=1")
    assert full.status_code == 200 and full.json()["manifest"]
    assert 'data-test="full-json"' in client.get(f"/portal/evaluations/{eid}").text


def test_admin_allow_list_is_validated_saved_applied_and_audited(stack) -> None:
    portal, app, _runner = stack
    portal.accounts.create_user("root@portal.example", "admin", PASSWORD)
    admin = _signed_in(app, "root@portal.example")
    token = _token(admin, "/portal/admin")
    bad = admin.post("/portal/admin/allow-list", data={"csrf_token": token, "allow": "10.0.0.0/8\nnot a host!"})
    assert bad.status_code == 400 and "neither a CIDR nor a host name" in bad.text
    ok = admin.post("/portal/admin/allow-list", data={"csrf_token": token,
                                                      "allow": "10.20.0.0/16\nbench.internal.example"})
    assert ok.status_code == 303
    assert portal.egress.allow == ["10.20.0.0/16", "bench.internal.example"]
    assert portal.egress.allows_ip("10.20.3.4") and not portal.egress.allows_ip("10.21.0.1")
    from sampan.web.portal.allow_list import stored_allow_list

    assert stored_allow_list(portal.engine) == ["10.20.0.0/16", "bench.internal.example"]
    events = [e for e in portal.store.events("portal") if e.kind == "portal.allow_list_changed"]
    assert events and events[-1].detail["after"] == ["10.20.0.0/16", "bench.internal.example"]
    assert events[-1].detail["actor"] == "portal:root@portal.example"
    portal.accounts.create_user("reviewer@portal.example", "reviewer", PASSWORD)
    reviewer = _signed_in(app, "reviewer@portal.example")
    reviewer_token = _token(reviewer, "/portal/review")
    refused = reviewer.post("/portal/admin/allow-list", data={"csrf_token": reviewer_token, "allow": "0.0.0.0/0"})
    assert refused.status_code == 403 and portal.egress.allow == ["10.20.0.0/16", "bench.internal.example"]


def test_a_one_time_password_session_only_reaches_its_account_page(stack) -> None:
    portal, app, _runner = stack
    one_time = portal.accounts.create_user("new@portal.example", "reviewer")
    client = _signed_in(app, "new@portal.example", one_time)
    for path in ("/portal/projects", "/portal/review", "/portal/admin/audit"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/portal/account", path
    token = _token(client, "/portal/account")
    answer = client.post("/portal/account/password", data={"csrf_token": token, "old_password": one_time,
                                                           "new_password": "a new long passphrase",
                                                           "new_password_again": "a new long passphrase"})
    assert answer.status_code == 303
    again = _signed_in(app, "new@portal.example", "a new long passphrase")
    assert again.get("/portal/review").status_code == 200


def test_registration_page_names_the_refused_field(stack) -> None:
    _portal, app, _runner = stack
    client = _client(app)
    form = {"company_name": "Acme", "registration_number": "1", "country": "HK", "contact_name": "A",
            "email": "a@acme.example", "password": "short", "password_again": "short",
            "csrf_token": _token(client, "/portal/register")}
    answer = client.post("/portal/register", data=form)
    assert answer.status_code == 400 and "password" in answer.text and "Traceback" not in answer.text
    form.update(password="long enough passphrase", password_again="another long passphrase")
    assert "differ" in client.post("/portal/register", data=form).text


def test_admin_disables_an_account_and_its_session_ends_and_the_audit_page_verifies_the_chain(stack) -> None:
    portal, app, _runner = stack
    portal.accounts.create_user("root@portal.example", "admin", PASSWORD)
    vendor = applicant(portal, "vendor@acme.example")
    signed_in = _signed_in(app, "vendor@acme.example")
    admin = _signed_in(app, "root@portal.example")
    audit = admin.get("/portal/admin/audit").text
    assert 'data-test="audit-verified"' in audit and "chain verifies" in audit and "portal.register" in audit
    answer = admin.post(f"/portal/admin/users/{vendor.user_id}/disabled",
                        data={"csrf_token": _token(admin, "/portal/admin"), "disabled": "yes"})
    assert answer.status_code == 303
    assert signed_in.get("/portal/projects").status_code == 303  # its session ended: back to sign-in
    assert any(e.kind == "portal.user_disabled" for e in portal.store.events("portal"))
    own = portal.accounts.authenticate("root@portal.example", PASSWORD)
    refused = admin.post(f"/portal/admin/users/{own.user_id}/disabled",
                         data={"csrf_token": _token(admin, "/portal/admin"), "disabled": "yes"})
    assert refused.status_code == 400 and "cannot disable its own account" in refused.text


def test_the_admin_page_refuses_an_unknown_role_by_name(stack) -> None:
    portal, app, _runner = stack
    portal.accounts.create_user("root@portal.example", "admin", PASSWORD)
    admin = _signed_in(app, "root@portal.example")
    answer = admin.post("/portal/admin/users", data={"csrf_token": _token(admin, "/portal/admin"),
                                                     "email": "x@portal.example", "role": "superuser"})
    assert answer.status_code == 400 and "role" in answer.text


def test_the_verification_link_asks_for_the_registrations_password(stack) -> None:
    portal, app, _runner = stack
    client = _client(app)
    form = {"company_name": "Acme", "registration_number": "1", "country": "HK", "contact_name": "A",
            "email": "new@acme.example", "password": PASSWORD, "password_again": PASSWORD,
            "csrf_token": _token(client, "/portal/register")}
    with pytest.MonkeyPatch.context() as patch:  # catch the link the embedded mode logs
        links: list[str] = []
        patch.setattr(portal.accounts, "log_links", False)
        app.state.portal.settings.send_link = lambda email, path: links.append(path)
        assert 'data-test="registered"' in client.post("/portal/register", data=form).text
    link = links[0]
    page = client.get(link)  # following the link changes nothing by itself
    assert page.status_code == 200 and 'data-test="verify-form"' in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token and link.endswith(token.group(1))
    post = {"token": token.group(1), "csrf_token": _token(client, link)}
    wrong = client.post("/portal/verify", data={**post, "password": "not the registration's password"})
    assert wrong.status_code == 401 and 'data-test="verify-error"' in wrong.text
    done = client.post("/portal/verify", data={**post, "password": PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/portal/sign-in"
    assert portal.accounts.authenticate("new@acme.example", PASSWORD).email == "new@acme.example"
