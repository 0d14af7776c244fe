"""Shared set-up for the console tests: the control plane's app WITH the console, browsers (httpx TestClients
over https, so Secure cookies travel) signed in as each role through the sign-in form, and form helpers."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from _web_plane import BANKS, World, make_world

from sampan.web.app import AppSettings, create_app

PASSWORD = "a long password!"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class Console:
    world: World
    app: Any

    def browser(self) -> TestClient:
        return TestClient(self.app, base_url="https://testserver", follow_redirects=True)

    def signed_in(self, username: str, password: str = PASSWORD) -> TestClient:
        browser = self.browser()
        page = browser.get("/console/sign-in")
        done = browser.post("/console/sign-in", data={"username": username, "password": password,
                                                     "csrf_token": csrf(page.text)})
        assert done.status_code == 200 and "/sign-in" not in str(done.url), done.text[-600:]
        return browser


def post(browser: TestClient, page_path: str, action: str, data: dict[str, Any]) -> Any:
    """Submit a form at `action` as a person would: open `page_path`, take its CSRF token, post."""
    page = browser.get(page_path)
    return browser.post(action, data={**data, "csrf_token": csrf(page.text)})


def make_console(tmp_path: Path) -> Console:
    world = make_world(tmp_path)
    app = create_app(world.plane, AppSettings(secure_cookies=True))
    return Console(world, app)


def seeded(tmp_path: Path) -> tuple[Console, int]:
    """A console whose consortium has the three banks with their `sme_loans` datasets registered; accounts with
    PASSWORD: `<bank>-op` (party operators), `analyst`, `auditor`, `admin2` (consortium admin)."""
    console = make_console(tmp_path)
    world = console.world
    cid = int(world.plane.create_consortium(world.admin, "HK SME lending")["id"])
    for bank in BANKS:
        operator = world.user(f"{bank}-op", "party_operator", bank)
        world.plane.invite_member(world.admin, cid, bank)
        world.plane.register_dataset(operator, cid, bank, "sme_loans")
    world.user("analyst", "analyst")
    world.user("auditor", "auditor")
    world.user("admin2", "consortium_admin")
    return console, cid


def wizard_form(name: str, epsilon: str = "1.0", columns: tuple[str, ...] = ("turnover", "years_trading", "default"),
                parties: tuple[str, ...] = BANKS, extra: str = "", dataset: str = "sme_loans") -> dict[str, Any]:
    """The job wizard's fields for a horizontal logistic job over `parties`' `dataset`."""
    form: dict[str, Any] = {"consortium_id": "1", "name": name, "workflow": "horizontal", "party": list(parties),
                            "model_kind": "logistic", "rounds": "3", "epsilon": epsilon, "delta": "1e-5",
                            "accountant": "rdp", "dp2": "1", "extra": extra}
    for bank in parties:
        form[f"dataset.{bank}"] = dataset
        form[f"columns.{bank}.{dataset}"] = list(columns)
    return form


def run_job(console: Any, name: str = "sme-lr", **form: Any) -> tuple[int, str]:
    """Admin creates, submits and (after every bank approves) starts a job through the forms: (job id, run id)."""
    admin = console.signed_in("admin2")
    made = post(admin, "/console/jobs/new", "/console/jobs", wizard_form(name, **form))
    job_id = int(str(made.url).rsplit("/", 1)[1])
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    for bank in BANKS:
        operator = console.signed_in(f"{bank}-op")
        done = post(operator, "/console/approvals", f"/console/approvals/{job_id}/approve", {})
        assert done.status_code == 200, done.text[-500:]
    started = post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/start", {})
    assert started.status_code == 200 and "/console/runs/" in str(started.url), started.text[-800:]
    return job_id, str(started.url).rsplit("/", 1)[1]
