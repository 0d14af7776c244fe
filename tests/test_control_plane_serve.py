"""`sampan control-plane --config coordinator.toml`: its `[control_plane]` section and a real HTTPS start.

The section is checked before anything starts, naming the key: plain HTTP off loopback (tokens and session
cookies would cross the network in clear), half a TLS pair, client certificates without TLS or without a CA,
missing files, unknown keys. The command itself serves the API over HTTPS with the coordinator's certificate,
prints the first admin's one-time password once, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sampan.config import ConfigError
from sampan.deploy.local import Binding, free_port, toml_dumps, write_federation
from sampan.web.control_plane import load_control_plane, parse_section

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")


def _files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    return cert, key


def test_loopback_http_is_the_default(tmp_path: Path) -> None:
    section = parse_section(None, tmp_path, "coordinator.toml")
    assert (section.host, section.port, section.tls) == ("127.0.0.1", 8443, False)


@pytest.mark.parametrize("data, needle", [
    ({"listen": "0.0.0.0:8443"}, "listen = '0.0.0.0:8443': plain HTTP is served on loopback only"),
    ({"listen": "10.1.2.3:80"}, "plain HTTP is served on loopback only"),
    ({"listen": "8443"}, "listen: expected host:port"),
    ({"tls_cert": "c.crt"}, "tls_cert and tls_key go together"),
    ({"require_client_cert": True}, "require_client_cert needs client_ca"),
    ({"client_ca": "c.crt"}, "client_ca verifies client certificates over TLS"),
    ({"tls_cert": "c.crt", "tls_key": "absent.key"}, "tls_key: no file"),
    ({"listn": "127.0.0.1:1"}, "listn"),
])
def test_unsafe_or_wrong_sections_are_refused_naming_the_key(tmp_path: Path, data: dict, needle: str) -> None:
    _files(tmp_path)
    with pytest.raises(ConfigError, match="coordinator.toml \\[control_plane\\]") as err:
        parse_section(data, tmp_path, "coordinator.toml")
    assert needle in str(err.value)


def test_https_on_any_address_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    cert, key = _files(tmp_path)
    section = parse_section({"listen": "0.0.0.0:9443", "tls_cert": "c.crt", "tls_key": "c.key", "client_ca": "c.crt",
                             "require_client_cert": True}, tmp_path, "coordinator.toml")
    assert section.tls and section.tls_cert == str(cert.resolve()) and section.tls_key == str(key.resolve())
    assert section.require_client_cert and section.client_ca == str(cert.resolve())


@pytest.mark.slow  # a subprocess with the whole web stack: ~20 s on the shared 2-core machine
def test_control_plane_serves_https_beside_the_coordinator(tmp_path: Path) -> None:
    """A federation's coordinator.toml plus [control_plane] with the coordinator's own certificate (SAN 127.0.0.1)."""
    table = tmp_path / "bank.csv"
    table.write_text("id,x,y\na,1.0,0\n")
    proc, port, out, health, files = _start_on_free_ports(table, tmp_path)
    trust = ssl.create_default_context(cafile=str(files.ca_dir / "ca.crt"))
    try:
        assert health is not None and health.json() == {"status": "ok", "api": "v1"}, out.read_text()
        member = ssl.create_default_context(cafile=str(files.ca_dir / "ca.crt"))
        member.load_cert_chain(str(files.root / "bank_a" / "bank_a.crt"), str(files.root / "bank_a" / "bank_a.key"))
        assert httpx.get(f"https://127.0.0.1:{port}/api/v1/health", verify=member, timeout=60).status_code == 200
        # the verified certificate reaches the agent endpoint (bank_a is named; no job 1 is its business) ...
        agent = httpx.get(f"https://127.0.0.1:{port}/api/v1/agent/jobs/1", verify=member, timeout=60)
        assert agent.status_code == 403 and "'bank_a' is not a party of job 1" in agent.json()["error"], agent.text
        # ... and without a certificate the endpoint refuses before looking at any job
        anonymous = httpx.get(f"https://127.0.0.1:{port}/api/v1/agent/jobs/1", verify=trust, timeout=60)
        assert anonymous.status_code == 403 and "client certificate" in anonymous.json()["error"]
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not served
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=60)
        printed = out.read_text()
        assert f"https://127.0.0.1:{port}/" in printed and "one-time password:" in printed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)


_PORT_TAKEN = ("address already in use", "cannot serve on", "cannot listen on")


def _start_on_free_ports(table: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path, Any, Any]:
    """A fresh federation, `sampan control-plane` started on it, its health polled (120 s). Ports are picked free,
    then bound by the subprocess seconds later: if another process took one meanwhile (it exits saying so), start
    again in a new folder (the first start's store already holds the admin whose password it never printed)."""
    for attempt in range(3):
        root = tmp_path / f"federation-{attempt}"
        files = write_federation(root, {"bank_a": {"loans": Binding(str(table), {"id": "id", "label": "y",
                                                                               "features": [{"name": "x"}]})}})
        trust = ssl.create_default_context(cafile=str(files.ca_dir / "ca.crt"))
        port = free_port()
        data = tomllib.loads(files.coordinator_config.read_text())
        data["coordinator"]["listen"] = f"127.0.0.1:{free_port()}"
        data["control_plane"] = {"listen": f"127.0.0.1:{port}", "tls_cert": "coordinator.crt",
                                 "tls_key": "coordinator.key",
                                 "client_ca": "../ca/ca.crt"}  # client certificates optional, checked with the CRL
        files.coordinator_config.write_text(toml_dumps(data))
        _, section = load_control_plane(files.coordinator_config)
        assert section.tls and section.port == port
        out = tmp_path / f"control-plane-{attempt}.out"
        with open(out, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "sampan.cli", "control-plane", "--config",
                                     str(files.coordinator_config)], stdout=fh, stderr=subprocess.STDOUT,
                                    cwd=files.coordinator_config.parent)
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"https://127.0.0.1:{port}/api/v1/health", verify=trust, timeout=60)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        if health is None and proc.poll() is not None and attempt < 2 and any(
                s in out.read_text(errors="replace").lower() for s in _PORT_TAKEN):
            continue
        return proc, port, out, health, files
    raise AssertionError("unreachable")


@pytest.mark.slow  # two subprocess starts
def test_a_start_that_cannot_listen_leaves_no_admin_behind(tmp_path: Path) -> None:
    """The HTTP port is taken: the start fails, and the next start still prints the first admin's one-time password
    (an admin made before the bind would have a password nobody ever saw)."""
    import socket

    table = tmp_path / "bank.csv"
    table.write_text("id,x,y\na,1.0,0\n")
    files = write_federation(tmp_path, {"bank_a": {"loans": Binding(str(table), {"id": "id", "label": "y",
                                                                                "features": [{"name": "x"}]})}})
    data = tomllib.loads(files.coordinator_config.read_text())
    with socket.create_server(("127.0.0.1", 0)) as busy:
        data["control_plane"] = {"listen": f"127.0.0.1:{busy.getsockname()[1]}"}
        files.coordinator_config.write_text(toml_dumps(data))
        failed = subprocess.run([sys.executable, "-m", "sampan.cli", "control-plane", "--config",
                                 str(files.coordinator_config)], capture_output=True, text=True, timeout=300,
                                cwd=files.coordinator_config.parent)
    assert failed.returncode != 0 and "one-time password" not in failed.stdout + failed.stderr
    for attempt in range(3):  # the control plane's port is picked free, then bound seconds later: retry if taken
        port = free_port()
        data["control_plane"] = {"listen": f"127.0.0.1:{port}"}
        files.coordinator_config.write_text(toml_dumps(data))
        out = tmp_path / f"second-{attempt}.out"
        with open(out, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "sampan.cli", "control-plane", "--config",
                                     str(files.coordinator_config)], stdout=fh, stderr=subprocess.STDOUT,
                                    cwd=files.coordinator_config.parent)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None and "one-time password" not in out.read_text():
                if "sampan control plane:" in out.read_text():  # serving: the password line comes right after
                    time.sleep(2)
                    break
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
        printed = out.read_text(errors="replace")
        if "one-time password" in printed or not any(s in printed.lower() for s in _PORT_TAKEN):
            break
    assert f"http://127.0.0.1:{port}/" in printed and "one-time password:" in printed, printed
