"""R14-WEB-2: the model registry and its lineage are served to an operator of a bank outside the consortium.

Claim (service_base.visible_consortium, docs/api.md): an operator sees only its own organisation's consortia;
"others' consortia answer 404, as if absent". Runs follow it (GET /runs hides them), but GET /models and
GET /models/{name}/{version} do not: bank_z, member only of another consortium, reads the model names, run ids,
job id, spec hash, and which person of which bank approved, with the signatures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import BANKS, consortium_with_banks, first_sign_in, job_body, make_world  # noqa: E402


def test_an_outside_operator_sees_no_model_of_another_consortium(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    cid, operators = consortium_with_banks(world)
    admin = world.client(world.admin)
    job = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body()).json()
    for bank in BANKS:
        assert world.client(operators[bank]).post(f"/api/v1/jobs/{job['id']}/approvals/{bank}",
                                                  json={"approve": True}).status_code == 200
    assert admin.post(f"/api/v1/jobs/{job['id']}/start").status_code == 200
    model = admin.get("/api/v1/models").json()[0]

    other = world.plane.create_consortium(world.admin, "another consortium")
    invitation = world.plane.invite_member(world.admin, other["id"], "bank_z")
    z = world.client(first_sign_in(world.plane.accounts, invitation["operator_username"],
                                   invitation["one_time_password"]))
    assert z.get("/api/v1/runs").json() == []  # runs are scoped ...
    assert z.get("/api/v1/models").json() == [], "models of a consortium bank_z is not in"
    assert z.get(f"/api/v1/models/{model['name']}/{model['version']}").status_code == 404
