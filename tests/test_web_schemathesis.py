"""Schemathesis against the control plane's OpenAPI document, signed in as an admin and as a party operator:
no input makes the server answer 5xx, and every response (errors included) matches the documented schema."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from _web_plane import BANKS, HORIZONTAL, World, consortium_with_banks, make_world
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sampan.web.roles import Principal

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def _world() -> tuple[World, dict[str, Principal]]:
    """Built at import: schemathesis needs the schema when pytest collects (its lazy fixture loader does not run
    under this pytest). A private temporary folder per process, removed at exit, so xdist workers never share."""
    world = make_world(Path(_FOLDER.name))
    cid, operators = consortium_with_banks(world)
    job = world.plane.create_job(world.admin, cid, "j", HORIZONTAL, {b: "sme_loans" for b in BANKS})
    for bank, op in operators.items():
        world.plane.decide(op, job["id"], bank, True)
    world.plane.start_job(world.admin, job["id"])
    world.plane.create_job(world.admin, cid, "pending", HORIZONTAL, {b: "sme_loans" for b in BANKS})
    return world, {"admin": world.admin, "operator": operators["bank_a"]}


_FOLDER = tempfile.TemporaryDirectory(prefix="sampan-schemathesis-")
WORLD, PRINCIPALS = _world()
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", WORLD.app)


_SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])


def _call(case: Any, world: World, principal: Principal) -> None:
    world.plane.accounts.set_disabled(principal.user_id, False)  # a generated request may have disabled it
    _, token = world.plane.accounts.issue_token(principal, "schemathesis")
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


@pytest.mark.slow
@schema.parametrize()
@_SETTINGS
def test_as_admin(case: Any) -> None:
    _call(case, WORLD, PRINCIPALS["admin"])


@pytest.mark.slow
@schema.parametrize()
@_SETTINGS
def test_as_operator(case: Any) -> None:
    _call(case, WORLD, PRINCIPALS["operator"])
