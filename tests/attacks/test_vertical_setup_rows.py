"""Review R9 (A1, A2): the training rows a coordinator sends to WOE and vertical GBDT setups.

A1: the secret row order sigma of the partner's binned records (beta, given to the coordinator as
dealer) came from (channel key, a fixed label, len(train_rows)), the same for every setup of a run, so
an uncharged second `woe.setup` / `vgb.setup` with two training rows swapped showed which beta rows
moved: every binned partner record linked to its customer. Now each setup's order comes from a fresh
nonce the partner seals to the bank, and a party gives the dealer binned records for one training row
set per run (a second setup must name exactly the same rows).
A2: training rows repeating one customer 300 times multiplied its weight in the decoded counts (the
noise is calibrated to one occurrence); every party now refuses repeated rows, as secure LR does.
Both fail on commit 1064fb2 (checked: the same tests were xfail(strict) reproductions before the fix).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sampan.core.relay import Relay
from sampan.crypto.dealer import Dealer
from sampan.data import make_sme_consortium
from sampan.models.gbdt import apply_bins, quantile_bin_edges
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.session import Splits, VerticalSession


def _session(run_id: str) -> tuple[VerticalSession, Any, dict[str, Any]]:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id=run_id)
    s.connect()
    s.align()
    return s, transport, parties


def _setup(s: VerticalSession, transport: Any, kind: str, rows: np.ndarray) -> np.ndarray:
    relay, dealer = Relay(s.run_id), Dealer(["bank", "payments"])
    arrays = {"train_rows": rows, "dealer_seed": np.frombuffer(dealer.seeds["payments"], dtype=np.uint8)}
    meta: dict[str, Any] = {"bank": "bank"}
    if kind == "woe.setup":
        meta["fine_bins"] = 16
    else:
        arrays["val_rows"] = np.zeros(0, dtype=np.int64)
        meta["n_bins"] = 8
    return relay.wave(transport, [relay.request("payments", kind, arrays, meta)])[0].arrays["beta"]


@pytest.mark.parametrize("kind", ["woe.setup", "vgb.setup"])
def test_rerunning_setup_with_permuted_rows_does_not_link_beta_to_customers(kind: str) -> None:
    s, transport, parties = _session(f"r9-a1-{kind}")
    T = Splits.random(s.n_aligned or 0, seed=1).train.astype(np.int64)
    b0 = _setup(s, transport, kind, T)
    linked = 0
    for k in range(5):
        cands = []
        for other in (k + 5, k + 10):
            T2 = T.copy()
            T2[[k, other]] = T2[[other, k]]
            try:
                b2 = _setup(s, transport, kind, T2)
            except Exception as exc:
                assert "other training rows than an earlier setup" in str(exc)
                return  # refused: a party gives the dealer binned records of one training row set per run
            cands.append(set(np.nonzero((b0 != b2).any(axis=1))[0].tolist()))
        pos = cands[0] & cands[1]
        if len(pos) == 1:
            X = parties["payments"]._aligned_raw_X()[T]
            edges = [quantile_bin_edges(X[:, j], 16 if kind == "woe.setup" else 8) for j in range(X.shape[1])]
            linked += int(np.array_equal(b0[pos.pop()], apply_bins(X, edges)[k]))
    assert linked == 0, f"the coordinator linked {linked}/5 customers to their binned partner records"


@pytest.mark.parametrize("kind", ["woe.setup", "vgb.setup"])
def test_a_second_setup_on_the_same_rows_gets_a_fresh_secret_order(kind: str) -> None:
    s, transport, _ = _session(f"r9-a1b-{kind}")
    T = Splits.random(s.n_aligned or 0, seed=1).train.astype(np.int64)
    b0, b1 = _setup(s, transport, kind, T), _setup(s, transport, kind, T)
    # same multiset of binned records (nothing new), in an unrelated order
    assert sorted(map(tuple, b0.tolist())) == sorted(map(tuple, b1.tolist()))
    assert (b0 != b1).any(axis=1).mean() > 0.5


@pytest.mark.parametrize("kind", ["woe.setup", "vgb.setup"])
def test_setup_refuses_repeated_training_rows(kind: str) -> None:
    s, transport, _ = _session(f"r9-a2-{kind}")
    T = Splits.random(s.n_aligned or 0, seed=1).train.astype(np.int64)
    repeated = np.concatenate([T[: len(T) - 300], np.full(300, T[0])])
    with pytest.raises(Exception, match="repeat"):
        _setup(s, transport, kind, repeated)
