"""A malicious secure-LR coordinator built from the project's own pieces (`training._deal`, `_batch`, `Relay`).

Shared by the secure-LR attack tests of review R10: it sets up instances with seeds and row sets of its choosing,
runs single batches, applies a pending update and asks for the weights whenever it likes.
"""
from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from sampan.core.relay import Relay
from sampan.crypto.dealer import Dealer
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical import training as T
from sampan.vertical.secure_lr import W_SHIFT, weight_triples
from sampan.vertical.session import VerticalSession

LR = 0.2


def session(n: int = 3000, seed: int = 11, run_id: str = "r10", built: Any = None) -> tuple[Any, Any, Any]:
    """A connected, aligned session (on `built` = (transport, parties) when given: the same party objects)."""
    tables = make_sme_consortium(n, seed=seed).vertical
    transport, parties = built or build_inprocess_vertical(tables)
    s = VerticalSession(transport, label_holder="bank", partners=[p for p in tables if p != "bank"], run_id=run_id)
    s.connect()
    s.align()
    return s, transport, parties


def setup(s: Any, transport: Any, train_rows: np.ndarray, val_rows: np.ndarray, *, lr: float = LR, l2: float = 1e-4,
          dealer_cls: type[Dealer] = Dealer, seeds: dict[str, bytes] | None = None) -> dict[str, Any]:
    roles = s.roles
    parties = list(roles.all)
    relay = Relay(s.run_id)
    dealer = dealer_cls(parties)
    if seeds is not None:
        dealer.seeds = dict(seeds)
    base = {"bank": roles.bank, "helper": roles.helper, "others": list(roles.others), "lr": lr, "l2": l2,
            "logit_clip": 8.0 / len(parties), "instance": secrets.token_hex(16), "shared_weights": True}
    replies = relay.wave(transport, (relay.request(p, "vlr.setup", {
        "train_rows": np.asarray(train_rows, dtype=np.int64), "val_rows": np.asarray(val_rows, dtype=np.int64),
        "dealer_seed": np.frombuffer(dealer.seeds[p], dtype=np.uint8)}, base) for p in parties))
    columns = T.bind_dealer(dealer, replies)
    for p in parties:
        for q in roles.holders_for(p):
            dealer.mask_matrix(p, q, len(train_rows), columns[p])
        dealer.mask_matrix(p, roles.co_holder(p), len(val_rows), columns[p], label="Uv")
    relay.wave(transport, (relay.request(p, "vlr.masked_features") for p in parties))
    return dict(relay=relay, dealer=dealer, roles=roles, columns=columns, pending={"t": None}, t=0)


def train_batch(transport: Any, inst: dict[str, Any], rows: np.ndarray, validation: bool = False) -> float:
    t = inst["t"]
    material = None if validation else T._deal(inst["dealer"], inst["roles"], rows, t, True)
    out = T._batch(transport, inst["relay"], inst["dealer"], inst["roles"], rows, t, validation=validation,
                   material=material, shared=True, pending=inst["pending"], columns=inst["columns"])
    inst["t"] += 1
    return out


def apply_pending(transport: Any, inst: dict[str, Any]) -> None:
    """wupdate + wshare for the pending training batch (what the next batch would start with)."""
    relay, dealer, roles, columns = inst["relay"], inst["dealer"], inst["roles"], inst["columns"]
    tp, meta = inst["pending"]["t"], {"t": inst["t"], "validation": False}

    def req(p: str) -> Any:
        arrays = {f"W:{o}": np.stack(dealer.truncation_pair(f"W/{o}/{tp}", weight_triples(columns[o]), W_SHIFT,
                                                            seeded=o))
                  for o in roles.all if o != p and roles.co_holder(o) == p}
        return relay.request(p, "vlr.wupdate", arrays, meta)

    relay.wave(transport, (req(p) for p in roles.all))
    relay.wave(transport, (relay.request(p, "vlr.wshare", meta=meta) for p in roles.all))
    inst["pending"]["t"] = None
    inst["t"] += 1


def open_and_finish(transport: Any, inst: dict[str, Any]) -> None:
    relay, roles = inst["relay"], inst["roles"]
    relay.wave(transport, (relay.request(p, "vlr.wopen") for p in roles.all))
    relay.wave(transport, (relay.request(p, "vlr.finish") for p in roles.all))
