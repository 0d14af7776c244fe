"""Attacks on the web console, each through its public pages as the attacker would try them.

- Stored XSS: another organisation (or a bank's agent) names a consortium member, a dataset, its columns, a job,
  a refusal reason or a rule with markup; every page shows it escaped (Jinja2 autoescape) and CSP forbids inline
  script anyway.
- Open redirect after sign-in: `next` pointing to another origin sends the user to the console's home instead.
- Clickjacking and leaks: every console page (sign-in and error pages too) forbids framing, sends no Referer,
  forbids MIME sniffing and (authenticated or not) is never cached.
- Session cookie theft or riding: HttpOnly, SameSite=Strict, Secure under TLS; sign-out ends it on the server;
  an idle (30 min) or old (12 h) session sends the browser back to the sign-in page.
- A served HTML report with script in it cannot run it (its own CSP: no script, sandboxed, no network).
- A forged flash note (phishing text in a cookie) is not shown; a bank's operator cannot decide for another bank
  through the console, whatever it posts.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _console import PASSWORD, Console, csrf, post, seeded, wizard_form  # noqa: E402
from _web_plane import ManualClock  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402
from sampan.web.app import AppSettings, create_app  # noqa: E402
from sampan.web.auth import Accounts  # noqa: E402
from sampan.web.fake_gateway import FakeDataset, FakeGateway  # noqa: E402
from sampan.web.service import ControlPlane  # noqa: E402

EVIL = '<img src=x onerror="alert(1)">'
EVIL_SCRIPT = "<script>alert(2)</script>"


def _started(console: Console, name: str = "sme-lr", extra: str = "") -> tuple[int, str]:
    admin = console.signed_in("admin2")
    made = post(admin, "/console/jobs/new", "/console/jobs", wizard_form(name, extra=extra))
    job_id = int(str(made.url).rsplit("/", 1)[1])
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    for bank in ("bank_a", "bank_b", "bank_c"):
        post(console.signed_in(f"{bank}-op"), "/console/approvals", f"/console/approvals/{job_id}/approve", {})
    started = post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/start", {})
    return job_id, str(started.url).rsplit("/", 1)[1]


def test_markup_in_names_from_other_organisations_is_escaped_everywhere(tmp_path: Path) -> None:
    clock = ManualClock()
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}", audit_key=tmp_path / "audit.pem")
    columns = {EVIL: "float", EVIL_SCRIPT: "float", "default": "int"}
    gateway = FakeGateway(store, tmp_path / "agents", {"bank_a": [FakeDataset(EVIL, columns, "default")]})
    plane = ControlPlane(store, gateway, Accounts(store.engine, clock=clock), clock)
    console = Console(None, create_app(plane, AppSettings(secure_cookies=True)))  # type: ignore[arg-type]
    plane.accounts.create_user("boss", "consortium_admin", password=PASSWORD)
    operator, _ = plane.accounts.create_user("op", "party_operator", "bank_a", password=PASSWORD)
    admin = console.signed_in("boss")
    post(admin, "/console/consortia", "/console/consortia", {"name": f"HK {EVIL_SCRIPT}", "description": EVIL})
    post(admin, "/console/consortia/1", "/console/consortia/1/members", {"organisation": "bank_a"})
    bank = console.signed_in("op")
    post(bank, "/console/datasets", "/console/datasets", {"consortium_id": "1", "name": EVIL})
    form = wizard_form(f"job {EVIL_SCRIPT}", parties=("bank_a",), columns=(EVIL, EVIL_SCRIPT, "default"),
                       dataset=EVIL)
    made = post(admin, "/console/jobs/new", "/console/jobs", form)
    assert made.status_code == 200, made.text[-400:]
    post(admin, "/console/jobs/1", "/console/jobs/1/submit", {})
    post(bank, "/console/approvals", "/console/approvals/1/refuse", {"reason": EVIL_SCRIPT})
    post(bank, "/console/approvals", "/console/rules", {"rule_id": f"r{EVIL_SCRIPT}", "columns": EVIL})
    pages = [(admin, p) for p in ("/console/consortia", "/console/consortia/1", "/console/datasets",
                                  "/console/datasets/1", "/console/jobs", "/console/jobs/1", "/console/jobs/new",
                                  "/console/approvals", "/console/audit")]
    pages += [(bank, p) for p in ("/console/approvals", "/console/datasets", "/console/datasets/1")]
    for browser, path in pages:
        html = browser.get(path).text
        assert EVIL not in html and EVIL_SCRIPT not in html, path
        assert "<script>" not in html, path
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in admin.get("/console/jobs/1").text  # shown, as text
    assert operator.organisation == "bank_a"


def test_sign_in_never_redirects_to_another_origin(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example",
                   "javascript:alert(1)", "/\r\nLocation: https://evil.example", "http:/evil.example"):
        browser = console.browser()
        page = browser.get("/console/sign-in", params={"next": target})
        reply = browser.post("/console/sign-in", follow_redirects=False, data={
            "username": "analyst", "password": PASSWORD, "next": target, "csrf_token": csrf(page.text)})
        assert reply.status_code == 303, target
        location = reply.headers["location"]
        assert location == "/console/", (target, location)
    # a local destination is kept
    browser = console.browser()
    page = browser.get("/console/sign-in?next=/runs")
    reply = browser.post("/console/sign-in", follow_redirects=False, data={
        "username": "analyst", "password": PASSWORD, "next": "/runs", "csrf_token": csrf(page.text)})
    assert reply.headers["location"] == "/console/runs"


def test_every_console_page_forbids_framing_sniffing_referrers_and_caching(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    anonymous, admin = console.browser(), console.signed_in("admin2")
    replies = [anonymous.get("/console/sign-in"), admin.get("/console/consortia"), admin.get("/console/jobs/999"),
               admin.get("/console/audit"), console.signed_in("bank_a-op").get("/console/audit")]
    for reply in replies:
        headers = reply.headers
        assert headers["x-frame-options"] == "DENY"
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
    assert replies[2].status_code == 404 and replies[4].status_code == 403


def test_session_cookie_flags_and_sign_out_ends_the_session(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    browser = console.browser()
    page = browser.get("/console/sign-in")
    presession = page.headers["set-cookie"].lower()
    assert "httponly" in presession and "samesite=strict" in presession and "secure" in presession
    reply = browser.post("/console/sign-in", follow_redirects=False, data={
        "username": "analyst", "password": PASSWORD, "csrf_token": csrf(page.text)})
    cookie = next(c for c in reply.headers.get_list("set-cookie") if c.startswith("sampan_session="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "secure" in flags and "path=/" in flags
    session_id = cookie.split(";")[0].split("=", 1)[1]
    copy = console.browser()
    copy.cookies.set("sampan_session", session_id)
    assert copy.get("/console/consortia", follow_redirects=False).status_code == 200  # the cookie alone works
    post(browser, "/console/runs", "/console/sign-out", {})
    thief = console.browser()
    thief.cookies.set("sampan_session", session_id)
    replay = thief.get("/console/consortia", follow_redirects=False)
    assert replay.status_code == 303 and "/sign-in" in replay.headers["location"]
    # the sign-in form itself needs its CSRF token (no login CSRF)
    forced = console.browser().post("/console/sign-in", data={"username": "analyst", "password": PASSWORD})
    assert forced.status_code == 403


def test_a_report_with_script_in_it_is_served_without_the_power_to_run_it(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    reports = tmp_path / "reports"
    reports.mkdir()
    _, run_id = _started(console, extra=f'[run]\nreport_dir = "{reports}"\n')
    (reports / f"{run_id}.html").write_text(f"<html><body>report {EVIL_SCRIPT}</body></html>")
    (reports / f"{run_id}.receipt.json").write_text(json.dumps({"run_id": run_id, "note": EVIL_SCRIPT}))
    browser = console.signed_in("auditor")
    report = browser.get(f"/console/runs/{run_id}/report")
    assert report.status_code == 200
    csp = report.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "sandbox" in csp and "default-src 'none'" in csp
    assert report.headers["x-frame-options"] == "DENY"
    page = browser.get(f"/console/runs/{run_id}/receipt")  # the readable page: every receipt value escaped
    assert page.status_code == 200 and EVIL_SCRIPT not in page.text and "&lt;script&gt;" in page.text
    receipt = browser.get(f"/console/runs/{run_id}/receipt.json")
    assert receipt.headers["content-type"].startswith("application/json")
    assert receipt.headers["x-content-type-options"] == "nosniff" and "sandbox" in receipt.headers[
        "content-security-policy"]
    assert json.loads(receipt.text)["run_id"] == run_id


def test_a_forged_flash_note_is_not_shown(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    browser = console.signed_in("analyst")
    body = base64.urlsafe_b64encode(json.dumps([["error", "Call +852 0000 to unlock"]]).encode()).decode()
    for value in (f"{body}.{'0' * 64}", body, f"{body}.", "garbage"):
        browser.cookies.set("sampan_flash", value)
        page = browser.get("/console/consortia")
        assert "Call +852" not in page.text
    browser.cookies.set("sampan_flash", console.app.state.console.flasher.encode([("error", "Call +852 0000")]))
    assert "Call +852" in browser.get("/console/consortia").text  # ...only a note the console signed is shown


def test_an_operator_cannot_decide_for_another_bank_through_the_console(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    admin = console.signed_in("admin2")
    made = post(admin, "/console/jobs/new", "/console/jobs", wizard_form("b-and-c", parties=("bank_b", "bank_c")))
    job_id = int(str(made.url).rsplit("/", 1)[1])
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    attacker = console.signed_in("bank_a-op")
    inbox = attacker.get("/console/approvals", params={"party": "bank_b"}).text
    assert "b-and-c" not in inbox and "Approval inbox · bank_a" in inbox
    token = csrf(inbox)
    for data in ({}, {"party": "bank_b"}, {"organisation": "bank_b"}):
        reply = attacker.post(f"/console/approvals/{job_id}/approve", data={**data, "csrf_token": token})
        assert reply.status_code == 400 and "reads no data of &#39;bank_a&#39;" in reply.text
    approvals = console.world.plane.job(console.world.admin, job_id)["approvals"]
    assert approvals == {"bank_b": "pending", "bank_c": "pending"}
    assert attacker.post("/console/rules", data={"rule_id": "x", "party": "bank_b", "csrf_token": token}).status_code \
        == 200
    assert console.world.plane.rules(console.world.admin, "bank_b") == []  # the rule went to bank_a's own list
    assert re.search(r"Approval inbox", attacker.get("/console/approvals").text)


def test_an_idle_or_old_console_session_is_over(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    clock = console.world.clock
    browser = console.signed_in("analyst")
    clock.advance(minutes=20)
    assert browser.get("/console/jobs", follow_redirects=False).status_code == 200  # in use: still on
    clock.advance(minutes=31)  # idle past the 30-minute limit
    idle = browser.get("/console/jobs", follow_redirects=False)
    assert idle.status_code == 303 and "/console/sign-in" in idle.headers["location"]
    browser = console.signed_in("analyst")
    for _ in range(26):  # kept busy, but 12 hours after sign-in it ends all the same
        clock.advance(minutes=29)
        reply = browser.get("/console/jobs", follow_redirects=False)
    assert reply.status_code == 303 and "/console/sign-in" in reply.headers["location"]
