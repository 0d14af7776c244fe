"""TOTP seeds at rest (R14-ENT-3 follow-up): what a database reader or writer can do with `cp_users.totp_secret`.

A reader of the database (or of a store backup) sees ciphertext only; a writer who moves one account's sealed seed
onto another account gets nothing that opens (the seed is bound to its account); a restore without the TOTP key
file refuses the second factor with a clear message rather than accepting any code. Also on PostgreSQL: the sealed
value fits the column's 64 characters."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import create_engine, select, update

from sampan.runtime.backup import backup, restore
from sampan.web import db
from sampan.web.auth import Accounts, AuthSettings
from sampan.web.db import create_tables
from sampan.web.errors import Unauthenticated

PASSWORD = "correct horse battery staple"
_CHEAP = AuthSettings(argon2={"time_cost": 1, "memory_cost": 1024, "parallelism": 1})


def _two_enrolled(url: str, settings: AuthSettings = _CHEAP) -> tuple[Accounts, dict[str, str]]:
    engine = create_engine(url)
    create_tables(engine)
    accounts = Accounts(engine, settings)
    seeds = {}
    for name in ("alice", "mallory"):
        user, _ = accounts.create_user(name, "analyst", password=PASSWORD)
        seeds[name], _ = accounts.enrol_totp(user)
        accounts.confirm_totp(user, pyotp.TOTP(seeds[name]).now())
    return accounts, seeds


def _stored(accounts: Accounts) -> dict[str, str]:
    with accounts.engine.connect() as c:
        return {r.username: r.totp_secret for r in c.execute(select(db.users.c.username, db.users.c.totp_secret))}


def test_the_database_holds_no_seed_and_a_moved_seed_does_not_open(tmp_path: Path) -> None:
    accounts, seeds = _two_enrolled(f"sqlite:///{tmp_path / 'cp.db'}")
    stored = _stored(accounts)
    assert all(seeds[n] not in stored[n] and len(stored[n]) == 64 for n in seeds)
    with accounts.engine.begin() as c:  # a database writer gives alice mallory's sealed seed
        c.execute(update(db.users).where(db.users.c.username == "alice").values(totp_secret=stored["mallory"]))
    with pytest.raises(Unauthenticated, match="cannot be opened"):
        accounts.authenticate("alice", PASSWORD, pyotp.TOTP(seeds["mallory"]).at(accounts.clock()))
    accounts.engine.dispose()


def test_a_restore_without_the_key_file_refuses_the_second_factor(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    accounts, seeds = _two_enrolled(source)
    accounts.engine.dispose()
    backup(source, tmp_path / "store.backup")
    restore(tmp_path / "store.backup", f"sqlite:///{tmp_path / 'b.db'}")
    restore(tmp_path / "store.backup", f"sqlite:///{tmp_path / 'c.db'}")
    shutil.copy(tmp_path / "a.db.totp-key", tmp_path / "c.db.totp-key")  # the key copied beside the backup
    lost = Accounts(create_engine(f"sqlite:///{tmp_path / 'b.db'}"), _CHEAP)
    with pytest.raises(Unauthenticated, match="cannot be opened"):
        lost.authenticate("alice", PASSWORD, pyotp.TOTP(seeds["alice"]).at(lost.clock()))
    kept = Accounts(create_engine(f"sqlite:///{tmp_path / 'c.db'}"), _CHEAP)
    code = pyotp.TOTP(seeds["alice"]).at(kept.clock() + timedelta(seconds=30))  # confirm used the current step
    assert kept.authenticate("alice", PASSWORD, code).username == "alice"
    lost.engine.dispose()
    kept.engine.dispose()


@pytest.mark.postgres
def test_sealed_seeds_fit_the_postgresql_column(tmp_path: Path, postgres_url: str) -> None:
    key = tmp_path / "totp.key"
    accounts, seeds = _two_enrolled(postgres_url, AuthSettings(argon2=_CHEAP.argon2, totp_key_file=str(key)))
    assert key.stat().st_mode & 0o777 == 0o600
    assert all(len(v) == 64 and seeds[n] not in v for n, v in _stored(accounts).items())
    accounts.engine.dispose()
