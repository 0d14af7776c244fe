"""R15-VLR-4 (fixed): a malformed `vlr.e_chunk` request is refused naming the field `lo`.

Attack (a faulty or probing coordinator): after a secure-LR setup it asks a party for masked-feature chunks with
`lo` = "x", None, or 1000.7. Expected: each is refused with a clear error naming the field (`lo`) and the party,
as `lo` = -1000 is ("refusing a masked-feature chunk at row -1000"). What happens: `int(msg.meta["lo"])` runs
before any check, so the party answers "invalid literal for int() with base 10: 'x'" or "int() argument must be
... not 'NoneType'" (no field named), and 1000.7 is truncated to 1000 and answered with the chunk.
Fixed: `secure_lr_chunks.chunk_row` takes only an int (not a bool) and names the field otherwise.
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest

import sampan.vertical.secure_lr_party as party_module
import sampan.vertical.training as training_module
from sampan.core.relay import Relay
from sampan.core.transport import PartyError
from sampan.crypto.dealer import Dealer
from sampan.data.table import PartyData
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.session import VerticalSession


def test_malformed_chunk_rows_are_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(party_module, "E_CHUNK_ROWS", 1000)
    monkeypatch.setattr(training_module, "E_CHUNK_ROWS", 1000)
    n = 4000
    rng = np.random.default_rng(0)
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    tables = {"bank": PartyData("bank", ids, rng.standard_normal((n, 2)), (rng.random(n) < 0.4).astype(np.int8),
                                ["b0", "b1"]),
              "partner": PartyData("partner", ids, rng.standard_normal((n, 2)), None, ["p0", "p1"])}
    transport, parties = build_inprocess_vertical(tables)
    for p in parties.values():
        p.psi.aligned_rows = np.arange(n)
    session = VerticalSession(transport, label_holder="bank", partners=["partner"])
    session.connect()
    roles, relay = session.roles, Relay(session.run_id)
    dealer = Dealer(list(roles.all))
    base = {"bank": roles.bank, "helper": roles.helper, "others": list(roles.others), "lr": 0.2, "l2": 1e-4,
            "logit_clip": 4.0, "instance": secrets.token_hex(16), "shared_weights": True}
    relay.wave(transport, (relay.request(p, "vlr.setup", {
        "train_rows": np.arange(600, n), "val_rows": np.arange(600),
        "dealer_seed": np.frombuffer(dealer.seeds[p], dtype=np.uint8)}, base) for p in roles.all))
    for lo in ("x", None, 1000.7, True):
        with pytest.raises(PartyError, match=r"party 'partner'.*field 'lo' must be a whole row number"):
            relay.wave(transport, [relay.request("partner", "vlr.e_chunk", meta={"lo": lo})])
    with pytest.raises(PartyError, match="masked-feature chunk at row -1000"):
        relay.wave(transport, [relay.request("partner", "vlr.e_chunk", meta={"lo": -1000})])
    with pytest.raises(PartyError, match="masked validation chunk before the validation order"):
        relay.wave(transport, [relay.request("partner", "vlr.e_chunk", meta={"lo": 1000, "part": "val"})])
