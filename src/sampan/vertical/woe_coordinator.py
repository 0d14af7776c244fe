"""Federated WOE/IV binning, the coordinator's side: setup, masked counts, the dealer's sums, the bank's binning,
the tables to partners.

Why apart from `sampan.vertical.woe` (the parties' handlers, which re-exports `federated_woe`): the coordinator
holds no party data; it relays sealed envelopes and, as the dealer, sums its masks over each partner's binned
records in a secret row order (`beta`, uint8) block by block (`sampan.vertical.histograms.dealer_sums`). What each
role learns: `sampan.vertical.woe_views` (REVEALS, VIEWS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.core.relay import Relay
from sampan.core.transport import Transport
from sampan.crypto.dealer import Dealer
from sampan.vertical.histograms import dealer_sums

__all__ = ["federated_woe"]


def federated_woe(transport: Transport, run_id: str, bank: str, partners: list[str], train_rows: np.ndarray, *,
                  fine_bins: int = 20, max_bins: int = 6, min_iv: float = 0.02, dp_epsilon: float | None = None,
                  dp_delta: float = 1e-5, before_release: Callable[[dict[str, dict[str, Any]]], None] | None = None,
                  monotone: bool = True) -> dict[str, Any]:
    """Coordinator: setup, masked counts, dealer sums, bank's binning, tables to partners.

    `before_release(slots)` runs once every party's bin counts are known and before any noised count is
    requested: where a workflow charges the release to the run's ledger, write-ahead."""
    relay = Relay(run_id)
    parties = [bank, *partners]
    dealer = Dealer(parties)
    rows = np.asarray(train_rows, dtype=np.int64)
    setup = relay.wave(transport, (relay.request(p, "woe.setup", {
        "train_rows": rows, "dealer_seed": np.frombuffer(dealer.seeds[p], dtype=np.uint8)},
        {"fine_bins": fine_bins, "bank": bank}) for p in parties))
    slots = {r.sender: dict(r.meta) for r in setup}
    beta = {r.sender: r.arrays["beta"] for r in setup if r.sender != bank}
    if before_release is not None:
        before_release(slots)
    dealer_seed = np.frombuffer(dealer.seeds[bank], dtype=np.uint8)
    relay.wave(transport, [relay.request(bank, "woe.mask", {"dealer_seed": dealer_seed}, {"partners": partners})])
    sums = relay.wave(transport, (relay.request(p, "woe.sum", meta={"bank": bank, "dp_epsilon": dp_epsilon,
                                                                    "dp_delta": dp_delta}) for p in partners))
    accounts = {r.sender: dict(r.meta["privacy"]) for r in sums if "privacy" in r.meta}
    dealer_arrays = {}
    everyone = np.arange(len(rows))
    for p in partners:
        nb = slots[p]["n_bins"]
        pad = dealer.stream(p).draw("woe/pad", 2 * int(sum(nb)))
        dealer_arrays[f"dealer:{p}"] = dealer_sums(beta[p], list(nb), dealer.seeds[bank], f"woe/{p}", everyone, 2, pad)
    finished = relay.wave(transport, [relay.request(bank, "woe.finish", dealer_arrays, {
        "partners": partners, "slots": {p: slots[p] for p in partners}, "max_bins": max_bins, "min_iv": min_iv,
        "monotone": monotone,
        "dp_epsilon": dp_epsilon, "dp_delta": dp_delta})])[0]
    relay.wave(transport, (relay.request(p, "woe.apply", meta={"bank": bank}) for p in partners))
    out = dict(finished.meta)
    if dp_epsilon:
        if set(accounts) != set(partners):
            raise ValueError(f"DP WOE: partners {sorted(set(partners) - set(accounts))} returned no noise account")
        out["privacy"] = {**accounts, **dict(out.get("privacy") or {})}
    return out
