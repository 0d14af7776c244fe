"""Sampan as the Benchmark API's reference implementation: real jobs through the HTTP API (serve_local).

German credit (numeric version, UCI 144) split across parties; the verifier's own party runs through the Sampan kit
with a recording tap. Seeds are fixed only to keep the tests reproducible (the API's `seed` field).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from sampan.verify.api import DPSpec, Dropout, PartyRegistration, TableData, TaskSpec  # noqa: E402
from sampan.verify.client import BenchmarkClient  # noqa: E402
from sampan.verify.kits import RecordingTap, get_kit  # noqa: E402
from sampan.verify.serve_local import LocalServer  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402
from sampan.web.bench_api import SampanBackend  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "german_credit" / "german.data-numeric"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/german_credit")
FEATURES = [f"a{i}" for i in range(24)]
TOKEN = "t" * 32


def german() -> tuple[np.ndarray, np.ndarray]:
    d = np.loadtxt(DATA)
    return d[:, :24], (d[:, 24] == 2).astype(float)


def table(X: np.ndarray, y: np.ndarray | None, rows: np.ndarray, columns: list[str] | None = None) -> TableData:
    columns = columns or FEATURES
    idx = [FEATURES.index(c) for c in columns]
    head = ["id", *columns, *(["y"] if y is not None else [])]
    body = [[f"r{i}", *(float(v) for v in X[i, idx]), *([float(y[i])] if y is not None else [])] for i in rows]
    return TableData(columns=head, rows=body)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BenchmarkClient, SampanBackend]]:
    backend = SampanBackend(tmp_path_factory.mktemp("bench"))
    server = LocalServer(make_benchmark_app(backend, token=TOKEN))
    client = BenchmarkClient(server.url, TOKEN)
    try:
        yield client, backend
    finally:
        client.close()
        server.stop()
        backend.close()


def _run_kit(job_id: str, party: str, data: TableData, tap: RecordingTap) -> tuple[threading.Thread, list]:
    errors: list[BaseException] = []
    stop = threading.Event()

    def go() -> None:
        try:
            get_kit("sampan").run(job_id, party, data, None, None, tap, stop)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, errors


def _horizontal(client: BenchmarkClient, n_parties: int, *, secure: bool, rounds: int = 8,
                dp: DPSpec | None = None, dropout: Dropout | None = None) -> tuple[str, RecordingTap, np.ndarray]:
    X, y = german()
    order = np.random.default_rng(3).permutation(len(y))
    holdout, train = order[:200], order[200:]
    project = client.create_project("h").project_id
    parts = np.array_split(train, n_parties)
    names = [f"bank{i}" for i in range(n_parties)]
    for i, name in enumerate(names):
        operated = "verifier" if i == 0 else "platform"
        client.register_party(project, PartyRegistration(
            name=name, role="data_owner", operated_by=operated,
            data=None if operated == "verifier" else table(X, y, parts[i])))
    spec = TaskSpec(kind="horizontal", label="y", id_column="id", features={n: FEATURES for n in names},
                    rounds=rounds, learning_rate=0.1, batch_size=32, secure_aggregation=secure, dp=dp, seed=11,
                    dropout=dropout, timeout_s=90)
    job = client.submit_job(project, spec)
    tap = RecordingTap()
    thread, errors = _run_kit(job.job_id, names[0], table(X, y, parts[0]), tap)
    final = client.wait_for(job.job_id, 90)
    thread.join(10)
    assert final.state == "succeeded", final.error
    assert not errors, errors
    return job.job_id, tap, holdout


def test_horizontal_secure_job_over_http(api: tuple[BenchmarkClient, SampanBackend]) -> None:
    client, _ = api
    info = client.info()
    assert info.platform == "sampan" and info.claims.secure_aggregation and not info.claims.mtls
    job_id, tap, holdout = _horizontal(client, 3, secure=True)
    results = client.results(job_id)
    assert [r.round for r in results.rounds] == list(range(1, 9))
    assert results.metrics["auc"] > 0.7  # on Sampan's own holdout (20% of each party's rows)
    assert all(r.auc is not None for r in results.rounds)
    assert results.audit_log and any(e.action == "secagg_round" for e in results.audit_log)
    X, y = german()
    evaluation = client.evaluate(job_id, table(X, y, holdout))
    assert evaluation.rows == 200 and evaluation.metrics.auc is not None and evaluation.metrics.auc > 0.7
    scores = client.predict(job_id, table(X, None, holdout[:5])).scores
    # the exported linear model gives the same scores as the platform's own predict
    model = client.model(job_id)
    assert model.features == FEATURES and model.standardisation is not None
    Z = (X[holdout[:5]] - np.array(model.standardisation.mean)) / np.array(model.standardisation.scale)
    mine = 1 / (1 + np.exp(-(Z @ np.array(model.coefficients) + model.intercept)))
    np.testing.assert_allclose(scores, mine, rtol=1e-9)

    # what the verifier's party sent under secure aggregation is masked: ring elements that look uniform
    updates = tap.updates()
    assert sorted(updates) == list(range(1, 9))
    masked = np.concatenate([u["masked"] for u in updates.values()])
    assert masked.dtype == np.uint64
    top = (masked >> np.uint64(56)).astype(int)  # top byte of a uniform 64-bit word is uniform on 0..255
    counts = np.bincount(top, minlength=256)
    chi2 = float(((counts - masked.size / 256) ** 2 / (masked.size / 256)).sum())
    assert chi2 < 400, chi2  # 255 degrees of freedom: mean 255, sd ~22.6; a clear update would be far above
    # ...and it is not the party's clear update in fixed point (frac_bits 32): that would be small numbers
    as_fixed = masked.view(np.int64).astype(float) / 2**32
    assert np.median(np.abs(as_fixed)) > 1e6
    assert tap.of("received", "fit")  # the party received the global model in the clear


def test_horizontal_plain_update_is_clear_and_dp_spends(api: tuple[BenchmarkClient, SampanBackend]) -> None:
    """Negative control of the masking check: without SecAgg the tap sees the float update itself."""
    client, _ = api
    job_id, tap, _ = _horizontal(client, 3, secure=False, rounds=3, dp=DPSpec(epsilon=5.0, delta=1e-5, clip=1.0))
    update = tap.updates()[1]["weights"]
    assert update.dtype == np.float64 and np.all(np.abs(update) < 100)
    spent = client.results(job_id).epsilon_spent
    assert spent is not None and set(spent) == {"bank0", "bank1", "bank2"}
    assert all(0 < e <= 5.0 + 1e-9 for e in spent.values())


def test_secure_job_with_distributed_dp(api: tuple[BenchmarkClient, SampanBackend]) -> None:
    client, _ = api
    assert client.info().claims.dp is not None
    job_id, _, _ = _horizontal(client, 3, secure=True, rounds=2, dp=DPSpec(epsilon=1.0, delta=1e-5, clip=1.0))
    spent = client.results(job_id).epsilon_spent
    assert spent is not None and all(0 < e <= 1.0 + 1e-9 for e in spent.values())


def test_secure_job_with_a_dropout(api: tuple[BenchmarkClient, SampanBackend]) -> None:
    client, _ = api
    job_id, _, _ = _horizontal(client, 4, secure=True, rounds=4, dropout=Dropout(party="bank3", after_round=2))
    rounds = client.results(job_id).rounds
    assert "bank3" in rounds[1].parties and "bank3" not in rounds[3].parties


def test_vertical_job(api: tuple[BenchmarkClient, SampanBackend]) -> None:
    client, _ = api
    X, y = german()
    project = client.create_project("v").project_id
    bank, shop = FEATURES[:12], FEATURES[12:]
    rows = np.arange(len(y))
    client.register_party(project, PartyRegistration(name="bank", role="label_holder", operated_by="platform",
                                                     data=table(X, y, rows, bank)))
    client.register_party(project, PartyRegistration(name="shop", role="feature_holder", operated_by="verifier"))
    spec = TaskSpec(kind="vertical", label="y", id_column="id", features={"bank": bank, "shop": shop}, rounds=10,
                    learning_rate=0.2, seed=5, timeout_s=90)
    job = client.submit_job(project, spec)
    tap = RecordingTap()
    thread, errors = _run_kit(job.job_id, "shop", table(X, None, rows[::-1], shop), tap)
    final = client.wait_for(job.job_id, 90)
    thread.join(10)
    assert final.state == "succeeded", final.error
    assert not errors
    results = client.results(job_id := job.job_id)
    assert results.metrics["auc"] > 0.7
    assert results.metrics["intersection_size"] == len(y)  # PSI found every customer (both hold all ids)
    assert len(results.rounds) >= 1
    model = client.model(job_id)
    assert model.features == [f"bank:{c}" for c in bank] + [f"shop:{c}" for c in shop]
    evaluation = client.evaluate(job_id, table(X, y, rows))
    assert evaluation.metrics.auc is not None and evaluation.metrics.auc > 0.7
    assert tap.rounds()  # the verifier's party took part (PSI and training messages went through its tap)


def test_refusals(api: tuple[BenchmarkClient, SampanBackend]) -> None:
    client, _ = api
    X, y = german()
    project = client.create_project("r").project_id
    for name in ("a", "b"):
        client.register_party(project, PartyRegistration(name=name, role="data_owner", operated_by="platform",
                                                         data=table(X, y, np.arange(100))))
    spec = TaskSpec(kind="horizontal", label="y", id_column="id", features={"a": FEATURES, "b": FEATURES}, rounds=2,
                    secure_aggregation=True)
    with pytest.raises(Exception, match="at least 3"):
        client.submit_job(project, spec)
    plain_dropout = spec.model_copy(update={"secure_aggregation": False, "dropout": Dropout(party="b", after_round=0)})
    with pytest.raises(Exception, match="only under secure aggregation"):
        client.submit_job(project, plain_dropout)
    bad = spec.model_copy(update={"secure_aggregation": False, "features": {"a": ["nope"], "b": ["nope"]}})
    job = client.submit_job(project, bad)
    final = client.wait_for(job.job_id, 60)
    assert final.state == "failed" and final.error is not None and "nope" in final.error.message
    with pytest.raises(Exception, match="conflict|failed"):
        client.results(job.job_id)
