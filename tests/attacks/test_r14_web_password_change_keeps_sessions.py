"""R14-WEB-7: changing one's password leaves every other session and API token of the account working.

Claim (auth docstring): "a person with one role cannot raise it"; sessions end on expiry, sign-out, or when the
account is disabled. The usual response to a leaked password is to change it; `Accounts.set_password` (API
`POST /me/password`, console /account/password) only rewrites the hash, so the intruder's session (up to 12 h,
renewed by use) keeps acting. Fix: end every other session of the account (and say so) on a password change."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import make_world  # noqa: E402

PASSWORD = "a long password!"


def test_a_password_change_ends_the_intruders_session(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.user("ana", "analyst")
    intruder, owner = world.client(), world.client()
    assert intruder.post("/api/v1/auth/login", json={"username": "ana", "password": PASSWORD}).status_code == 200
    csrf = owner.post("/api/v1/auth/login", json={"username": "ana", "password": PASSWORD}).json()["csrf_token"]
    changed = owner.post("/api/v1/me/password", json={"old_password": PASSWORD, "new_password": "another long one!"},
                         headers={"X-CSRF-Token": csrf})
    assert changed.status_code == 204
    assert intruder.get("/api/v1/me").status_code == 401, "the intruder's session survives the password change"
