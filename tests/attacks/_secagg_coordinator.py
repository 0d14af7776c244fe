"""A consortium of SecAgg parties (the public `SecAggClient`) and a coordinator that can replay, alter and
repeat requests (the public `SecAggServer` for the honest steps). Shared by tests/attacks/test_secagg_*.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sampan.crypto.identity import IdentityVerifier, PartyIdentity, simulated_consortium
from sampan.privacy.secagg import SecAggClient, SecAggParams, SecAggServer, encode_vector
from sampan.privacy.secagg.state import FileStateStore

RUN = "run-1"
Requests = dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]


class Consortium:
    """n parties with simulated certificates; each keeps its per-label state in its own folder.

    `restart(p)` makes a new client object with the same master secret and state folder: the strongest
    restart (a deployment that persisted its master could re-derive its keys), so only the persisted
    state stands between it and a second answer.
    """

    def __init__(self, n: int, root: Path, d: int = 6, seed: int = 0) -> None:
        self.names = [f"p{i}" for i in range(n)]
        self.verifier, self.identities = simulated_consortium(self.names)
        self.root = root
        self.masters = {p: os.urandom(32) for p in self.names}
        self.clients = {p: self._client(p) for p in self.names}
        rng = np.random.default_rng(seed)
        self.x = {p: rng.normal(scale=3.0, size=d) for p in self.names}
        self.d = d

    def _client(self, p: str) -> SecAggClient:
        return SecAggClient(p, self.masters[p], identity=self.identities[p], verifier=self.verifier,
                            state=FileStateStore(self.root / p))

    def restart(self, p: str) -> None:
        self.clients[p] = self._client(p)

    def call(self, kind: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
             vector: np.ndarray | None = None) -> dict[str, np.ndarray]:
        client = self.clients[party]
        if kind == "fit":
            x = self.x[party] if vector is None else vector
            return {"masked": client.respond_masked(arrays, meta, x, run_id=RUN)}
        return client.respond(kind, arrays, meta, run_id=RUN)

    def expected(self, parties: list[str], params: SecAggParams) -> np.ndarray:
        total = np.zeros(self.d, dtype=np.uint64)
        for p in parties:
            total += encode_vector(self.x[p], params)
        return total


def server(consortium: Consortium, label: str = f"{RUN}/round-1/attempt-0",
           params: SecAggParams | None = None) -> SecAggServer:
    return SecAggServer(params or SecAggParams(), consortium.names, consortium.d, label, np.random.default_rng(7))


def drive(
    srv: SecAggServer,
    consortium: Consortium,
    until: str = "result",
    alter: Callable[[str, str, dict[str, np.ndarray], dict[str, Any]], None] | None = None,
) -> dict[str, Requests]:
    """Run the honest steps up to (not including) `until`; returns every step's requests so they can be replayed.

    `alter(kind, party, arrays, meta)` may change a request in place before it is delivered (a malicious relay).
    """
    steps = (
        ("secagg_keys", srv.advertise_requests, srv.receive_keys),
        ("secagg_share", srv.share_requests, srv.receive_shares),
        ("fit", srv.masked_requests, lambda p, a: srv.receive_masked(p, a["masked"])),
        ("secagg_consistency", srv.consistency_requests, srv.receive_signature),
        ("secagg_unmask", srv.unmask_requests, srv.receive_unmask),
    )
    sent: dict[str, Requests] = {}
    for kind, make, receive in steps:
        if kind == until:
            break
        sent[kind] = make()
        for party, (arrays, meta) in sent[kind].items():
            arrays, meta = dict(arrays), dict(meta)
            if alter is not None:
                alter(kind, party, arrays, meta)
            receive(party, consortium.call(kind, party, arrays, meta))
    return sent


__all__ = ["Consortium", "RUN", "drive", "server", "IdentityVerifier", "PartyIdentity"]
