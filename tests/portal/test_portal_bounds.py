"""Bounds an applicant cannot talk its way past: projects per account (paged staff lists), qualification checks in
flight, and a qualification that counts only for the server information it checked (R17-PORTAL-1, -10, -11)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from _core_fixtures import PASSWORD, TOKEN, FakeCheck, FakeReport, FakeRunner, applicant, make_portal, staff

from sampan.runtime.store import Store
from sampan.web.errors import Conflict
from sampan.web.portal.inflight import CheckSlots
from sampan.web.portal.limits import RateLimits


@pytest.fixture
def store(tmp_path) -> Any:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    yield store
    store.close()


def _kinds(store: Store) -> list[str]:
    return [e.kind for e in store.events("portal")]


def test_an_applicants_projects_are_capped_and_the_refusal_is_audited(store, tmp_path) -> None:
    portal = make_portal(store, tmp_path / "portal")
    portal.limits = RateLimits(projects_per_applicant=3)
    vendor = applicant(portal, "vendor@acme.example")
    for i in range(3):
        portal.create_project(vendor, f"p{i}", f"https://p{i}.example/", "", TOKEN)
    with pytest.raises(Conflict) as full:
        portal.create_project(vendor, "one more", "https://more.example/", "", TOKEN)
    assert full.value.field == "account" and "3 projects" in full.value.message and "(3)" in full.value.message
    assert portal.project_count(vendor) == 3 and "portal.project_refused" in _kinds(store)
    other = applicant(portal, "other@beta.example")  # per account, not per portal
    assert portal.create_project(other, "b", "https://b.example/", "", TOKEN)
    admin = staff(portal, "admin@portal.example", "admin")  # staff are few and made by an admin: not capped
    for i in range(4):
        portal.create_project(admin, f"a{i}", f"https://a{i}.example/", "", TOKEN)


def test_project_lists_are_paged(store, tmp_path) -> None:
    portal = make_portal(store, tmp_path / "portal")
    vendor = applicant(portal, "vendor@acme.example")
    ids = [portal.create_project(vendor, f"p{i}", f"https://p{i}.example/", "", TOKEN) for i in range(5)]
    reviewer = staff(portal, "rev@portal.example", "reviewer")
    first = [p["id"] for p in portal.projects(reviewer, page=1, per_page=2)]
    third = [p["id"] for p in portal.projects(reviewer, page=3, per_page=2)]
    assert first == ids[::-1][:2] and third == [ids[0]] and portal.project_count(reviewer) == 5
    assert portal.projects(reviewer, page=9, per_page=2) == []


def test_the_projects_page_shows_one_page_and_a_pager(store, tmp_path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sampan.web.portal.app import PortalSettings, create_portal_app
    from sampan.web.portal.service import PAGE_SIZE

    portal = make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs"))
    portal.limits = RateLimits(projects_per_applicant=None)
    vendor = applicant(portal, "vendor@acme.example")
    for i in range(PAGE_SIZE + 1):
        portal.create_project(vendor, f"project-{i}", f"https://p{i}.example/", "", TOKEN)
    staff(portal, "rev@portal.example", "reviewer")
    client = TestClient(create_portal_app(portal, PortalSettings(accounts=portal.accounts)), follow_redirects=False)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/portal/sign-in").text)
    assert csrf
    signed = client.post("/portal/sign-in", data={"email": "rev@portal.example", "password": PASSWORD,
                                                  "next": "/projects", "csrf_token": csrf.group(1)})
    assert signed.status_code == 303, signed.text[:300]
    page1 = client.get("/portal/projects").text
    assert page1.count('href="/portal/projects/') == PAGE_SIZE and "Page 1 of 2" in page1
    page2 = client.get("/portal/projects?page=2").text
    assert "project-0<" in page2 and "Page 2 of 2" in page2
    assert "Page 2 of 2" in client.get("/portal/projects?page=99999").text  # clamped, never an error


class _Held:
    """A qualifier that holds each check until released (a slow endpoint), counting those inside."""

    def __init__(self) -> None:
        self.inside = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, url: str, token: str, tls_cert_pem: str | None, policy: Any) -> FakeReport:
        self.inside += 1
        self.entered.set()
        self.release.wait(20)
        self.inside -= 1
        return FakeReport(True, [FakeCheck("token", True, "accepted")])


def test_one_check_in_flight_per_account_and_a_bound_for_the_portal(store, tmp_path) -> None:
    held = _Held()
    portal = make_portal(store, tmp_path / "portal", qualifier=held)
    portal.limits = RateLimits(checks_in_flight_total=1)
    vendor, other = applicant(portal, "vendor@acme.example"), applicant(portal, "other@beta.example")
    first = portal.create_project(vendor, "a", "https://a.example/", "", TOKEN)
    second = portal.create_project(vendor, "b", "https://b.example/", "", TOKEN)
    theirs = portal.create_project(other, "c", "https://c.example/", "", TOKEN)
    thread = threading.Thread(target=portal.qualify, args=(vendor, first), daemon=True)
    thread.start()
    try:
        assert held.entered.wait(10)
        with pytest.raises(Conflict, match="already running for your account"):
            portal.qualify(vendor, second)
        with pytest.raises(Conflict, match="as many qualification checks as it allows"):
            portal.qualify(other, theirs)  # the portal-wide bound
    finally:
        held.release.set()
        thread.join(20)
    assert portal.check_slots.running() == 0 and held.inside == 0
    assert portal.qualify(vendor, second)["passed"]  # the slot was given back; refusals used no hourly budget
    assert _kinds(store).count("portal.qualification_refused") == 2


def test_check_slots_free_on_error() -> None:
    slots = CheckSlots()
    with pytest.raises(RuntimeError), slots.take("user:1"):
        raise RuntimeError("the check broke")
    assert slots.running() == 0
    with slots.take("user:1", per_account=2), slots.take("user:1", per_account=2):
        assert slots.running("user:1") == 2


def test_a_passed_check_does_not_count_after_the_server_information_changes(store, tmp_path) -> None:
    """Even a passed row written after the change (the race's worst order) does not let the new details through."""
    runner = FakeRunner(tmp_path / "runs")
    portal = make_portal(store, tmp_path / "portal", runner=runner)
    vendor = applicant(portal, "vendor@acme.example")
    pid = portal.create_project(vendor, "a", "https://a.example/", "", TOKEN)
    portal.save_questionnaire(vendor, pid, {"F-API-VERSION": True}, "", True, "")
    assert portal.qualify(vendor, pid)["passed"]
    from sqlalchemy import update

    from sampan.web.portal import tables as t

    with store.engine.begin() as c:  # the change lands without update_project's own failed row
        c.execute(update(t.projects).where(t.projects.c.id == pid).values(endpoint_url="https://other.example/"))
    latest = portal.last_qualification(vendor, pid)
    assert latest is not None and not latest["passed"]
    assert latest["checks"][-1]["name"] == "server information changed"
    assert portal.project(vendor, pid)["qualification"] == "failed"
    with pytest.raises(Conflict, match="changed after the last qualification"):
        portal.start_evaluation(vendor, pid)
    assert not runner.jobs
    assert portal.qualify(vendor, pid)["passed"]  # checked again: the new endpoint is now the qualified one
    eid = portal.start_evaluation(vendor, pid)
    assert runner.jobs[eid][0].url == "https://other.example/"
