"""A portal database made by an earlier build (a column or index missing) is refused at start with a message that
names the table and column and says what to do; nothing starts half working. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from _core_fixtures import make_portal
from sqlalchemy import text
from typer.testing import CliRunner

from sampan.errors import StoreError
from sampan.runtime.store import Store
from sampan.web.portal import PortalAccounts
from sampan.web.portal import tables as t


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _earlier_build(url: str) -> None:
    """Tables as a build before evaluations kept their claims and before the one-open-request index."""
    store = Store.open(url)
    try:
        t.create_portal_tables(store.engine)
        with store.engine.begin() as c:
            c.execute(text("ALTER TABLE portal_evaluations DROP COLUMN claims"))
            c.execute(text("DROP INDEX portal_release_requests_one_open"))
    finally:
        store.close()


def test_current_schema_opens_twice(url, tmp_path) -> None:
    store = Store.open(url)
    try:
        make_portal(store, tmp_path / "portal")
        make_portal(store, tmp_path / "portal")  # a restart on the same database: nothing to refuse
        t.check_portal_schema(store.engine)
    finally:
        store.close()


def test_earlier_build_is_refused_by_table_and_column(url, tmp_path) -> None:
    _earlier_build(url)
    store = Store.open(url)
    try:
        with pytest.raises(StoreError) as refused:
            make_portal(store, tmp_path / "portal")
        message = str(refused.value)
        assert "table portal_evaluations has no column 'claims'" in message
        assert "table portal_release_requests has no index 'portal_release_requests_one_open'" in message
        assert "earlier build" in message and "fresh folder" in message and "migrate" in message
        assert "portal_users" not in message  # only what is missing is named
        assert not (tmp_path / "portal").exists()  # refused before the portal made its folder or key
        with pytest.raises(StoreError, match="portal_evaluations has no column 'claims'"):
            PortalAccounts(store.engine)  # every entry point checks, not only the Portal
    finally:
        store.close()


def test_sampan_portal_refuses_an_earlier_folder_without_a_traceback(tmp_path) -> None:
    pytest.importorskip("uvicorn")
    from sampan.cli import app

    folder = tmp_path / "old-portal"
    folder.mkdir(mode=0o700)
    _earlier_build(f"sqlite:///{folder / 'portal.db'}")
    result = CliRunner().invoke(app, ["portal", "--dir", str(folder), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "table portal_evaluations has no column 'claims'" in result.output
    assert "fresh folder" in result.output and "Traceback" not in result.output
