"""The weak platform (a negative control) trains for real through Benchmark API v1 and leaks what it should.

A horizontal job with two platform-operated parties and one verifier-operated party (the weak kit, behind the
verifier's recording proxy) reaches AUC > 0.7 on German credit, and the party's update is readable in the captured
bytes; a vertical job works with the verifier's party as a feature holder, and its residuals cross the wire in the
clear.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
from _weak_fixtures import German  # noqa: E402

from sampan.verify.api import PartyConnect, PartyRegistration, TaskSpec  # noqa: E402
from sampan.verify.backend import PlatformBackend  # noqa: E402
from sampan.verify.client import BenchmarkClient  # noqa: E402
from sampan.verify.kits import RecordingTap, get_kit  # noqa: E402
from sampan.verify.platforms.weak import WeakBackend  # noqa: E402
from sampan.verify.proxy import RecordingProxy  # noqa: E402
from sampan.verify.serve_local import serve_app  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

pytestmark = pytest.mark.shared_data
TOKEN = "weak-test-token"


@pytest.fixture(scope="module")
def german() -> German:
    return German()


@pytest.fixture()
def api() -> Iterator[tuple[WeakBackend, BenchmarkClient]]:
    backend = WeakBackend(holdout=0.2)  # the platform's own "auc" on rows it kept out of training
    with serve_app(make_benchmark_app(backend, token=TOKEN)) as server, BenchmarkClient(server.url, TOKEN) as client:
        yield backend, client
    backend.close()


def _run_kit(job_id: str, party: str, data: object, connect: PartyConnect, tap: RecordingTap,
             errors: list[BaseException]) -> threading.Thread:
    def target() -> None:
        try:
            get_kit("weak").run(job_id, party, data, connect, None, tap, threading.Event())  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the test
            errors.append(exc)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_it_is_a_backend_and_claims_what_it_does_not_do() -> None:
    backend = WeakBackend()
    assert isinstance(backend, PlatformBackend)
    info = backend.info()
    assert info.claims.secure_aggregation and info.claims.mtls and info.claims.dp is not None
    assert info.party_kit == "weak" and "secure_aggregation" in info.capabilities


def test_horizontal_through_the_api_learns_and_its_update_is_clear_on_the_wire(
        german: German, api: tuple[WeakBackend, BenchmarkClient]) -> None:
    _, client = api
    parts = np.array_split(german.order, 3)
    project = client.create_project("weak-h").project_id
    for name, rows in (("bank-a", parts[0]), ("bank-b", parts[1])):
        client.register_party(project, PartyRegistration(name=name, role="data_owner", operated_by="platform",
                                                         data=german.table(rows)))
    party = client.register_party(project, PartyRegistration(name="verifier", role="data_owner",
                                                            operated_by="verifier"))
    assert party.connect is not None
    relay = RecordingProxy(party.connect.address, capture=True).start()
    spec = TaskSpec(kind="horizontal", label="label", rounds=4, seed=3,
                    features={n: german.features for n in ("bank-a", "bank-b", "verifier")},
                    secure_aggregation=True)  # asked for, silently not done
    job = client.submit_job(project, spec)
    tap, errors = RecordingTap(), list[BaseException]()
    thread = _run_kit(job.job_id, "verifier", german.table(parts[2]),
                      party.connect.model_copy(update={"address": relay.address}), tap, errors)
    done = client.wait_for(job.job_id, timeout=60)
    thread.join(10)
    up = relay.snapshot().captured("up")
    relay.stop()
    assert not errors and done.state == "succeeded", (errors, done.error)
    results = client.results(job.job_id)
    assert results.metrics["auc"] > 0.7
    assert [r.round for r in results.rounds] == [1, 2, 3, 4]
    assert all("verifier" in r.parties for r in results.rounds)
    # the update the party sent is in the captured bytes, as plain JSON numbers
    sent = tap.updates()
    assert sorted(sent) == [1, 2, 3, 4] and sent[1]["weights"].size == len(german.features) + 1
    bodies = [json.loads(m) for m in re.findall(rb'\{"party": "verifier", "round": \d+, "weights".*?\}', up)]
    on_wire = {b["round"]: np.asarray(b["weights"]) for b in bodies}
    assert sorted(on_wire) == [1, 2, 3, 4]
    np.testing.assert_allclose(on_wire[3], sent[3]["weights"])
    model = client.model(job.job_id)
    assert model.features == german.features and model.standardisation is not None
    scores = client.predict(job.job_id, german.table(parts[2][:5], label=False)).scores
    assert len(scores) == 5 and all(0 < s < 1 for s in scores)
    assert client.evaluate(job.job_id, german.table(parts[2])).metrics.auc is not None


def test_vertical_with_the_verifier_as_feature_holder(german: German,
                                                     api: tuple[WeakBackend, BenchmarkClient]) -> None:
    _, client = api
    mine, theirs = german.features[:30], german.features[30:]
    project = client.create_project("weak-v").project_id
    client.register_party(project, PartyRegistration(name="bank", role="label_holder", operated_by="platform",
                                                     data=german.table(german.order[:900], theirs, ids=True)))
    party = client.register_party(project, PartyRegistration(name="verifier", role="feature_holder",
                                                            operated_by="verifier"))
    assert party.connect is not None
    relay = RecordingProxy(party.connect.address, capture=True).start()
    job = client.submit_job(project, TaskSpec(kind="vertical", label="label", id_column="id", rounds=25,
                                              learning_rate=0.5, seed=4,
                                              features={"bank": theirs, "verifier": mine}))
    tap, errors = RecordingTap(), list[BaseException]()
    data = german.table(german.order[100:], mine, ids=True, label=False)
    thread = _run_kit(job.job_id, "verifier", data, party.connect.model_copy(update={"address": relay.address}),
                      tap, errors)
    done = client.wait_for(job.job_id, timeout=60)
    thread.join(10)
    wire = relay.snapshot()
    relay.stop()
    assert not errors and done.state == "succeeded", (errors, done.error)
    assert client.results(job.job_id).metrics["auc"] > 0.65
    model = client.model(job.job_id)
    assert model.features[0] == f"bank:{theirs[0]}" and model.features[-1] == f"verifier:{mine[-1]}"
    residual = tap.of("received", "residual")[0].payload["residual"]
    assert residual.size == 640  # 800 joined rows, 80% of them train: every residual in the clear
    assert b'"residual": [' in wire.captured("down") and b'"ids": ["' in wire.captured("up")
