"""Helpers for the portal core tests: a Portal on a real store, fast argon2, a fake qualifier and a fake runner.

The fake runner has the real `EvaluationRunner`'s interface (start/cancel, on_progress/on_done from the runner's
side) and "runs" by writing a saved `Evaluation` (the report tests' synthetic one) with `write_all`, as the real
runner does into folder/<job_id>/; `finish()` plays the callbacks so a test decides when the job ends.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))

from _report_fixtures import synthetic  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402
from sampan.verify.report.bundle import write_all  # noqa: E402
from sampan.web.portal import CompanyInfo, Portal, PortalAccounts, PortalPrincipal  # noqa: E402

FAST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}  # argon2id still; cheap for tests
PASSWORD = "correct horse battery staple"
TOKEN = "bench-SECRET-token-7f3a9c1e5b"  # the applicant's bench token: must never come back


class Clock:
    """A settable clock for expiry tests."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class FakeCheck:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False


@dataclass
class FakeReport:
    passed: bool
    checks: list[FakeCheck]


@dataclass
class FakeQualifier:
    """Answers like `sampan.verify.qualify.qualify`; echoes the token in a detail, as a careless check might."""

    passed: bool = True
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def __call__(self, url: str, token: str, tls_cert_pem: str | None, policy: Any) -> FakeReport:
        self.calls.append((url, token, tls_cert_pem, policy))
        if self.passed:
            return FakeReport(True, [FakeCheck("reachable", True, f"{url} answered"),
                                     FakeCheck("token", True, f"token {token} accepted")])
        return FakeReport(False, [FakeCheck("reachable", True, "answered"),
                                  FakeCheck("token", False, f"token {token} refused with 401",
                                            "Copy the bench token from your platform's admin page."),
                                  FakeCheck("smoke job", False, "not checked: an earlier check failed", skipped=True)])


@dataclass
class FakeTarget:
    url: str
    token: str
    tls_cert_pem: str | None = None
    allow: tuple[str, ...] = ()


@dataclass
class FakeRunner:
    """The runner's interface; jobs wait until `finish(job_id)` writes the results and calls back."""

    folder: Path
    jobs: dict[int, tuple[Any, str, Any, Any]] = field(default_factory=dict)
    cancelled: list[int] = field(default_factory=list)

    def start(self, job_id: int, target: Any, profile: str, on_progress: Any, on_done: Any) -> None:
        self.jobs[job_id] = (target, profile, on_progress, on_done)

    def cancel(self, job_id: int) -> None:
        self.cancelled.append(job_id)
        self.jobs[job_id][3]("cancelled", None, None)

    def finish(self, job_id: int, *, verdicts: dict[str, str] | None = None, fail: str | None = None) -> Path:
        target, _profile, on_progress, on_done = self.jobs[job_id]
        evaluation = synthetic("weak", verdicts=verdicts)
        total = len(evaluation.outcomes)
        done: list[dict[str, str]] = []
        for index, outcome in enumerate(evaluation.outcomes, 1):
            on_progress({"index": index, "total": total, "test_id": outcome.id, "done": list(done)})
            done.append({"test_id": outcome.id, "verdict": outcome.verdict})
        out = self.folder / str(job_id)
        if fail is not None:
            on_done("failed", None, fail)
            return out
        write_all(evaluation, out, pdf=False)
        on_done("finished", out, None)
        return out


class FakePolicy:
    """Stands in for `sampan.verify.egress.EgressPolicy` (the core only passes it on)."""

    allow = ("127.0.0.1/32",)


def make_portal(store: Store, folder: Path, *, clock: Clock | None = None, runner: Any = None,
                qualifier: Any = None) -> Portal:
    accounts = PortalAccounts(store.engine, argon2_params=FAST_ARGON2, clock=clock)
    portal = Portal(store, folder, egress=FakePolicy(), runner=runner, clock=clock, accounts=accounts,
                    qualifier=qualifier or FakeQualifier())
    if isinstance(runner, FakeRunner):  # the fake runner takes a plain target (the real TargetSpec is P2's)
        portal._target_spec = lambda project, token: FakeTarget(  # type: ignore[method-assign]
            project.endpoint_url, token, project.tls_cert_pem or None, tuple(portal.egress.allow))
    return portal


def applicant(portal: Portal, email: str, company: str = "Acme FL") -> PortalPrincipal:
    """A registered, verified, signed-in applicant."""
    token = portal.accounts.register(email, PASSWORD, CompanyInfo(company, "DE"))
    portal.accounts.verify_email(token, PASSWORD)
    return portal.accounts.authenticate(email, PASSWORD)


def staff(portal: Portal, email: str, role: str) -> PortalPrincipal:
    portal.accounts.create_user(email, role, PASSWORD)
    return portal.accounts.authenticate(email, PASSWORD)


def claimed_project(portal: Portal, owner: PortalPrincipal, *, claims: dict[str, bool] | None = None) -> int:
    """A project with its questionnaire saved and a passed qualification."""
    pid = portal.create_project(owner, "Acme FL 2.1", "https://fl.acme.example/bench/v1", "", TOKEN)
    portal.save_questionnaire(owner, pid, claims if claims is not None else
                              {"F-API-VERSION": True, "S-SECAGG-MASKED": True, "S-MIA": True, "F-PSI-EXACT": True},
                              "https://docs.acme.example/api", True, "we implement the reference API")
    assert portal.qualify(owner, pid)["passed"]
    return pid
