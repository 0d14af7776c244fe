"""R17-PORTAL-1: a server change made while a qualification check runs is evaluated without being qualified.

Attack (a malicious applicant, through `Portal`): start the qualification check of an endpoint that passes; while
the check is in flight (it takes seconds: TLS, /info, a smoke job), change the project's endpoint, certificate or
token with `update_project`. `update_project` writes its "server information changed" failed row at once, but the
check then finishes and writes its "passed" row AFTER it, so the latest qualification of the project says
"passed" for server information nobody checked. `start_evaluation` only looks at the latest row's status, and the
evaluation's TargetSpec carries the NEW endpoint (and the old check's pinned address). In the embedded mode, the
new endpoint may be the portal's own local Sampan platform URL: the worker then evaluates the in-repo platform and
the applicant's project gets Sampan's results.

FIXED: each qualification row records the fingerprint (SHA-256) of the server information it checked (endpoint,
certificate, sealed token: `base.server_fingerprint`); `Portal.qualify` compares it with the project's when it
stores the result (compare-and-set: changed meanwhile -> stored failed, "server information changed"), and a
"passed" row counts only while the project still has that fingerprint (`qualifies`: last_qualification, the
projects list, start_evaluation). `start_evaluation` reads the project and its latest qualification in one
statement and hands the runner exactly that row (and that qualification's pinned address).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

from _core_fixtures import TOKEN, FakeCheck, FakeReport, FakeRunner, applicant, make_portal  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402
from sampan.web.errors import Conflict  # noqa: E402

QUALIFIED = "https://fl.acme.example/bench/v1"
SWAPPED = "https://unchecked.attacker.example/bench/v1"


class _RacingQualifier:
    """Passes the endpoint it is given; while it 'runs', the applicant changes the server information."""

    def __init__(self) -> None:
        self.during: Any = None
        self.calls: list[str] = []

    def __call__(self, url: str, token: str, tls_cert_pem: str | None, policy: Any) -> FakeReport:
        self.calls.append(url)
        if self.during is not None:
            action, self.during = self.during, None
            action()  # the applicant's second browser tab, while the check is still in flight
        return FakeReport(True, [FakeCheck("address", True, f"{url} is public"),
                                 FakeCheck("token", True, "token accepted")])


def test_a_server_change_during_the_check_is_not_evaluated_unqualified(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        qualifier = _RacingQualifier()
        runner = FakeRunner(tmp_path / "runs")
        portal = make_portal(store, tmp_path / "portal", runner=runner, qualifier=qualifier)
        owner = applicant(portal, "mallory@acme.example")
        pid = portal.create_project(owner, "Acme FL", QUALIFIED, "", TOKEN)
        portal.save_questionnaire(owner, pid, {"F-API-VERSION": True}, "", True, "")

        qualifier.during = lambda: portal.update_project(owner, pid, endpoint_url=SWAPPED,
                                                         bench_token="another-token-nobody-checked")
        report = portal.qualify(owner, pid)
        assert qualifier.calls == [QUALIFIED]  # the check only ever saw the old endpoint
        assert portal.project(owner, pid)["endpoint_url"] == SWAPPED

        # The latest qualification must not say "passed" for the swapped endpoint, and no evaluation may start.
        latest = portal.last_qualification(owner, pid)
        assert latest is not None and not latest["passed"], (report, latest)
        with pytest.raises(Conflict):
            portal.start_evaluation(owner, pid)
        assert not runner.jobs  # nothing was handed to the runner for the unchecked endpoint
    finally:
        store.close()
