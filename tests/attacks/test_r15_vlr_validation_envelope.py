"""R15-VLR-2 (fixed): the masked validation features Ev travel in chunks, as E does.

Validation of the issue-15 claim ("E streams to Q in sealed chunks of E_CHUNK_ROWS rows ... neither the
sender, the relay nor the receiver ever holds a whole-table envelope", `secure_lr_encode`, `secure_lr`): with
shared weights every owner also seals Ev = Xv - Uv, its validation rows under the validation pad, to its
co-holder. Expected: no sealed envelope of the protocol carries more than E_CHUNK_ROWS rows of a feature
matrix, so memory at the sender, relay and receiver is bounded by a chunk. What happens: `masked_features`
builds Ev for every validation position at once (`fixed_rows(positions) - pad_rows(positions)`) and seals it
in one message, so at 10M rows with 20% validation one envelope is 2M x 31 x 8 bytes (~0.5 GB) at each of
the sender, the relay and the receiver, plus the int64, pad and difference temporaries.
Fixed: `vlr.masked_features` seals only Ev's first chunk; the rest follow in `vlr.e_chunk` waves with part
'val' (`secure_lr_chunks`), and the co-holder places them into the one ring array it keeps.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def test_no_envelope_carries_more_than_a_chunk_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(party_module, "E_CHUNK_ROWS", CHUNK)
    monkeypatch.setattr(training_module, "E_CHUNK_ROWS", CHUNK)
    n, n_val, d = 12_000, 4_000, 3
    rng = np.random.default_rng(0)
    Xb, Xp = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-Xb[:, 0]))).astype(np.int8)
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    tables = {"bank": PartyData("bank", ids, Xb, y, ["b0", "b1", "b2"]),
              "partner": PartyData("partner", ids, Xp, None, ["p0", "p1", "p2"])}
    transport, parties = build_inprocess_vertical(tables)
    for p in parties.values():
        p.psi.aligned_rows = np.arange(n)
    biggest: dict[str, int] = {}
    val_waves: list[int] = []
    real_wave = training_module.Relay.wave

    def measuring(self: Relay, transport: Transport, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        val_waves.extend(m.meta["lo"] for m in messages[:1] if m.kind == "vlr.e_chunk" and m.meta.get("part") == "val")
        replies = real_wave(self, transport, messages)
        for reply in replies:
            for key, arr in reply.arrays.items():
                if key.startswith("to:"):
                    biggest[reply.kind] = max(biggest.get(reply.kind, 0), int(np.asarray(arr).nbytes))
        return replies

    monkeypatch.setattr(training_module.Relay, "wave", measuring)
    session = VerticalSession(transport, label_holder="bank", partners=["partner"])
    session.connect()
    session.n_aligned = n
    session.train(Splits(np.arange(n_val, n), np.arange(n_val), np.arange(0)),
                  VerticalLRConfig(epochs=1, batch_size=1024, patience=1), seed=1)
    chunk_bytes = biggest["vlr.e_chunk"]  # one chunk of E (CHUNK rows x the widest party's columns)
    over = {kind: size for kind, size in biggest.items() if size > 1.5 * chunk_bytes}
    assert not over, f"envelopes bigger than one E chunk ({chunk_bytes} bytes): {over}"
    assert val_waves == [1000, 2000, 3000]  # Ev's chunks after the first (sealed with vlr.masked_features)
    assert all(p.lr.part is not None for p in parties.values())
