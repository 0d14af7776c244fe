"""Findings 3, 5, 15 on the deployed path: party agents over gRPC + mTLS sign their SecAgg keys with their
organisation's TLS certificate key, check their peers' against the consortium CA, and keep their per-label
record of what they revealed under their state dir (0600), so it survives an agent restart."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deploy_federation import ThreadFederation, run_config, wait_until

from sampan.config import ConfigError
from sampan.crypto.identity import simulated_consortium
from sampan.deploy.config import load_party_config
from sampan.privacy.secagg import SecAggClient, SecAggRefused
from sampan.privacy.secagg.state import FileStateStore, closed_key
from sampan.wire import Message


def test_a_deployed_secure_run_signs_keys_and_persists_party_state(tmp_path: Path) -> None:
    """While the run is open each agent keeps its per-label and per-round records under its state dir (0600,
    folder 0700); when the coordinator closes the completed run they are deleted (the cached input vectors
    too), and a marker refuses any later secure aggregation request of that run. The cross-run input locks stay."""
    fed = ThreadFederation(tmp_path)
    try:
        run_id = fed.submit(run_config("secure", secure_aggregation={}))
        status = fed.wait(run_id)
        assert status["status"] == "completed", status
        for name, path in fed.files.party_configs.items():
            kinds = fed.kinds(name, run_id)
            assert "secagg_consistency" in kinds and "secagg_unmask" in kinds
            folder = Path(load_party_config(path).party.state_dir) / "secagg"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            store = FileStateStore(folder)
            wait_until(
                lambda store=store: store.load_round(closed_key(run_id)) is not None, 60
            )  # close follows completion
            files = sorted(folder.iterdir())
            assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
            records = [json.loads(f.read_bytes()) for f in files if f.name != "lock.key"]
            names = [r.get("label") or r["key"] for r in records]
            # every record of the run is gone, the marker stays; so do the cross-run input locks (an HMAC name and
            # the survivor set each input was unmasked for, never the input itself)
            assert [n for n in names if not n.startswith(("vector:", "model:"))] == [closed_key(run_id)]
            assert any(n.startswith("vector:") for n in names) and all(r.get("vector") is None for r in records)
            verifier, identities = simulated_consortium([name])  # the refusal comes before any key is made
            with pytest.raises(SecAggRefused, match="is closed"):
                SecAggClient(name, identity=identities[name], verifier=verifier, state=store).respond(
                    "secagg_keys", {}, {"label": f"{run_id}/round-1/x"}, run_id=run_id
                )
        with pytest.raises(ConfigError, match="robust aggregators"):
            fed.submit(run_config("robust", secure_aggregation={}, strategy={"aggregator": "median"}))
    finally:
        fed.close()


class SecAggKeySwap:
    """The deployed coordinator's relay, swapping one party's SecAgg c key (as relayed to its share holders)
    for a key of its own: with it, it could open the Shamir shares sealed for that party."""

    def __init__(self, inner: Any, victim: str) -> None:
        self.inner, self.victim, self.traffic = inner, victim, inner.traffic
        self.swapped = 0
        self._key = np.frombuffer(bytes(range(1, 33)), dtype=np.uint8)

    @property
    def parties(self) -> list[str]:
        return self.inner.parties

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        return self.inner.exchange(self._swap(m) for m in messages)

    def _swap(self, m: Message) -> Message:
        holders = [str(p) for p in m.meta.get("holders") or []]
        if m.kind != "secagg_share" or self.victim not in holders:
            return m
        arrays = dict(m.arrays)
        arrays["peer.c_pk"] = arrays["peer.c_pk"].copy()
        arrays["peer.c_pk"][holders.index(self.victim)] = self._key
        self.swapped += 1
        return Message(m.run_id, m.step, m.sender, m.recipient, m.kind, arrays, dict(m.meta))


def test_a_deployed_coordinator_swapping_a_secagg_key_fails_the_round_naming_the_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed = ThreadFederation(tmp_path, start=False)
    victim = sorted(fed.agents)[0]
    relays: list[SecAggKeySwap] = []
    genuine = fed.coordinator.hub.transport

    def tampering(*args: Any, **kwargs: Any) -> SecAggKeySwap:
        relays.append(SecAggKeySwap(genuine(*args, **kwargs), victim))
        return relays[-1]

    monkeypatch.setattr(fed.coordinator.hub, "transport", tampering)
    fed.start()
    try:
        run_id = fed.submit(run_config("mitm", secure_aggregation={}))
        status = fed.wait(run_id)
        assert status["status"] == "failed" and "secure aggregation failed" in status["error"], status
        assert sum(r.swapped for r in relays) > 0
        failed = [e.detail for e in fed.coordinator.store.events(run_id) if e.kind == "secagg_round_failed"]
        refusals = [why for attempt in failed for why in attempt["failed"].values()]
        assert refusals and all(
            f"peer '{victim}' is not authenticated" in why for why in refusals if "secagg_share" in why
        )
        assert any(f"peer '{victim}' is not authenticated (bad_signature)" in why for why in refusals)
        assert not [e for e in fed.coordinator.store.events(run_id) if e.kind == "secagg_round"]  # nothing summed
    finally:
        fed.close()
