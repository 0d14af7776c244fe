"""Attack on `sampan serve` mTLS (R13-SRV-10): a scoring client whose certificate the bank revoked (`sampan certs
revoke` on the scoring-client CA that docs/deploy.md section 8 has the bank make with `sampan certs`) still scored:
`TlsFiles`/`uvicorn_tls` took no CRL. Fixed: the CA's CRL (``client_crl``, default ``crl.pem`` beside the client CA)
is loaded into the server's SSL context with ``VERIFY_CRL_CHECK_LEAF``; the revoked client fails the handshake."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn")
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from sampan.deploy.ca_revocation import revoke  # noqa: E402
from sampan.deploy.certs import create_request, init_ca, sign_request  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402
from sampan.serve.app import create_app  # noqa: E402
from sampan.serve.auth import TlsFiles, uvicorn_tls  # noqa: E402
from sampan.serve.service import horizontal_backend  # noqa: E402


def _issue(ca_dir: Path, root: Path, name: str, role: str, **kw: object) -> tuple[str, str]:
    _, csr = create_request(name, role, root / name, **kw)  # type: ignore[arg-type]
    return str(sign_request(csr, ca_dir)), str(root / name / f"{name}.key")


def test_a_revoked_client_certificate_is_refused(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "bank-ca", name="Bank scoring clients CA")
    server = _issue(ca.directory, tmp_path, "scoring", "coordinator", dns=["localhost"], ips=["127.0.0.1"])
    client = _issue(ca.directory, tmp_path, "old-desk", "party")
    current = _issue(ca.directory, tmp_path, "new-desk", "party")
    revoke(ca.directory, cert_path=client[0])  # the desk's laptop was lost
    store = Store.open(f"sqlite:///{tmp_path / 'bank.db'}")
    store.register_model("pd", "run-1", {"params": np.array([0.5, -1.0])},
                         {"model": {"kind": "logistic", "n_features": 1}, "feature_names": ["x"]})
    tls = uvicorn_tls(TlsFiles(Path(server[0]), Path(server[1]), Path(ca.cert)))
    service = uvicorn.Server(uvicorn.Config(create_app(horizontal_backend(store, "pd"), mtls=True), host="127.0.0.1",
                                            port=0, log_level="error", access_log=False, **tls))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not service.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = service.servers[0].sockets[0].getsockname()[1]
        context = ssl.create_default_context(cafile=str(ca.cert))
        context.load_cert_chain(*client)
        try:
            with httpx.Client(verify=context, timeout=10) as revoked:
                status = revoked.post(f"https://127.0.0.1:{port}/v1/score",
                                      json={"applicants": [{"features": {"x": 1.0}}]}).status_code
        except httpx.TransportError:  # refused in the handshake: the defence
            status = None
        assert status is None, f"a revoked client certificate was answered {status}"
        context = ssl.create_default_context(cafile=str(ca.cert))
        context.load_cert_chain(*current)
        with httpx.Client(verify=context, timeout=10) as valid:  # the CRL check refuses the revoked one only
            assert valid.post(f"https://127.0.0.1:{port}/v1/score",
                              json={"applicants": [{"features": {"x": 1.0}}]}).status_code == 200
    finally:
        service.should_exit = True
        thread.join(10)
        store.close()
