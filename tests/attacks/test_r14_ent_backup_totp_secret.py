"""R14-ENT-3: someone holding a stolen store backup (`sampan store backup`) reads every console account's TOTP seed
in the clear (cp_users.totp_secret), so the second factor gives no protection once a password hash from the same
archive is cracked offline (the archive holds both). The backup docstring and docs/deploy.md §9.4 mention
password hashes, never TOTP seeds; nothing in the archive is encrypted."""

from __future__ import annotations

import zipfile
from pathlib import Path

from sqlalchemy import create_engine

from sampan.runtime.backup import backup
from sampan.web.auth import Accounts, AuthSettings
from sampan.web.db import create_tables


def test_backup_does_not_reveal_totp_seeds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    engine = create_engine(url)
    create_tables(engine)
    accounts = Accounts(engine, AuthSettings(argon2={"time_cost": 1, "memory_cost": 1024, "parallelism": 1}))
    admin, _ = accounts.create_user("alice", "consortium_admin", password="correct horse battery staple")
    secret, _ = accounts.enrol_totp(admin)
    engine.dispose()
    archive = tmp_path / "store.backup"
    backup(url, archive)
    with zipfile.ZipFile(archive) as z:
        content = b"".join(z.read(i.filename) for i in z.infolist())
    assert secret.encode() not in content, "the TOTP seed of 'alice' is readable in the backup archive"
