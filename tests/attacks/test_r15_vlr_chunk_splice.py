"""R15-VLR-3 (fixed): a masked-feature chunk of one secure-LR instance is refused in a later instance of the run.

Attack (curious/malicious coordinator as relay): the coordinator keeps the sealed `vlr.e_chunk` envelope the
partner sent the bank for rows [1000, 2000) in the first training of a run, and in a second training of the
same run (a resume, the scorecard's LR: every training is a fresh instance with fresh pads) hands the bank that
old envelope instead of the new one. Expected safe behaviour: the chunk is bound to its instance (as the PSI
parts are bound to their payload inside the seal), so the bank refuses it. What happens: an E chunk carries only
`E` and `lo`, sealed under the run's channel key with the run and the direction as associated data; the bank
checks only the order (`lo` = next row), so it stores rows of X - U_old under the new pad U_new. Nothing
names the stale chunk: training runs on those rows with ring-uniform garbage (E does not match the dealer's
corrections) until the epoch's validation score comes out at +-3e6 or so, and the run fails with "training
diverged; lower learning_rate or raise l2", blaming the configuration for the coordinator's splice (the
chunk's provenance is never checked). Fixed: every chunk carries, inside the seal, a binding to its instance
(`secure_lr_chunks`: E to the coordinator's once-per-run nonce, Ev to the final instance); the bank refuses
the stale chunk at once, naming the coordinator's splice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import numpy as np
import pytest

import sampan.vertical.secure_lr_party as party_module
import sampan.vertical.training as training_module
from sampan.core.relay import Relay
from sampan.core.transport import Transport
from sampan.data.table import PartyData
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig
from sampan.wire import Message

CHUNK = 1000


def test_a_chunk_from_an_earlier_instance_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(party_module, "E_CHUNK_ROWS", CHUNK)
    monkeypatch.setattr(training_module, "E_CHUNK_ROWS", CHUNK)
    n, n_val = 4000, 600
    rng = np.random.default_rng(0)
    Xb, Xp = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    y = (rng.random(n) < 1 / (1 + np.exp(-Xb[:, 0] - Xp[:, 0]))).astype(np.int8)
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    tables = {"bank": PartyData("bank", ids, Xb, y, ["b0", "b1"]),
              "partner": PartyData("partner", ids, Xp, None, ["p0", "p1"])}
    transport, parties = build_inprocess_vertical(tables)
    for p in parties.values():
        p.psi.aligned_rows = np.arange(n)
    kept: dict[str, np.ndarray] = {}
    spliced: list[int] = []

    def splicing(self: Relay, transport: Transport, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        los = {m.recipient: m.meta.get("lo") for m in messages if m.kind == "vlr.e_chunk"}
        replies = list(transport.exchange(messages))
        for reply in replies:
            if reply.kind == "vlr.e_chunk" and reply.sender == "partner" and los.get("partner") == CHUNK:
                if "old" not in kept:
                    kept["old"] = reply.arrays["to:bank"]       # first training: keep the sealed chunk
                else:
                    # second training: hand the bank the stale one
                    cast(dict[str, np.ndarray], reply.arrays)["to:bank"] = kept["old"]
                    spliced.append(CHUNK)
            self.collect(reply)
        self.step += 1
        return replies

    monkeypatch.setattr(training_module.Relay, "wave", splicing)
    session = VerticalSession(transport, label_holder="bank", partners=["partner"])
    session.connect()
    session.n_aligned = n
    splits = Splits(np.arange(n_val, n), np.arange(n_val), np.arange(0))
    config = VerticalLRConfig(epochs=1, batch_size=256, patience=1)
    session.train(splits, config, seed=1)                    # instance 1 (the kept chunk is from here)
    with pytest.raises(Exception, match=r"refusing the masked-feature chunk \(E\) from 'partner' at row 1000: it "
                                         r"belongs to another secure-LR instance; the coordinator relayed"):
        session.train(splits, config, seed=2)                # instance 2 of the same run, one chunk spliced
    assert spliced == [CHUNK]
