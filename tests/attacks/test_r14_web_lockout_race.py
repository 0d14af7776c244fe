"""R14-WEB-8: parallel wrong passwords are never counted more than once, so the sign-in lockout does not stop
online guessing.

Claim (auth docstring): "After `max_failures` wrong passwords or codes in a row an account is locked for
`lockout` (per user, in the database, so every worker process sees it)". `Accounts.authenticate` reads the user
row, spends the argon2 work, then `_failure` writes `row.failed_logins + 1` from that stale read. Guesses sent in
parallel (each waits ~argon2 time between its read and its write) all read the same count and all write the same
count + 1: any number of guesses per round, never a lockout. The barrier below only makes the interleaving
certain (every request has read the row before any wrong guess is counted), as parallel HTTP requests do in
practice. Fix: count in SQL (`failed_logins = failed_logins + 1 ... RETURNING`) and lock on the returned value."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import make_world  # noqa: E402

from sampan.web.errors import Unauthenticated  # noqa: E402

GUESSES = 8


def test_parallel_wrong_passwords_lock_the_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path)
    world.user("ana", "analyst")
    accounts = world.plane.accounts
    assert accounts.settings.max_failures < GUESSES
    barrier = threading.Barrier(GUESSES, timeout=15)
    real_verify = accounts._verify_hash

    def verify_in_parallel(stored: Any, password: str) -> bool:  # the argon2 step, overlapping as under load
        result = real_verify(stored, password)
        barrier.wait()
        return result

    monkeypatch.setattr(accounts, "_verify_hash", verify_in_parallel)
    outcomes: list[str] = []

    def guess(i: int) -> None:
        try:
            accounts.authenticate("ana", f"wrong guess {i:04d}")
            outcomes.append("in")
        except Unauthenticated as exc:
            outcomes.append(exc.field or "")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(GUESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == GUESSES and "in" not in outcomes
    monkeypatch.setattr(accounts, "_verify_hash", real_verify)
    # after GUESSES (> max_failures) wrong passwords the right one must be refused: the account is locked
    with pytest.raises(Unauthenticated):
        accounts.authenticate("ana", "a long password!")
