"""Attack: an applicant uses the portal to send a stream of requests to an endpoint (its own or a third party's).

The qualification check and an evaluation each make the portal connect to the address the applicant entered.
The applicant repeats `qualify`, spreads the checks over many projects, fires them in parallel, waits for a
restart, or starts evaluation after evaluation: every way is refused once the limit is used up, with no outbound
call made, a "try again after HH:MM" answer, and an entry in the signed audit log.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from _core_fixtures import Clock, FakeQualifier, FakeRunner, applicant, claimed_project, make_portal, staff
from sqlalchemy import event

from sampan.runtime.store import Store
from sampan.web.errors import ControlPlaneError
from sampan.web.portal import Portal
from sampan.web.portal.limits import RateLimited, RateLimits, when


@pytest.fixture
def clock() -> Clock:
    return Clock()  # 2026-12-07 12:00 UTC


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url):
    s = Store.open(url)
    yield s
    s.close()


@pytest.fixture
def portal(store, tmp_path, clock) -> Portal:
    return make_portal(store, tmp_path / "portal", clock=clock, runner=FakeRunner(tmp_path / "runs"))


def _refusals(store: Store) -> list[dict]:
    return [dict(e.detail) for e in store.events("portal") if e.kind == "portal.rate_limited"]


def test_qualify_repeated_on_one_project_is_refused_until_the_hour_is_over(portal, store, clock, tmp_path) -> None:
    owner = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, owner)  # check 1, at 12:00
    for _ in range(9):
        clock.advance(minutes=1)
        portal.qualify(owner, pid)
    qualifier = portal._qualifier
    assert isinstance(qualifier, FakeQualifier) and len(qualifier.calls) == 10
    with pytest.raises(RateLimited) as refused:
        portal.qualify(owner, pid)
    assert refused.value.status == 429 and refused.value.field == "project_id"
    assert refused.value.message == ("too many qualification checks for this project: at most 10 per hour; "
                                     "try again after 13:00 UTC")
    assert len(qualifier.calls) == 10  # no outbound request for the refused one
    assert _refusals(store) == [{"actor": "portal:vendor@acme.example", "action": "qualification", "project_id": pid,
                                 "limit": f"qualify:project:{pid}", "max": 10, "window_s": 3600,
                                 "retry_after": "2026-12-07T13:00:00+00:00"}]
    assert store.verify_events("portal")

    # a restarted portal remembers: the count is in the database
    again = FakeQualifier()
    restarted = make_portal(store, tmp_path / "portal", clock=clock, qualifier=again)
    with pytest.raises(RateLimited):
        restarted.qualify(owner, pid)
    assert again.calls == []

    clock.now = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)  # the 12:00 check is one hour old: one is free again
    assert restarted.qualify(owner, pid)["passed"] and len(again.calls) == 1
    with pytest.raises(RateLimited, match="try again after 13:01 UTC"):
        restarted.qualify(owner, pid)


def test_many_projects_do_not_multiply_the_applicants_budget(portal, store) -> None:
    portal.limits = RateLimits(qualifications_per_project=10, qualifications_per_applicant=3)
    owner = applicant(portal, "vendor@acme.example")
    projects = [claimed_project(portal, owner) for _ in range(3)]  # one check each: 3 in the hour
    fresh = portal.create_project(owner, "Another", "https://other.example/bench", "", "tok-123")
    with pytest.raises(RateLimited) as refused:
        portal.qualify(owner, fresh)
    assert refused.value.field == "account"
    assert "too many qualification checks for your account: at most 3 per hour" in refused.value.message
    with pytest.raises(RateLimited):
        portal.qualify(owner, projects[0])
    assert len(portal._qualifier.calls) == 3  # type: ignore[attr-defined]

    other = applicant(portal, "other@vendor.example", "Other AG")  # another applicant has its own budget
    assert portal.qualify(other, portal.create_project(other, "O", "https://o.example/b", "", "tok-9"))["passed"]
    admin = staff(portal, "admin@portal.example", "admin")  # staff: only the per-project limit applies
    assert portal.qualify(admin, fresh)["passed"]
    assert [r["limit"] for r in _refusals(store)] == [f"qualify:user:{owner.user_id}"] * 2


def test_evaluation_starts_limited_per_applicant_per_day(portal, store, clock) -> None:
    portal.limits = RateLimits(evaluations_per_applicant=2)
    owner = applicant(portal, "vendor@acme.example")
    first, second = claimed_project(portal, owner), claimed_project(portal, owner)
    portal.runner.finish(portal.start_evaluation(owner, first))
    clock.advance(hours=2)
    portal.runner.finish(portal.start_evaluation(owner, second))
    clock.advance(hours=2)
    with pytest.raises(RateLimited) as refused:
        portal.start_evaluation(owner, first)
    assert refused.value.field == "account"
    assert refused.value.message == ("too many evaluation starts for your account: at most 2 per day; "
                                     "try again after 2026-12-08 12:00 UTC")
    assert len(portal.runner.jobs) == 2  # nothing reached the runner
    assert [e["status"] for e in portal.evaluations(owner, first)] == ["finished"]  # no row left behind
    assert _refusals(store)[-1]["action"] == "evaluation" and _refusals(store)[-1]["project_id"] == first
    clock.now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    assert portal.start_evaluation(owner, first)


def test_a_refused_start_for_another_reason_uses_no_budget(portal) -> None:
    portal.limits = RateLimits(evaluations_per_applicant=2)
    owner = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, owner)
    eid = portal.start_evaluation(owner, pid)  # 1 of 2
    for _ in range(3):
        with pytest.raises(ControlPlaneError) as busy:  # still running: Conflict, and nothing counted
            portal.start_evaluation(owner, pid)
        assert busy.value.status == 409
    portal.runner.finish(eid)
    assert portal.start_evaluation(owner, pid)  # 2 of 2


def test_parallel_checks_are_counted_one_after_the_other(portal) -> None:
    """Both threads pass every check before either counts; the locked key row still lets only one through."""
    portal.limits = RateLimits(qualifications_per_project=2, checks_in_flight_per_account=2)  # both get a slot
    owner = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, owner)  # 1 of 2 used
    barrier = threading.Barrier(2, timeout=20)
    waited: set[int] = set()

    def before(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()

    results: list[object] = []

    def run() -> None:
        try:
            results.append(portal.qualify(owner, pid)["passed"])
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results.append(exc)

    event.listen(portal.engine, "before_cursor_execute", before)
    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    finally:
        event.remove(portal.engine, "before_cursor_execute", before)
    assert not barrier.broken
    assert sorted(type(r).__name__ for r in results) == ["RateLimited", "bool"]
    assert len(portal._qualifier.calls) == 2  # type: ignore[attr-defined]


def test_limits_are_set_on_the_portal_and_checked(store, tmp_path, clock) -> None:
    tight = RateLimits(qualifications_per_project=1, qualifications_per_applicant=None)
    portal = Portal(store, tmp_path / "p", egress=None, clock=clock, qualifier=FakeQualifier(), limits=tight,
                    accounts=make_portal(store, tmp_path / "p", clock=clock).accounts)
    owner = applicant(portal, "vendor@acme.example")
    pid = portal.create_project(owner, "P", "https://p.example/b", "", "tok-1")
    portal.qualify(owner, pid)
    with pytest.raises(RateLimited, match="at most 1 per hour"):
        portal.qualify(owner, pid)
    for bad in ({"qualifications_per_project": 0}, {"evaluations_per_applicant": -1},
                {"evaluation_window": RateLimits().evaluation_window * 0}):
        with pytest.raises(ValueError, match="RateLimits"):
            RateLimits(**bad)  # type: ignore[arg-type]


def test_retry_time_is_rounded_up_and_dated_when_not_today() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert when(datetime(2026, 12, 7, 13, 0, 0, tzinfo=UTC), now) == "13:00 UTC"
    assert when(datetime(2026, 12, 7, 13, 0, 1, tzinfo=UTC), now) == "13:01 UTC"
    assert when(datetime(2026, 12, 8, 9, 30, tzinfo=UTC), now) == "2026-12-08 09:30 UTC"
