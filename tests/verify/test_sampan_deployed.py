"""Sampan's benchmark backend in deployed mode: the deploy coordinator and party agents over gRPC with mutual TLS,
the verifier's party a real Sampan party agent behind the verifier's recording proxy, certificates from the
verifier's consortium CA.

A horizontal SecAgg+ job (two platform agents + the verifier's agent) through the HTTP API reaches AUC > 0.7 on
German credit; the proxy counted the party's bytes; what the party sent (the tap, in the clear) is masked. A
wrong-CA, an expired, a revoked client certificate and none at all are refused by the coordinator (no protocol
message reaches the party).
Seeds are fixed only to keep the tests reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from sampan.verify.api import PartyConnect, PartyRegistration, TableData, TaskSpec  # noqa: E402
from sampan.verify.client import BenchmarkClient  # noqa: E402
from sampan.verify.kits import ClientTLS, RecordingTap, get_kit  # noqa: E402
from sampan.verify.pki import VerifierCA  # noqa: E402
from sampan.verify.proxy import RecordingProxy  # noqa: E402
from sampan.verify.serve_local import LocalServer  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402
from sampan.web.bench_api import SampanBackend  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "german_credit" / "german.data-numeric"
pytestmark = [pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/german_credit"), pytest.mark.slow]
FEATURES = [f"a{i}" for i in range(24)]
TOKEN = "d" * 32
NAMES = ["bank0", "bank1", "bank2"]  # bank0 is the verifier's


def german() -> tuple[np.ndarray, np.ndarray]:
    d = np.loadtxt(DATA)
    return d[:, :24], (d[:, 24] == 2).astype(float)


def table(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> TableData:
    return TableData(columns=["id", *FEATURES, "y"],
                     rows=[[f"r{i}", *(float(v) for v in X[i]), float(y[i])] for i in rows])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ca = VerifierCA(tmp_path_factory.mktemp("vca"))
    backend = SampanBackend(tmp_path_factory.mktemp("bench"), issuer=ca)
    server = LocalServer(make_benchmark_app(backend, token=TOKEN))
    client = BenchmarkClient(server.url, TOKEN)
    X, y = german()
    order = np.random.default_rng(3).permutation(len(y))
    try:
        yield {"ca": ca, "client": client, "X": X, "y": y, "holdout": order[:200],
               "parts": np.array_split(order[200:], len(NAMES))}
    finally:
        client.close()
        server.stop()
        backend.close()


def _job(env: dict[str, Any], *, rounds: int, timeout_s: int) -> tuple[str, PartyConnect, Any]:
    client, ca = env["client"], env["ca"]
    project = client.create_project("deployed", ca_pem=ca.ca_pem).project_id
    good = ca.client_cert(NAMES[0])
    connect = None
    for i, name in enumerate(NAMES):
        verifier = i == 0
        party = client.register_party(project, PartyRegistration(
            name=name, role="data_owner", operated_by="verifier" if verifier else "platform",
            data=None if verifier else table(env["X"], env["y"], env["parts"][i]),
            certificate_pem=good.cert_pem if verifier else None))
        if verifier:
            connect = party.connect
    assert connect is not None and connect.protocol == "sampan-grpc+mtls" and connect.ca_pem
    spec = TaskSpec(kind="horizontal", label="y", id_column="id", features={n: FEATURES for n in NAMES},
                    rounds=rounds, learning_rate=0.1, batch_size=32, secure_aggregation=True, seed=11,
                    timeout_s=timeout_s)
    return client.submit_job(project, spec).job_id, connect, good


def _kit(env: dict[str, Any], job_id: str, connect: PartyConnect, tls: ClientTLS, tap: RecordingTap,
         stop: threading.Event) -> tuple[threading.Thread, RecordingProxy, list[BaseException]]:
    proxy = RecordingProxy(connect.address).start()
    via = PartyConnect(address=proxy.address, protocol=connect.protocol, server_name=connect.server_name,
                       ca_pem=connect.ca_pem)
    errors: list[BaseException] = []

    def go() -> None:
        try:
            get_kit("sampan").run(job_id, NAMES[0], table(env["X"], env["y"], env["parts"][0]), via, tls, tap, stop)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, proxy, errors


def test_secure_job_on_the_wire(env: dict[str, Any]) -> None:
    client, ca = env["client"], env["ca"]
    assert client.info().claims.mtls
    rounds = 5
    job_id, connect, good = _job(env, rounds=rounds, timeout_s=120)
    tap = RecordingTap()
    thread, proxy, errors = _kit(env, job_id, connect, ClientTLS(good.cert_pem, good.key_pem, None, ca.crl_pem), tap,
                                 threading.Event())
    final = client.wait_for(job_id, 150)
    thread.join(20)
    snap = proxy.snapshot()
    proxy.stop()
    assert final.state == "succeeded", final.error
    assert not errors, errors
    assert snap.bytes_up > 0 and snap.bytes_down > 0
    results = client.results(job_id)
    assert len(results.rounds) == rounds
    evaluated = client.evaluate(job_id, table(env["X"], env["y"], env["holdout"]))
    assert evaluated.metrics.auc is not None and evaluated.metrics.auc > 0.7
    updates = [m for m in tap.messages if m.direction == "sent" and m.kind == "update"]
    clear = [m for m in tap.messages if m.direction == "sent" and m.kind == "update_clear"]
    assert len(updates) == rounds and len(clear) == rounds
    for sent, plain in zip(updates, clear, strict=True):
        assert "masked" in sent.payload and "update" not in sent.payload  # only the masked vector left the party
        masked = np.asarray(sent.payload["masked_update"], dtype=np.float64)
        assert not np.allclose(masked[: plain.payload["update"].size], plain.payload["update"])
    print(f"\nwire: {snap.bytes_up} B up, {snap.bytes_down} B down over {rounds} rounds "
          f"({(snap.bytes_up + snap.bytes_down) / rounds:.0f} B/round); seconds/round "
          f"{[round(r.seconds, 2) for r in results.rounds]}; AUC {evaluated.metrics.auc:.3f}")


BAD_CERTIFICATES = ["wrong_ca", "expired", "revoked", "none"]


@pytest.fixture(scope="module")
def refusals(env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The four bad-certificate jobs run side by side: each one ends only when the coordinator's connect timeout
    (about 9 s at timeout_s=12) runs out, so one shared wait instead of four in a row. Each job has its own project,
    coordinator, proxy and tap; nothing is shared between the variants but the backend and the CA."""
    client, ca = env["client"], env["ca"]
    started: dict[str, tuple[str, RecordingTap, threading.Event, threading.Thread, RecordingProxy,
                             list[BaseException]]] = {}
    for variant in BAD_CERTIFICATES:
        job_id, connect, _ = _job(env, rounds=2, timeout_s=12)
        if variant == "none":  # no client certificate at all
            tls = ClientTLS(None, None, None, ca.crl_pem)
        else:
            bad = ca.client_cert(NAMES[0], variant)  # type: ignore[arg-type]
            tls = ClientTLS(bad.cert_pem, bad.key_pem, None, ca.crl_pem)
        tap = RecordingTap()
        stop = threading.Event()
        started[variant] = (job_id, tap, stop, *_kit(env, job_id, connect, tls, tap, stop))
    out: dict[str, dict[str, Any]] = {}
    for variant, (job_id, tap, stop, thread, proxy, errors) in started.items():
        final = client.wait_for(job_id, 60)
        stop.set()
        thread.join(20)
        out[variant] = {"final": final, "connections": proxy.snapshot().connections, "tap": tap, "errors": errors}
        proxy.stop()
    return out


@pytest.mark.parametrize("variant", BAD_CERTIFICATES)
def test_bad_client_certificate_is_refused(refusals: dict[str, dict[str, Any]], variant: str) -> None:
    final, tap, errors = refusals[variant]["final"], refusals[variant]["tap"], refusals[variant]["errors"]
    assert final.state == "failed" and final.error is not None and "did not connect" in final.error.message
    assert refusals[variant]["connections"]  # it did dial: the coordinator refused it
    assert not [m for m in tap.messages if m.direction == "received"]  # nothing of the protocol reached it
    assert errors and "never admitted" in str(errors[0])
