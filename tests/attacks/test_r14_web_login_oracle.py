"""R14-WEB-14: sign-in answers tell an outsider which user names exist and when a password is right.

Claim (auth.Accounts.authenticate): "the same 401 message for every failure reason"; "Unknown users cost the
same argon2 work as known ones" (so names cannot be enumerated). But after five wrong passwords a real account
answers "too many failed sign-ins: this account is locked" (field `username`) while an unknown name keeps
answering "wrong user name, password or code": the lockout enumerates accounts. And for an account with TOTP,
the RIGHT password answers "this account needs its authenticator code" (field `totp`) without counting a
failure: a credential-stuffing list is checked against TOTP accounts for free. Fix: one message and field for
every refusal (ask for the code in the same step, or only after a code-independent success token)."""

from __future__ import annotations

import sys
from pathlib import Path

import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import make_world  # noqa: E402

PASSWORD = "a long password!"


def test_every_refused_sign_in_looks_the_same(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    ana = world.user("ana", "analyst")
    secret, _ = world.plane.accounts.enrol_totp(ana)
    world.plane.accounts.confirm_totp(ana, pyotp.TOTP(secret).at(world.clock.now))
    world.user("bob", "analyst")
    outsider = world.client()

    def answer(username: str, password: str) -> tuple[int, object]:
        r = outsider.post("/api/v1/auth/login", json={"username": username, "password": password})
        return r.status_code, r.json()

    wrong = answer("ana", "not the password")
    assert answer("ana", PASSWORD) == wrong, "the right password of a TOTP account answers differently"
    for i in range(6):
        answer("bob", f"wrong guess {i}")
        answer("nobody", f"wrong guess {i}")
    assert answer("bob", "another guess") == answer("nobody", "another guess"), "the lockout names real accounts"
