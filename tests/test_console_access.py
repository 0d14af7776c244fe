"""Who may open which console page, and which requests a form accepts: every page renders for the roles the
permission table allows and is refused (403 page) to the others, an operator outside a consortium sees nothing of
it, and every form without its session's CSRF token (missing, empty, made up, or another user's) gets 403 and
changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

from _console import csrf, run_job, seeded

from sampan.web.console.routes import page_routes


def test_every_page_renders_for_the_right_roles_only(tmp_path: Path) -> None:
    console, cid = seeded(tmp_path)
    job_id, run_id = run_job(console)
    model = console.world.plane.models(console.world.admin)[0]
    model_path = f"/console/models/{model['name']}/{model['version']}"
    everyone = ("admin2", "bank_a-op", "analyst", "auditor")
    pages = {
        "/console/consortia": everyone, f"/console/consortia/{cid}": everyone, "/console/datasets": everyone,
        "/console/datasets/1": everyone, "/console/jobs": everyone, f"/console/jobs/{job_id}": everyone,
        "/console/jobs/new": ("admin2", "analyst"), "/console/approvals": everyone, "/console/runs": everyone,
        f"/console/runs/{run_id}": everyone, "/console/models": everyone, model_path: everyone,
        f"{model_path}/export": ("admin2", "analyst"), "/console/audit": ("admin2", "auditor"),
        f"/console/audit?run={run_id}": ("admin2", "auditor"), "/console/account": everyone,
        "/console/users": ("admin2", "auditor"),
    }
    browsers = {user: console.signed_in(user) for user in everyone}
    for path, allowed in pages.items():
        for user, browser in browsers.items():
            reply = browser.get(path)
            expected = 200 if user in allowed else 403
            assert reply.status_code == expected, (path, user, reply.status_code, reply.text[-300:])
            if expected == 403:
                assert 'data-test="error"' in reply.text  # an error page, not a traceback or JSON
    # the operator's approvals page is its inbox; others get the overview
    assert "Approval inbox" in browsers["bank_a-op"].get("/console/approvals").text
    assert 'data-test="approvals-overview"' in browsers["auditor"].get("/console/approvals").text


def test_operator_of_another_consortium_sees_nothing_of_it(tmp_path: Path) -> None:
    console, cid = seeded(tmp_path)
    world = console.world
    world.user("bank_z-op", "party_operator", "bank_z")
    outsider = console.signed_in("bank_z-op")
    assert "HK SME lending" not in outsider.get("/console/consortia").text
    assert outsider.get(f"/console/consortia/{cid}").status_code == 404
    assert outsider.get("/console/datasets/1").status_code == 404


def _console_post_routes() -> list[str]:
    return [path for method, path in page_routes() if method == "POST"]


def test_every_form_without_or_with_a_wrong_csrf_token_gets_403(tmp_path: Path) -> None:
    console, cid = seeded(tmp_path)
    job_id, run_id = run_job(console)
    model = console.world.plane.models(console.world.admin)[0]
    values = {"consortium_id": str(cid), "job_id": str(job_id), "run_id": run_id, "name": model["name"],
              "version": str(model["version"]), "rule_id": "1", "user_id": "2"}
    admin, operator = console.signed_in("admin2"), console.signed_in("bank_a-op")
    other_token = csrf(console.signed_in("analyst").get("/console/jobs").text)
    routes = _console_post_routes()
    assert len(routes) >= 15
    before = console.world.plane.store.events("control-plane")
    for path in routes:
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        for browser in (admin, operator):
            for token in (None, "", "0" * 64, other_token):
                data = {"name": "x", "reason": "r", "stage": "approved", "organisation": "evil", "rule_id": "r1"}
                if token is not None:
                    data["csrf_token"] = token
                reply = browser.post(url, data=data)
                assert reply.status_code == 403, (url, token, reply.status_code)
                assert "security token" in reply.text
    assert len(console.world.plane.store.events("control-plane")) == len(before)  # nothing changed
