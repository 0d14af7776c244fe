"""Attack: two parallel requests both pass the service's "nothing open yet" check; the database refuses the second.

Two threads start an evaluation of one project (or request the full report of one evaluation) at the same moment.
A hook on the engine holds each thread just before its first write until both have passed the check, so the race is
certain, not a matter of timing. Without the partial unique indexes both INSERTs succeed (two evaluations of one
project running at once, two open release requests); with them the loser gets the same Conflict as a sequential
second request. On SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from _core_fixtures import FakeRunner, applicant, claimed_project, make_portal
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from sampan.runtime.store import Store
from sampan.web.errors import Conflict
from sampan.web.portal import tables as t


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def portal(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store.open(url)
    yield make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs"))
    store.close()


def _hold_before_first_write(engine: Any) -> tuple[threading.Barrier, Callable[[], None]]:
    """Each thread waits before its first INSERT or UPDATE (all its checks are done by then, and it holds no lock
    yet) until the other one got there too."""
    barrier = threading.Barrier(2, timeout=20)
    waited: set[int] = set()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        me = threading.get_ident()
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and me not in waited:
            waited.add(me)
            barrier.wait()

    event.listen(engine, "before_cursor_execute", before)
    return barrier, lambda: event.remove(engine, "before_cursor_execute", before)


def _race(action: Callable[[], int]) -> tuple[list[int], list[Exception]]:
    won: list[int] = []
    lost: list[Exception] = []

    def run() -> None:
        try:
            won.append(action())
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            lost.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return won, lost


def test_two_parallel_starts_one_evaluation(portal) -> None:
    owner = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, owner)
    barrier, unhook = _hold_before_first_write(portal.engine)
    try:
        won, lost = _race(lambda: portal.start_evaluation(owner, pid))
    finally:
        unhook()
    assert not barrier.broken  # both threads passed the service's check before either inserted
    assert len(won) == 1 and len(lost) == 1
    assert isinstance(lost[0], Conflict) and lost[0].field == "project_id"
    assert lost[0].message == f"evaluation {won[0]} of this project is still running"
    with portal.engine.connect() as c:
        active = c.execute(select(func.count()).select_from(t.evaluations).where(
            t.evaluations.c.project_id == pid, t.evaluations.c.status.in_(t.ACTIVE_EVALUATION))).scalar()
    assert active == 1
    assert list(portal.runner.jobs) == won  # only the winner reached the runner


def test_two_parallel_full_report_requests_one_request(portal) -> None:
    owner = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, owner)
    eid = portal.start_evaluation(owner, pid)
    portal.runner.finish(eid)
    barrier, unhook = _hold_before_first_write(portal.engine)
    try:
        won, lost = _race(lambda: portal.request_full_report(owner, eid, "INV-2026-0042"))
    finally:
        unhook()
    assert not barrier.broken
    assert len(won) == 1 and len(lost) == 1
    assert isinstance(lost[0], Conflict) and lost[0].field == "evaluation_id"
    assert lost[0].message == f"request {won[0]} for this report is already pending"
    assert [r["id"] for r in portal.release_requests(owner)] == won


def test_database_refuses_a_second_open_row_written_around_the_service(portal) -> None:
    """The rule holds for any writer (another process, an old build), and only for the open states."""
    owner = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, owner)
    eid = portal.start_evaluation(owner, pid)
    row = {"project_id": pid, "profile": "quick", "status": "running", "progress": {}, "started_by": "test"}
    with pytest.raises(IntegrityError), portal.engine.begin() as c:
        c.execute(insert(t.evaluations).values(**row))
    portal.runner.finish(eid)
    request = {"evaluation_id": eid, "requested_by": owner.user_id, "invoice_reference": "INV-1", "note": ""}
    with portal.engine.begin() as c:
        c.execute(insert(t.release_requests).values(status="refused", **request))
        c.execute(insert(t.release_requests).values(status="refused", **request))  # closed ones: any number
        c.execute(insert(t.release_requests).values(status="granted", **request))
    with pytest.raises(IntegrityError), portal.engine.begin() as c:
        c.execute(insert(t.release_requests).values(status="pending", **request))
    with portal.engine.begin() as c:  # the project is free again once its evaluation ended
        c.execute(update(t.evaluations).where(t.evaluations.c.id == eid).values(status="finished"))
        c.execute(insert(t.evaluations).values(**row))
