"""A password typed into the user-name field of a failed sign-in does not reach the (exported, long-kept) audit
log: only names of existing accounts are logged, anything else as "(unknown user)"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _oidc_local import plane  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from sampan.web.app import AppSettings, create_app  # noqa: E402
from sampan.web.sign_in_log import UNKNOWN_USER  # noqa: E402

PASSWORD = "Tr0ub4dor&3-horse-battery"


def test_a_password_typed_as_the_user_name_is_not_logged(tmp_path: Path) -> None:
    cp = plane(tmp_path)
    cp.accounts.create_user("alice", "analyst", password=PASSWORD)
    c = TestClient(create_app(cp, AppSettings(secure_cookies=False, console=False)))
    assert c.post("/api/v1/auth/login", json={"username": PASSWORD, "password": "alice"}).status_code == 401
    assert c.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong!"}).status_code == 401
    failed = [e.detail for e in cp.store.events("control-plane") if e.kind == "cp.sign_in_failed"]
    assert [d["username"] for d in failed] == [UNKNOWN_USER, "alice"]
    assert PASSWORD not in str([e.detail for e in cp.store.events("control-plane")])
