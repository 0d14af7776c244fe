"""The Flower platform's behaviour beyond the happy path: dropout, a Byzantine kit, cancel, refusals.

Drives FlowerBackend directly (the HTTP layer is covered by test_flower_platform.py) on a small synthetic table, so
each job is a few seconds of real Flower (server and clients in .venv-flower). Skipped when Flower is not installed.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import numpy as np
import pytest

from sampan.verify.api import PartyRegistration
from sampan.verify.backend import BackendError
from sampan.verify.kits import ClientTLS, RecordingTap, get_kit
from sampan.verify.platforms.flower_proc import FlowerMissing, flower_python

try:
    flower_python()
except FlowerMissing as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"Flower is not installed: {exc}", allow_module_level=True)

from _flower_fixtures import _setup, _spec, _table, _wait  # noqa: E402

from sampan.verify.platforms.flower import FlowerBackend  # noqa: E402


@pytest.fixture()
def backend() -> Any:
    b = FlowerBackend()
    yield b
    b.close()


def test_a_platform_party_drops_out_and_the_job_finishes_without_it(backend: FlowerBackend) -> None:
    pid, _ = _setup(backend, verifier=False)
    job = backend.submit_job(pid, _spec(["bank-a", "bank-b"], dropout={"party": "bank-b", "after_round": 1}))
    assert _wait(backend, job.job_id) == "succeeded", backend.job(job.job_id)
    rounds = backend.results(job.job_id).rounds
    assert [r.round for r in rounds] == [1, 2, 3]
    assert rounds[0].parties == ["bank-a", "bank-b"]
    assert rounds[1].parties == ["bank-a"] and rounds[2].parties == ["bank-a"]
    holdout = _table(300, 9)
    assert (backend.evaluate(job.job_id, holdout).metrics.auc or 0) > 0.8


def test_the_kit_sends_what_the_update_hook_returns_and_the_tap_sees_it(backend: FlowerBackend) -> None:
    pid, connect = _setup(backend)
    job = backend.submit_job(pid, _spec(["bank-a", "bank-b", "verifier"]))
    tap = RecordingTap()
    honest: dict[int, np.ndarray] = {}

    def scale(rnd: int, weights: np.ndarray) -> np.ndarray:  # a scaling attack, as sampan.audit would ask
        honest[rnd] = weights.copy()
        return weights * 10.0

    kit = get_kit("flower", update_hook=scale)
    unused = ClientTLS(cert_pem="unused", key_pem="unused")  # Flower's client presents no certificate: ignored
    thread = threading.Thread(target=kit.run, args=(job.job_id, "verifier", _table(150, 5), connect, unused, tap,
                                                    threading.Event()), daemon=True)
    thread.start()
    assert _wait(backend, job.job_id) == "succeeded", backend.job(job.job_id)
    thread.join(timeout=20)
    updates = tap.updates()
    assert sorted(updates) == [1, 2, 3] == sorted(honest)
    for rnd, update in updates.items():
        np.testing.assert_allclose(update["weights"], honest[rnd] * 10.0)
    received = tap.of("received", "model")
    assert [m.round for m in received] == [1, 2, 3]
    assert np.allclose(received[0].payload["weights"], 0.0)  # round 1 starts from zeros


def _other_ca() -> str:
    from sampan.verify.platforms.flower_tls import server_pki

    return server_pki().ca_pem


def _tls_handshake(address: str, ca_pem: str, limit: float = 20) -> dict[str, Any]:
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca_pem)
    context.set_alpn_protocols(["h2"])
    deadline = time.monotonic() + limit
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as tls:
                cert: dict[str, Any] = tls.getpeercert() or {}
                return cert
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_the_server_speaks_tls_under_the_ca_it_hands_out_and_cancel_kills_it(backend: FlowerBackend) -> None:
    pid, connect = _setup(backend)  # the verifier's party never connects: the server waits for it
    job = backend.submit_job(pid, _spec(["bank-a", "bank-b", "verifier"]))
    assert connect is not None and connect.ca_pem is not None
    cert = _tls_handshake(connect.address, connect.ca_pem)  # verified against the CA, for 127.0.0.1
    assert ("IP Address", "127.0.0.1") in cert.get("subjectAltName", ())
    with pytest.raises(ssl.SSLError):  # a CA of someone else's does not verify it
        _tls_handshake(connect.address, _other_ca(), limit=0)
    assert backend.cancel(job.job_id).state == "cancelled"
    with pytest.raises(BackendError) as refused:
        backend.results(job.job_id)
    assert refused.value.code == "conflict"


def test_refusals_name_the_field(backend: FlowerBackend) -> None:
    pid, connect = _setup(backend)
    with pytest.raises(BackendError) as refused:
        backend.submit_job(pid, _spec(["bank-a", "nobody"]))
    assert refused.value.code == "invalid" and "nobody" in refused.value.message
    with pytest.raises(BackendError) as refused:
        backend.register_party(pid, PartyRegistration(name="bank-a", role="data_owner", operated_by="platform",
                                                      data=_table(5, 1)))
    assert refused.value.code == "conflict"
    with pytest.raises(BackendError) as refused:
        backend.job("j-nope")
    assert refused.value.code == "not_found"
    assert connect is not None and connect.ca_pem is not None  # one-sided TLS: the server's CA for the party
