"""Shared fixtures: run stores on SQLite and on the local PostgreSQL server (a fresh database each)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from sampan.runtime.store import Store

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(autouse=True)
def _audit_key_in_tmp(tmp_path, monkeypatch) -> None:
    """Keep every test's audit-signing key in its own temporary folder, never in the home folder; and what a store
    on PostgreSQL keeps under ~/.config (its TOTP sealing key) in a per-test folder, so no worker shares it."""
    monkeypatch.setenv("SAMPAN_AUDIT_KEY", str(tmp_path / "audit-key.pem"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("SAMPAN_TOTP_KEY", raising=False)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away database on the real local PostgreSQL server, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    name = f"sampan_test_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required for this test and is not reachable: {exc.orig}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = Store.open(url)
    yield s
    s.close()
