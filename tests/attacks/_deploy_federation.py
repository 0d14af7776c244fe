"""A deployed federation in one test process: CA, real coordinator and party agents (threads), gRPC + mTLS on
loopback. Shared by the deployment attack tests (tests/attacks/test_deploy_*.py); not a test module."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sampan.data import make_sme_consortium
from sampan.deploy.config import load_coordinator_config, load_party_config
from sampan.deploy.coordinator import Coordinator
from sampan.deploy.local import Binding, FederationFiles, write_federation
from sampan.deploy.party_agent import PartyAgent
from sampan.transport.grpc_client import FatalRejection
from sampan.transport.grpc_hub import Identity
from sampan.wire import Message

OPERATOR = Identity("ops", "operator")
VERTICAL = ("bank", "payments", "delivery")


def schema_dict(schema: Any) -> dict[str, Any]:
    return {
        "id": schema.id_column,
        **({"label": schema.label_column} if schema.label_column else {}),
        "features": [
            {"name": f.name, "kind": f.kind, **({"categories": list(f.categories)} if f.categories else {})}
            for f in schema.features
        ],
    }


class ThreadFederation:
    """`parties` maps each party to one dataset binding ("loans": horizontal, "vertical": the vertical view)."""

    def __init__(
        self,
        root: Path,
        *,
        vertical: bool = False,
        allow: Mapping[str, Mapping[str, Any]] | None = None,
        coordinator: Mapping[str, Any] | None = None,
        n: int = 1500,
        start: bool = True,
    ) -> None:
        consortium = make_sme_consortium(n, seed=4)
        view = "vertical" if vertical else "horizontal"
        self.paths = consortium.write_csv(root / "data", view)
        self.dataset = "vertical" if vertical else "loans"
        bindings = {
            name: {self.dataset: Binding(str(path), schema_dict(consortium.schema_for(name)))}
            for name, path in self.paths.items()
        }
        self.files: FederationFiles = write_federation(
            root / "fed",
            bindings,
            allow=allow,
            coordinator={"connect_timeout_s": 20, "crl_check_s": 0.2, **(coordinator or {})},
        )
        self.coordinator = Coordinator(load_coordinator_config(self.files.coordinator_config))
        self.stop = threading.Event()
        self.agents = {name: PartyAgent(load_party_config(p)) for name, p in self.files.party_configs.items()}
        self.received: dict[str, list[tuple[str, str]]] = {name: [] for name in self.agents}
        self.fatal: dict[str, str] = {}
        self.threads: list[threading.Thread] = []
        if start:
            self.start()

    def start(self) -> None:
        self.coordinator.start()
        self.threads.append(threading.Thread(target=self.coordinator.serve, args=(self.stop,), daemon=True))
        for name, agent in self.agents.items():
            self._record(name, agent)
            self.threads.append(threading.Thread(target=self._serve, args=(name, agent), daemon=True))
        for t in self.threads:
            t.start()
        assert self.coordinator.hub.wait_for(list(self.agents), 120) == []

    def _record(self, name: str, agent: PartyAgent) -> None:
        """Every request an agent receives: (run id, kind)."""
        handle = agent.handle

        def recording(message: Message) -> Message:
            self.received[name].append((message.run_id, message.kind))
            return handle(message)

        agent.handle = recording  # type: ignore[method-assign]

    def _serve(self, name: str, agent: PartyAgent) -> None:
        try:
            agent.serve(self.stop)
        except FatalRejection as exc:
            self.fatal[name] = str(exc)

    def submit(self, run: Mapping[str, Any], operator: Identity = OPERATOR) -> str:
        reply = self.coordinator.submit(
            operator, Message("", 0, operator.name, "coordinator", "deploy.submit", meta={"config": dict(run)})
        )
        return str(reply.meta["run_id"])

    def wait(self, run_id: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            meta = self.coordinator.status(
                OPERATOR, Message("", 0, "ops", "coordinator", "s", meta={"run_id": run_id})
            ).meta
            if meta["status"] in ("completed", "failed"):
                return dict(meta)
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish")

    def kinds(self, name: str, run_id: str) -> list[str]:
        return [kind for rid, kind in self.received[name] if rid == run_id]

    def close(self) -> None:
        self.stop.set()
        for agent in self.agents.values():
            if agent.link is not None:
                agent.link.close()
        for t in self.threads:
            t.join(5)
        self.coordinator.security.close()


def run_config(name: str, *, deploy: Mapping[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    return {"run": {"name": name, "rounds": 2, "seed": 3}, "deploy": {"dataset": "loans", **(deploy or {})}, **sections}


def wait_until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def names(values: Sequence[Any]) -> list[str]:
    return [str(v) for v in values]
