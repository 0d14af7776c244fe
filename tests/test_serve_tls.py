"""`sampan serve` with mTLS: uvicorn demands a client certificate from the bank's scoring-client CA; a client
without one, or with one from another CA, is refused in the TLS handshake (no HTTP answer at all)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn")
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from sampan.deploy.certs import create_request, init_ca, sign_request  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402
from sampan.serve.app import create_app  # noqa: E402
from sampan.serve.auth import TlsFiles, uvicorn_tls  # noqa: E402
from sampan.serve.service import horizontal_backend  # noqa: E402


def _issue(ca_dir: Path, root: Path, name: str, role: str, **kw: object) -> tuple[str, str]:
    _, csr = create_request(name, role, root / name, **kw)  # type: ignore[arg-type]
    return str(sign_request(csr, ca_dir)), str(root / name / f"{name}.key")


@pytest.fixture
def mtls_server(tmp_path: Path) -> Iterator[tuple[str, Path, tuple[str, str], tuple[str, str]]]:
    ca = init_ca(tmp_path / "bank-ca", name="Bank scoring clients CA")
    rogue = init_ca(tmp_path / "rogue-ca", name="Someone else's CA")
    server = _issue(ca.directory, tmp_path, "scoring", "coordinator", dns=["localhost"], ips=["127.0.0.1"])
    client = _issue(ca.directory, tmp_path, "loan-desk", "party")
    stranger = _issue(rogue.directory, tmp_path, "stranger", "party")
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    store = Store.open(url)
    store.register_model("pd", "run-1", {"params": np.array([0.5, -1.0])},
                         {"model": {"kind": "logistic", "n_features": 1}, "feature_names": ["x"]})
    app = create_app(horizontal_backend(store, "pd"), mtls=True)
    tls = uvicorn_tls(TlsFiles(Path(server[0]), Path(server[1]), Path(ca.cert)))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", access_log=False, **tls)
    service = uvicorn.Server(config)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not service.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.started
    port = service.servers[0].sockets[0].getsockname()[1]
    yield f"https://127.0.0.1:{port}", Path(ca.cert), client, stranger
    service.should_exit = True
    thread.join(10)
    store.close()


def test_client_certificate_required_and_checked(mtls_server: tuple[str, Path, tuple[str, str], tuple[str, str]]
                                                 ) -> None:
    base, ca, client, stranger = mtls_server

    def tls(cert: tuple[str, str] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            context.load_cert_chain(*cert)
        return context

    with httpx.Client(verify=tls(client), timeout=10) as ok:
        reply = ok.post(f"{base}/v1/score", json={"applicants": [{"id": "a", "features": {"x": 3.0}}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["results"][0]["probability_of_default"] == pytest.approx(1 / (1 + np.exp(-0.5)))
    for cert in (None, stranger):
        with httpx.Client(verify=tls(cert), timeout=10) as refused:
            with pytest.raises(httpx.TransportError):  # the TLS handshake fails: no HTTP status at all
                refused.get(f"{base}/v1/health")
