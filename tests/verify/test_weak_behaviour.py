"""The weak platform's refusals are clear, and its weaknesses are real (what the security tests must catch).

Bad input gets an API error naming the field; a Byzantine kit (update_hook) reaches the average unchecked; a
replayed update counts twice; a malformed update kills the job with a message naming the party; TLS never asks
for a client certificate; a dropped party is skipped; cancel ends a job.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from _weak_fixtures import German

from sampan.verify.api import Job, PartyConnect, PartyRegistration, ProjectCreate, TableData, TaskSpec
from sampan.verify.backend import BackendError
from sampan.verify.kits import ClientTLS, KitError, NullTap, RecordingTap, get_kit
from sampan.verify.platforms.weak import WeakBackend

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def german() -> German:
    return German()


@pytest.fixture()
def backend() -> Iterator[WeakBackend]:
    with WeakBackend() as b:
        yield b


def _project(backend: WeakBackend, german: German, *, verifier: bool = True) -> tuple[str, PartyConnect | None]:
    project = backend.create_project(ProjectCreate(name="weak")).project_id
    parts = np.array_split(german.order, 3)
    for name, rows in (("bank-a", parts[0]), ("bank-b", parts[1])):
        backend.register_party(project, PartyRegistration(name=name, role="data_owner", operated_by="platform",
                                                          data=german.table(rows)))
    connect = None
    if verifier:
        connect = backend.register_party(project, PartyRegistration(name="verifier", role="data_owner",
                                                                    operated_by="verifier")).connect
    return project, connect


def _spec(german: German, parties: tuple[str, ...] = ("bank-a", "bank-b", "verifier"), **kw: object) -> TaskSpec:
    options: dict[str, object] = {"label": "label", "rounds": 3, "seed": 5, "timeout_s": 30, **kw}
    return TaskSpec(kind="horizontal", features={n: german.features for n in parties}, **options)  # type: ignore[arg-type]


def _wait(backend: WeakBackend, job_id: str, timeout: float = 30) -> Job:
    deadline = time.monotonic() + timeout
    while not (job := backend.job(job_id)).done and time.monotonic() < deadline:
        time.sleep(0.05)
    return job


def _kit(job_id: str, connect: PartyConnect, data: TableData, **kw: object) -> tuple[threading.Thread, RecordingTap,
                                                                                       list[BaseException]]:
    tap, errors = RecordingTap(), []
    tls = kw.pop("tls", None)

    def target() -> None:
        try:
            get_kit("weak", **kw).run(job_id, "verifier", data, connect, tls, tap,  # type: ignore[arg-type]
                                      threading.Event())
        except BaseException as exc:
            errors.append(exc)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, tap, errors


def _post(connect: PartyConnect, path: str, body: dict[str, object]) -> int:
    host, _, port = connect.address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status


def test_bad_input_names_the_field(backend: WeakBackend, german: German) -> None:
    project, _ = _project(backend, german)
    with pytest.raises(BackendError) as exc:
        backend.register_party(project, PartyRegistration(name="bank-a", role="data_owner", operated_by="platform",
                                                          data=german.table(german.order[:5])))
    assert exc.value.code == "conflict" and "bank-a" in exc.value.message
    with pytest.raises(BackendError) as exc:
        backend.submit_job("p-nope", _spec(german))
    assert exc.value.code == "not_found"
    with pytest.raises(BackendError) as exc:
        backend.submit_job(project, _spec(german, ("bank-a", "bank-z")))
    assert exc.value.code == "invalid" and "bank-z" in exc.value.message and exc.value.field == "features"
    with pytest.raises(BackendError) as exc:
        backend.submit_job(project, _spec(german, ("bank-a",), label="nope"))
    assert exc.value.code == "invalid" and "'nope'" in exc.value.message
    with pytest.raises(BackendError) as exc:
        backend.submit_job(project, TaskSpec(kind="vertical", label="label", id_column="id", rounds=2,
                                             features={"bank-a": german.features[:3]}))
    assert exc.value.code == "invalid" and "label_holder" in exc.value.message
    with pytest.raises(BackendError) as exc:
        backend.results("j-none")
    assert exc.value.code == "not_found"
    job = backend.submit_job(project, _spec(german, ("bank-a", "bank-b")))
    if not backend.job(job.job_id).done:
        with pytest.raises(BackendError, match="not succeeded"):
            backend.model(job.job_id)
    assert _wait(backend, job.job_id).state == "succeeded"
    with pytest.raises(BackendError) as exc:
        backend.evaluate(job.job_id, german.table(german.order[:5], label=False))
    assert exc.value.code == "invalid" and "label" in exc.value.message
    bad = TableData(columns=german.features, rows=[["x"] * len(german.features)])
    with pytest.raises(BackendError, match="is not a number"):
        backend.predict(job.job_id, bad)
    with pytest.raises(KitError, match="no party kit named 'vendorx'"):
        get_kit("vendorx")


def test_a_platform_party_with_a_bad_cell_fails_the_job_naming_it(backend: WeakBackend, german: German) -> None:
    project = backend.create_project(ProjectCreate(name="weak")).project_id
    table = german.table(german.order[:50])
    table.rows[7][0] = None
    backend.register_party(project, PartyRegistration(name="bank-a", role="data_owner", operated_by="platform",
                                                      data=table))
    job = _wait(backend, backend.submit_job(project, _spec(german, ("bank-a",))).job_id)
    assert job.state == "failed" and job.error is not None and job.error.code == "invalid"
    assert "'bank-a'" in job.error.message and "row 7" in job.error.message


def test_a_byzantine_update_goes_straight_into_the_average(backend: WeakBackend, german: German) -> None:
    parts = np.array_split(german.order, 3)
    aucs = {}
    for scale in (1.0, -50.0):
        project, connect = _project(backend, german)
        assert connect is not None
        job = backend.submit_job(project, _spec(german))
        sent: dict[int, np.ndarray] = {}

        def hook(r: int, w: np.ndarray, scale: float = scale, sent: dict[int, np.ndarray] = sent) -> np.ndarray:
            sent[r] = w * scale
            return sent[r]
        thread, tap, errors = _kit(job.job_id, connect, german.table(parts[2]), update_hook=hook)
        assert _wait(backend, job.job_id).state == "succeeded"
        thread.join(5)
        assert not errors and sorted(sent) == [1, 2, 3]
        np.testing.assert_array_equal(tap.updates()[3]["weights"], sent[3])  # the tap sees what was really sent
        aucs[scale] = backend.results(job.job_id).metrics["auc"]
    assert aucs[1.0] > 0.7 and aucs[-50.0] < 0.5  # no norm check: a sign-flipped, scaled update wins


def test_replayed_and_unknown_party_updates_all_count(backend: WeakBackend, german: German) -> None:
    project, connect = _project(backend, german)
    assert connect is not None
    job = backend.submit_job(project, _spec(german, rounds=2))
    d = len(german.features) + 1
    update = {"party": "verifier", "round": 1, "weights": [0.0] * d, "n": 100}
    for body in (update, update, {**update, "party": "mallory"}, {**update, "round": 2}):
        assert _post(connect, f"/weak/v1/jobs/{job.job_id}/update", body) == 200
    # the job waits for the verifier party's statistics first, so every update above is in before round 1 ends
    assert _post(connect, f"/weak/v1/jobs/{job.job_id}/stats",
                 {"party": "verifier", "n": 1, "sum": [0.0] * (d - 1), "sumsq": [1.0] * (d - 1)}) == 200
    assert _wait(backend, job.job_id).state == "succeeded"
    first = backend.results(job.job_id).rounds[0]
    assert "mallory" in first.parties  # an unregistered name was averaged in
    audit = [e.detail for e in backend.results(job.job_id).audit_log or [] if e.action == "round.done"]
    assert audit[0] == "round 1: 5 updates"  # two platform parties + the update, its replay, mallory's


def test_a_malformed_update_fails_the_job_naming_the_party(backend: WeakBackend, german: German) -> None:
    project, connect = _project(backend, german)
    assert connect is not None
    job = backend.submit_job(project, _spec(german, rounds=2))
    d = len(german.features)
    _post(connect, f"/weak/v1/jobs/{job.job_id}/stats",
          {"party": "verifier", "n": 1, "sum": [0.0] * d, "sumsq": [1.0] * d})
    _post(connect, f"/weak/v1/jobs/{job.job_id}/update", {"party": "verifier", "round": 1, "weights": [1.0], "n": 1})
    done = _wait(backend, job.job_id)
    assert done.state == "failed" and done.error is not None and "'verifier'" in done.error.message


def test_tls_never_asks_for_a_client_certificate(german: German) -> None:
    with WeakBackend(tls=True) as backend:
        project, connect = _project(backend, german)
        assert connect is not None and connect.ca_pem and "https" in connect.protocol
        job = backend.submit_job(project, _spec(german, rounds=2))
        thread, tap, errors = _kit(job.job_id, connect, german.table(np.array_split(german.order, 3)[2]),
                                   tls=ClientTLS())  # no client certificate at all
        assert _wait(backend, job.job_id).state == "succeeded"
        thread.join(5)
        assert not errors and sorted(tap.updates()) == [1, 2]


def test_dropout_skips_the_party_and_cancel_ends_a_job(backend: WeakBackend, german: German) -> None:
    project, connect = _project(backend, german)
    assert connect is not None
    job = backend.submit_job(project, _spec(german, rounds=3, dropout={"party": "verifier", "after_round": 1}))
    thread, tap, errors = _kit(job.job_id, connect, german.table(np.array_split(german.order, 3)[2]))
    assert _wait(backend, job.job_id).state == "succeeded"
    thread.join(5)
    assert not errors and sorted(tap.updates()) == [1]
    assert [("verifier" in r.parties) for r in backend.results(job.job_id).rounds] == [True, False, False]
    # a job whose verifier party never comes can be cancelled
    job = backend.submit_job(project, _spec(german, rounds=3))
    time.sleep(0.2)
    assert backend.cancel(job.job_id).state == "cancelled"
    # a kit run outside an evaluation can use the NullTap
    NullTap().sent("update", 1, {})
