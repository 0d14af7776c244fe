"""Coordinator and party agents in one process (threads): the coordinator's store on PostgreSQL, clear errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _deployed_reference import agents_splits

from sampan.config import parse_config
from sampan.data import make_sme_consortium
from sampan.deploy.config import load_coordinator_config, load_party_config
from sampan.deploy.coordinator import Coordinator
from sampan.deploy.local import Binding, write_federation
from sampan.deploy.party_agent import PartyAgent
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.transport.grpc_hub import Identity
from sampan.wire import Message

OPERATOR = Identity("ops", "operator")


def _schema(schema) -> dict:  # type: ignore[no-untyped-def]
    return {
        "id": schema.id_column,
        "label": schema.label_column,
        "features": [
            {"name": f.name, "kind": f.kind, **({"categories": list(f.categories)} if f.categories else {})}
            for f in schema.features
        ],
    }


class InProcessFederation:
    def __init__(self, root: Path, store_url: str | None = None) -> None:
        consortium = make_sme_consortium(2000, seed=4)
        self.paths = consortium.write_csv(root / "data")
        self.schema = _schema(consortium.schema_for(next(iter(self.paths))))
        files = write_federation(
            root / "fed",
            {n: {"loans": Binding(str(p), self.schema)} for n, p in self.paths.items()},
            coordinator={"store": store_url} if store_url else None,
        )
        self.coordinator = Coordinator(load_coordinator_config(files.coordinator_config))
        self.coordinator.start()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.coordinator.serve, args=(self.stop,), daemon=True)]
        self.files = files
        self.agents = [PartyAgent(load_party_config(p)) for p in files.party_configs.values()]
        self.threads += [threading.Thread(target=a.serve, args=(self.stop,), daemon=True) for a in self.agents]
        for t in self.threads:
            t.start()
        assert self.coordinator.hub.wait_for(list(self.paths), 30) == []

    def submit(self, run: dict) -> str:
        reply = self.coordinator.submit(
            OPERATOR, Message("", 0, "ops", "coordinator", "deploy.submit", meta={"config": run})
        )
        return str(reply.meta["run_id"])

    def wait(self, run_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            meta = self.coordinator.status(
                OPERATOR, Message("", 0, "ops", "coordinator", "s", meta={"run_id": run_id})
            ).meta
            if meta["status"] in ("completed", "failed"):
                return dict(meta)
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish")

    def close(self) -> None:
        self.stop.set()
        for agent in self.agents:
            if agent.link is not None:
                agent.link.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[InProcessFederation]:
    fed = InProcessFederation(tmp_path)
    yield fed
    fed.close()


RUN = {"run": {"name": "agents", "rounds": 2, "seed": 9}, "deploy": {"dataset": "loans"}}


def _reference(fed: InProcessFederation, tmp_path: Path) -> np.ndarray:
    data = {
        "run": {**RUN["run"], "report_dir": str(tmp_path / "ref")},
        "schema": fed.schema,
        "parties": [{"name": n, "path": str(p)} for n, p in fed.paths.items()],
    }
    store = Store.open(f"sqlite:///{tmp_path / 'ref.db'}")
    try:
        with agents_splits(fed.files.party_configs, "loans"):  # each agent's own keyed holdout (review R8-1)
            return start_run(parse_config(data), store).outcome.params
    finally:
        store.close()


@pytest.mark.postgres
def test_the_coordinator_store_can_be_postgresql(tmp_path: Path, postgres_url: str) -> None:
    fed = InProcessFederation(tmp_path, store_url=postgres_url)
    try:
        run_id = fed.submit(RUN)
        assert fed.wait(run_id)["status"] == "completed"
        store = Store.open(postgres_url)
        deadline = time.monotonic() + 10  # the receipt is attached just after the status turns completed
        while not store.verify_events(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.engine.dialect.name == "postgresql" and store.verify_events(run_id)
        np.testing.assert_array_equal(store.get_model("agents").arrays["params"], _reference(fed, tmp_path))
        store.close()
    finally:
        fed.close()


def test_bad_runs_fail_with_the_reason_and_the_federation_keeps_working(
    federation: InProcessFederation, tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="not members"):
        federation.submit({**RUN, "deploy": {"parties": ["bank_nowhere"]}})
    run_id = federation.submit({**RUN, "deploy": {"dataset": "no_such_dataset"}})
    status = federation.wait(run_id)
    assert status["status"] == "failed" and "has no dataset 'no_such_dataset'" in status["error"]
    run_id = federation.submit(RUN)
    assert federation.wait(run_id)["status"] == "completed"
    store = federation.coordinator.store
    np.testing.assert_array_equal(store.get_model("agents").arrays["params"], _reference(federation, tmp_path))
    with pytest.raises(Exception, match="only deployed runs"):
        federation.coordinator.submit(
            OPERATOR, Message("", 0, "ops", "coordinator", "deploy.submit", meta={"resume": run_id})
        )
