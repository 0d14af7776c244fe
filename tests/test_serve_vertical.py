"""The vertical scoring session behind `sampan serve`: same scores as `sampan score`, over the in-process
transport, over HTTP and over the gRPC hub with the parties' own outbound streams; batching keeps each
request's rows. (The coordinator's view: tests/attacks/test_serve_session_coordinator_view.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from _grpc_loopback import Loopback  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from sampan.cli.vertical import score_applicants  # noqa: E402
from sampan.config import parse_config  # noqa: E402
from sampan.data import make_sme_consortium  # noqa: E402
from sampan.runtime.runner import start_run  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402
from sampan.serve.app import create_app  # noqa: E402
from sampan.serve.backends import ModelInfo, VerticalBackend  # noqa: E402
from sampan.serve.session import VerticalScoringSession  # noqa: E402
from sampan.transport.inprocess import InProcessTransport  # noqa: E402
from sampan.vertical.capability import simulate_vertical, vertical_party  # noqa: E402

SEED, N = 7, 2500
CONFIG = {"run": {"name": "serve-vertical", "seed": SEED, "workflow": "vertical"},
          "source": {"kind": "consortium", "n_smes": N},
          "vertical": {"label_holder": "bank", "models": ["lr", "gbdt"], "test_fraction": 0.2, "val_fraction": 0.2,
                       "lr": {"epochs": 1, "batch_size": 64, "learning_rate": 0.3},
                       "gbdt": {"n_trees": 3, "max_depth": 2}}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, str, list[str]]]:
    root = tmp_path_factory.mktemp("serve-vertical")
    store = Store.open(f"sqlite:///{root / 'runs.db'}")
    finished = start_run(parse_config({**CONFIG, "run": {**CONFIG["run"], "report_dir": str(root / "rep")}}), store)
    tables = make_sme_consortium(N, seed=SEED).vertical
    known = sorted(set(map(str, tables["bank"].ids)) & set(map(str, tables["payments"].ids))
                   & set(map(str, tables["delivery"].ids)))[:6]
    yield store, finished.run_id, known
    store.close()


def _parties(store: Store, run_id: str) -> dict[str, Any]:
    return {n: vertical_party(s) for n, s in simulate_vertical(store.get_run(run_id).config, 0, registry=store).items()}


def _session(parties: dict[str, Any], transport: Any, run_id: str, **kw: Any) -> VerticalScoringSession:
    return VerticalScoringSession(parties["bank"], transport, partners=["payments", "delivery"], model_run=run_id,
                                  **kw).open()


def test_served_scores_equal_sampan_score_in_process_and_over_http(trained: tuple[Store, str, list[str]]) -> None:
    store, run_id, known = trained
    expected = {r.applicant: r.probability_of_default for r in score_applicants(store, run_id, known)}
    parties = _parties(store, run_id)
    session = _session(parties, InProcessTransport({n: p.app for n, p in parties.items()}), run_id)
    try:
        direct = session.score(known)
        assert {r["applicant"]: r["probability_of_default"] for r in direct} == expected
        backend = VerticalBackend(session, ModelInfo("serve-vertical:lr", None, "sampan-vertical-parts", "lr",
                                                     "vertical", 0.1))
        client = TestClient(create_app(backend, mtls=True))
        reply = client.post("/v1/score", json={"applicants": [{"id": a} for a in known]})
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        assert [r["probability_of_default"] for r in results] == [expected[a] for a in known]
        assert all(r["reasons"] and r["decision"] in ("approve", "decline") for r in results)
        assert client.post("/v1/score", json={"applicants": [{"features": {}}]}).status_code == 422  # no id
        # concurrent requests are batched into shared exchanges; each still gets its own rows, in order (a
        # batch of another size may round the bank's matrix product differently in the last bit)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda k: session.score([known[k % 6], known[(k + 1) % 6]]), range(24)))
        for k, answer in enumerate(answers):
            assert [r["applicant"] for r in answer] == [known[k % 6], known[(k + 1) % 6]]
            assert [r["probability_of_default"] for r in answer] == pytest.approx(
                [expected[known[k % 6]], expected[known[(k + 1) % 6]]], rel=1e-12)
    finally:
        session.close()


def test_vertical_gbdt_served_equals_sampan_score(trained: tuple[Store, str, list[str]]) -> None:
    store, run_id, known = trained
    expected = [r.probability_of_default for r in score_applicants(store, run_id, known, "gbdt")]
    parties = _parties(store, run_id)
    session = _session(parties, InProcessTransport({n: p.app for n, p in parties.items()}), run_id, kind="gbdt")
    try:
        served = session.score(known)
    finally:
        session.close()
    assert [r["probability_of_default"] for r in served] == expected
    assert all(r["reasons"] for r in served)


def test_session_over_the_grpc_hub_with_outbound_party_streams(trained: tuple[Store, str, list[str]],
                                                               tmp_path: Path) -> None:
    store, run_id, known = trained
    expected = [r.probability_of_default for r in score_applicants(store, run_id, known)]
    parties = _parties(store, run_id)
    loopback = Loopback(tmp_path, {n: p.app.handle for n, p in parties.items()})
    try:
        session = _session(parties, loopback.transport(), run_id)
        try:
            # the hub's fixed-point sums may round in another order than the direct scorer: equal to float noise
            assert [r["probability_of_default"] for r in session.score(known)] == pytest.approx(expected, rel=1e-12)
            assert [r["probability_of_default"] for r in session.score(known[:1])] == pytest.approx(expected[:1],
                                                                                                     rel=1e-12)
        finally:
            session.close()
    finally:
        loopback.close()


def test_partners_not_answering_is_503_not_a_hang(trained: tuple[Store, str, list[str]]) -> None:
    store, run_id, known = trained
    parties = _parties(store, run_id)
    stalled = VerticalScoringSession(parties["bank"], InProcessTransport({n: p.app for n, p in parties.items()}),
                                     partners=["payments", "delivery"], model_run=run_id)  # never opened: no driver
    backend = VerticalBackend(stalled, ModelInfo("v", None, "sampan-vertical-parts", "lr", "vertical", None),
                              timeout_s=0.2)
    reply = TestClient(create_app(backend, mtls=True)).post("/v1/score", json={"applicants": [{"id": known[0]}]})
    assert reply.status_code == 503 and "not answering" in reply.json()["detail"]
