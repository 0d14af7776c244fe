"""`sampan portal`: registered in the CLI; the embedded portal starts on loopback, prints the first admin's one-time
password only at the first start, resumes its folder (accounts kept), refuses a busy port by name, and its
verification links go to the folder's log, and it answers only its loopback names (DNS rebinding)."""

from __future__ import annotations

import socket

import httpx
import pytest
from typer.testing import CliRunner

from sampan.cli import app

pytest.importorskip("uvicorn")

FAST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def test_portal_command_is_listed_with_its_options() -> None:
    result = CliRunner().invoke(app, ["portal", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--dir", "--port", "--database-url", "--local-platforms"):
        assert option in result.output
    assert "portal" in CliRunner().invoke(app, ["--help"]).output


def test_embedded_portal_starts_resumes_and_logs_links(tmp_path) -> None:
    from sampan.web.portal import CompanyInfo
    from sampan.web.portal.embedded import EmbeddedPortal

    first = EmbeddedPortal(tmp_path / "p", port=0, argon2_params=FAST_ARGON2)
    started = first.start()
    try:
        assert started.url.startswith("http://127.0.0.1:") and started.admin_password
        assert started.platforms == {} and list(first.portal.egress.allow) == []  # nothing internal allowed
        assert httpx.get(started.url).status_code == 200
        # DNS rebinding: a page on another name that resolves to 127.0.0.1 reaches the port, not the portal
        assert httpx.get(started.url, headers={"Host": "evil.example"}).status_code == 400
        assert httpx.get(started.url.replace("127.0.0.1", "localhost")).status_code == 200
        first.portal.accounts.register("vendor@acme.example", "a long enough passphrase", CompanyInfo("Acme", "HK"))
    finally:
        first.stop()
    log = (tmp_path / "p" / "portal.log").read_text()
    assert "verification link for vendor@acme.example: /portal/verify?token=" in log
    again = EmbeddedPortal(tmp_path / "p", port=0, argon2_params=FAST_ARGON2)
    resumed = again.start()
    try:
        assert resumed.admin_password is None  # shown once, at the first start only
        assert any(u["email"] == "vendor@acme.example" for u in again.portal.accounts.users())
    finally:
        again.stop()


def test_a_busy_port_is_refused_by_name(tmp_path) -> None:
    from sampan.errors import ConfigError
    from sampan.web.portal.embedded import EmbeddedPortal

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--port {port}"):
            EmbeddedPortal(tmp_path / "p", port=port, argon2_params=FAST_ARGON2).start()


@pytest.mark.postgres
def test_embedded_portal_on_postgresql(tmp_path, postgres_url) -> None:
    from sampan.web.portal.embedded import EmbeddedPortal

    embedded = EmbeddedPortal(tmp_path / "p", port=0, database_url=postgres_url, argon2_params=FAST_ARGON2)
    started = embedded.start()
    try:
        assert started.admin_password and not (tmp_path / "p" / "portal.db").exists()
        assert embedded.portal.engine.dialect.name == "postgresql"
        assert httpx.get(started.url.replace("/portal/", "/portal/sign-in")).status_code == 200
        assert embedded.portal.store.verify_events("portal")  # the admin's creation, signed
    finally:
        embedded.stop()
