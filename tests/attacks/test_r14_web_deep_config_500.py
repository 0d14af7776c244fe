"""R14-WEB-12: a job config nested a few hundred levels deep is a 500 in the API and in the console.

Claim (app.py, docs/api.md): "Nothing a client sends should produce a 500"; bad input is a 400/422 naming the
field. `POST /consortia/{id}/jobs` with a config nested 300 deep passes validation and spec building, then the
database's JSON serializer raises ValueError("Maximum serialization depth exceeded") at the INSERT: 500. The
console's job edit form parses its JSON text with `json.loads` catching only ValueError, so a deeper text
raises RecursionError: 500. Fix: bound the depth (and size) of `config` in the schema / before `json.loads`."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from _console import PASSWORD, csrf, make_console  # noqa: E402
from _web_plane import job_body  # noqa: E402


def test_a_deeply_nested_config_is_a_clean_client_error(tmp_path: Path) -> None:
    console = make_console(tmp_path)
    world = console.world
    cid = int(world.plane.create_consortium(world.admin, "c")["id"])
    operator = world.user("bank_a-op", "party_operator", "bank_a")
    world.plane.invite_member(world.admin, cid, "bank_a")
    world.plane.register_dataset(operator, cid, "bank_a", "sme_loans")
    world.user("ana", "analyst")
    _, token = world.plane.accounts.issue_token(world.users["ana"])
    api = TestClient(console.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"})
    body = ('{"name": "deep", "datasets": {"bank_a": "sme_loans"}, "config": {"model": {"kind": "logistic", '
            '"x": %s}}}' % ("[" * 300 + "]" * 300))
    created = api.post(f"/api/v1/consortia/{cid}/jobs", content=body, headers={"content-type": "application/json"})
    job = api.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(bank_a="sme_loans")).json()

    signed_in = console.signed_in("ana", PASSWORD)
    browser = TestClient(console.app, base_url="https://testserver", raise_server_exceptions=False)
    browser.cookies = signed_in.cookies
    token_field = csrf(browser.get(f"/console/jobs/{job['id']}").text)
    edited = browser.post(f"/console/jobs/{job['id']}/edit",
                          data={"config": "[" * 5000 + "]" * 5000, "csrf_token": token_field})
    assert created.status_code < 500 and edited.status_code < 500, (created.status_code, edited.status_code)
