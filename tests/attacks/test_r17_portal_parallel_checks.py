"""R17-PORTAL-10: one applicant runs its whole hourly budget of qualification checks at the same time, each holding
one of the portal's page threads for up to a minute and a half.

Attack (a malicious applicant with a slow endpoint): `Portal.qualify` runs inside the page request (POST
/projects/{id}/qualify, a sync page in Starlette's thread pool: 40 threads by default). Each check may take ~10 s
per network step plus up to 60 s for the smoke job when the endpoint answers slowly on purpose. The rate limit
counts checks per hour (30 per applicant, 10 per project) but not checks IN FLIGHT: fire 30 in parallel over
three projects, and with a second free account the 40 threads are all waiting on the attacker's endpoint, so every
other page of the portal (sign-in included) hangs until they time out; repeat each hour.

FIXED: `Portal.qualify` takes a slot (`sampan.web.portal.inflight.CheckSlots`) before any outbound work: one
check in flight per account and four in the portal process (`RateLimits.checks_in_flight_per_account` /
`checks_in_flight_total`); the next is refused at once with Conflict ("a qualification check is already running
for your account ..."), audited, and costs no hourly budget. So at most four page threads wait on endpoints.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

from _core_fixtures import TOKEN, FakeCheck, FakeReport, applicant, make_portal  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402
from sampan.web.errors import ControlPlaneError  # noqa: E402

PARALLEL = 4


class _SlowEndpointQualifier:
    """Holds every check until released, like an endpoint that answers at the last second of each bound."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.release = threading.Event()
        self.all_in = threading.Event()

    def __call__(self, url: str, token: str, tls_cert_pem: str | None, policy: Any) -> FakeReport:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            if self.inside >= PARALLEL:
                self.all_in.set()
        self.release.wait(20)
        with self.lock:
            self.inside -= 1
        return FakeReport(True, [FakeCheck("token", True, "accepted")])


def test_an_applicant_cannot_run_many_checks_at_once(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    qualifier = _SlowEndpointQualifier()
    refused: list[str] = []
    try:
        portal = make_portal(store, tmp_path / "portal", qualifier=qualifier)
        mallory = applicant(portal, "mallory@slow.example")
        pids = [portal.create_project(mallory, f"slow {i}", f"https://slow{i}.example/", "", TOKEN)
                for i in range(PARALLEL)]

        def check(pid: int) -> None:
            try:
                portal.qualify(mallory, pid)
            except ControlPlaneError as exc:
                refused.append(exc.message)

        threads = [threading.Thread(target=check, args=(pid,), daemon=True) for pid in pids]
        for thread in threads:
            thread.start()
        qualifier.all_in.wait(10)  # returns at once when every check got in; else after the bound
        qualifier.release.set()
        for thread in threads:
            thread.join(20)
        assert qualifier.most <= 2 and refused, (qualifier.most, refused)
    finally:
        qualifier.release.set()
        store.close()
