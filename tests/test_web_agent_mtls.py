"""The agent endpoint over a real TLS server (uvicorn + TlsScopeH11Protocol): a party agent's client certificate,
verified in the handshake, reaches the app and identifies the party; without one the endpoint refuses."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from _web_plane import BANKS, HORIZONTAL, consortium_with_banks, make_world
from cryptography.hazmat.primitives import serialization

from sampan.crypto.identity import PartyIdentity
from sampan.web.app import AppSettings, create_app
from sampan.web.tls_scope import TlsScopeH11Protocol


def _write(identity: PartyIdentity, folder: Path, name: str) -> tuple[str, str]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    cert.write_bytes(identity.certificate_pem)
    key.write_bytes(identity.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return str(cert), str(key)


def test_the_agent_endpoint_reads_the_verified_client_certificate(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    cid, _ = consortium_with_banks(world)
    job = world.plane.create_job(world.admin, cid, "j", HORIZONTAL, {b: "sme_loans" for b in BANKS})
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(world.gateway.ca.certificate.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = _write(world.gateway.ca.issue("coordinator", "coordinator"), tmp_path, "server")
    bank_cert, bank_key = _write(world.gateway.identity("bank_a"), tmp_path, "bank_a")
    app = create_app(world.plane, AppSettings(secure_cookies=True, console=False,
                                              agent_verifier=world.gateway.verifier))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http=TlsScopeH11Protocol, ssl_certfile=server_cert, ssl_keyfile=server_key,
                            ssl_ca_certs=str(ca_file), ssl_cert_reqs=ssl.CERT_OPTIONAL, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the TLS server did not start"
            time.sleep(0.05)
        context = ssl.create_default_context(cafile=str(ca_file))
        context.check_hostname = False  # the coordinator's certificate names it by URI, not by 127.0.0.1
        url = f"https://127.0.0.1:{port}/api/v1/agent/jobs/{job['id']}"
        with httpx.Client(verify=context) as anonymous:
            assert anonymous.get(url).status_code == 403
        context.load_cert_chain(bank_cert, bank_key)
        with httpx.Client(verify=context) as agent:
            answer = agent.get(url)
        assert answer.status_code == 200, answer.text
        assert answer.json()["spec_hash"] == job["spec_hash"]
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
    assert not thread.is_alive()

