"""Finding 4: a curious feature holder tries to recover the bank's residual and labels in secure vertical LR.

On commit 1064fb2 every feature holder p could compute U_p^T r on top of its gradient X_p^T r (it drew
the pad U_p, received f = r_Q - a and the dealer's U_p^T a, and the helper's share of r in clear), and
the epoch's tail batch could be shorter than p's column count: from such a batch the partner solved
X_p^T r = g for r and read every label (checked by running this attack on 1064fb2; see the report).

Now the gradient is a Beaver matrix product with re-shared output: p receives f_Q and
q_Q = E^T a + C_Q with C_Q = U^T a - C_p, so it never holds U^T a; the tail is merged so every batch has
at least max(4 d_max, 64) rows; and the residual holders refuse a schedule that breaks that rule, even
when the coordinator sends it — in process and through a deployed coordinator with agents over gRPC.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.crypto.ring import decode
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport import PartyError
from sampan.vertical import training
from sampan.vertical.party import VerticalParty
from sampan.vertical.secure_lr import RESIDUAL_BITS, min_batch_rows
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig


class CuriousView:
    """Everything a party's secure-LR handler receives for each training batch, kept as a curious party would."""

    def __init__(self, party: VerticalParty) -> None:
        self.party = party
        self.batches: list[dict[str, Any]] = []
        lr = party.lr
        original = lr._apply_gradient

        def spy(*args: Any) -> None:
            st = lr.state
            if st is None or st.pending is None:
                return original(*args)
            seen = {"rows": st.pending[0].copy(), "t": st.pending[1], "before": st.weights.copy(),
                    "inbox": dict(st.inbox), "args": args, "state": st,
                    "r_share": None if st.r_share is None else st.r_share.copy()}
            original(*args)
            seen["after"] = st.weights.copy()
            self.batches.append(seen)

        lr._apply_gradient = spy  # type: ignore[method-assign]

    def gradient_times_n(self, batch: dict[str, Any]) -> np.ndarray:
        """X_p^T r over the batch, read back from the weight step the party itself took."""
        st = batch["state"]
        grad = (batch["before"] - batch["after"]) / st.lr - st.l2 * st.l2_mask * batch["before"]
        return grad * len(batch["rows"])


def _attack(X: np.ndarray, g: np.ndarray, r_true: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The linear-algebra attack: solve X^T r = g for the residual, read y = 1 where r < 0.

    Returns (largest error on r, fraction of labels right); exact when the batch has no more rows than
    X has independent columns.
    """
    r_hat, *_ = np.linalg.lstsq(X.T, g, rcond=None)
    return float(np.abs(r_hat - r_true).max()), float(np.mean((r_hat < 0) == (y == 1)))


def _session(tables: dict) -> tuple[VerticalSession, dict[str, VerticalParty]]:  # type: ignore[type-arg]
    transport, parties = build_inprocess_vertical(tables)
    session = VerticalSession(transport, label_holder="bank", partners=[p for p in tables if p != "bank"], run_id="atk")
    session.connect()
    session.align()
    return session, parties


class ResidualTap:
    """The test's god view: the bank's and the helper's residual shares per training batch (never sent anywhere).

    A holder's share of batch t is still in its state when that batch's gradient is applied.
    """

    def __init__(self, views: dict[str, CuriousView]) -> None:
        self.views = views

    def share(self, holder: str, t: int) -> np.ndarray:
        return next(b["r_share"] for b in self.views[holder].batches if b["t"] == t)

    def residual(self, t: int) -> np.ndarray:
        return decode(sum((self.share(h, t) for h in self.views), start=np.zeros(1, dtype=np.uint64)), RESIDUAL_BITS)


def _schedule_with_a_short_tail(n_train: int, d: int) -> int:
    """A batch size whose honest epoch (before the fix) ended with a tail of 2..d rows."""
    return next(bs for bs in range(64, n_train) if 2 <= n_train % bs <= d)


def test_the_tail_batch_no_longer_gives_a_partner_the_residual_and_labels() -> None:
    tables = make_sme_consortium(3000, seed=11).vertical
    session, parties = _session(tables)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    victim_y = parties["bank"].data.y[parties["bank"].psi.aligned_rows][splits.train]
    spy = CuriousView(parties["delivery"])  # 5 columns; its gradient pieces come from both holders
    tap = ResidualTap({h: CuriousView(parties[h]) for h in ("bank", "payments")})
    d = tables["delivery"].X.shape[1]
    batch_size = _schedule_with_a_short_tail(len(splits.train), d)
    session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=batch_size, patience=1), seed=2)

    smallest = min(spy.batches, key=lambda b: len(b["rows"]))
    assert len(smallest["rows"]) >= min_batch_rows(16) > d  # the tail was merged (1064fb2: a batch of <= d rows)
    st = smallest["state"]
    X = st.X[smallest["rows"]]
    r_true = tap.residual(smallest["t"])
    g = spy.gradient_times_n(smallest)
    np.testing.assert_allclose(X.T @ r_true, g, atol=1e-2)  # the spy reads its gradient right...
    err, right = _attack(X, g, r_true, victim_y[smallest["rows"]])
    assert err > 1e-2 and right < 1.0  # ...but d projections of >= 64 residuals do not give them back
    # The same attack on a batch of fewer than d rows (like the tail 1064fb2 sent) is exact: the batch rule is
    # what stops it.
    few = slice(0, d - 2)
    err, right = _attack(X[few], X[few].T @ r_true[few], r_true[few], victim_y[smallest["rows"]][few])
    assert err < 1e-6 and right == 1.0


def _u64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.uint64)


def test_a_partner_cannot_project_the_residual_on_its_own_pad() -> None:
    """The 1064fb2 leak beside the gradient: U_p^T r_Q = U_p^T f + (the dealer's U_p^T a). No combination of
    what a partner now receives with its pad gives U_p^T r_Q, while its legitimate gradient piece is exact."""
    session, parties = _session(make_sme_consortium(3000, seed=11).vertical)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    spies = {p: CuriousView(parties[p]) for p in ("bank", "payments", "delivery")}
    tap = ResidualTap({h: spies[h] for h in ("bank", "payments")})
    session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=3)
    for name, spy in spies.items():
        assert spy.batches
        for batch in spy.batches[:3]:
            st, rows, t = batch["state"], batch["rows"], batch["t"]
            X = st.X_fixed[rows]
            d = X.shape[1]
            for holder in st.roles.holders_for(name):
                r_q = tap.share(holder, t)
                U = st.pad(holder)[rows]
                target = U.T @ r_q
                own_c = st.dealer.draw(f"C/{holder}/{t}", d)
                n_vectors = [v for (s, _), v in batch["inbox"].items() if v.shape == (len(rows),)]
                d_vectors = [v for v in [*batch["inbox"].values(), *batch["args"]] if v is not None and v.shape == (d,)]
                d_vectors += [own_c, np.zeros(d, dtype=np.uint64)]
                f, q = batch["inbox"][(holder, "f")], batch["inbox"][(holder, "q")]
                assert np.array_equal(X.T @ f + q + own_c, X.T @ r_q)  # its gradient piece X_p^T r_Q
                for w in n_vectors:
                    for v in d_vectors:
                        for sign in (np.uint64(1), np.uint64(2 ** 64 - 1)):
                            assert not np.array_equal(U.T @ w + sign * _u64(v), target), (name, holder)


def _unmerged(order: np.ndarray, batch_size: int, min_rows: int) -> list[np.ndarray]:
    """A malicious coordinator's schedule: the short tail is sent as its own batch."""
    return [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]


def _repeating(order: np.ndarray, batch_size: int, min_rows: int) -> list[np.ndarray]:
    """A malicious coordinator's schedule: a 'full' batch made of a few rows repeated."""
    return [np.tile(order[:4], batch_size // 4)] + [order[lo:lo + batch_size]
                                                    for lo in range(4, len(order), batch_size)]


def _overlapping(order: np.ndarray, batch_size: int, min_rows: int) -> list[np.ndarray]:
    """A malicious coordinator's schedule: batches that share rows, to stack projections of one residual."""
    return [order[:batch_size], order[batch_size - 8 : 2 * batch_size - 8]]


@pytest.mark.parametrize("schedule", [_unmerged, _repeating, _overlapping], ids=["short-tail", "repeated", "overlap"])
def test_the_holders_refuse_a_schedule_that_would_expose_the_residual(
    monkeypatch: pytest.MonkeyPatch, schedule: Callable[..., Any]
) -> None:
    session, parties = _session(make_sme_consortium(3000, seed=11).vertical)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    batch_size = _schedule_with_a_short_tail(len(splits.train), 5)
    monkeypatch.setattr(training, "epoch_batches", schedule)
    with pytest.raises(PartyError, match=r"party '(bank|payments)': (refusing a training batch|this batch leaves)"):
        session.train(
            splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=batch_size, patience=1), seed=2
        )


def test_small_batch_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 64"):
        VerticalLRConfig(batch_size=32)
    rng = np.random.default_rng(0)
    tables = make_sme_consortium(3000, seed=11).vertical
    wide = tables["payments"]
    wide.X = np.hstack([wide.X, rng.normal(size=(len(wide.X), 14))])  # 20 columns: at least 80 rows a batch
    wide.feature_names = [*wide.feature_names, *(f"extra{i}" for i in range(14))]
    session, _ = _session(tables)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(ValueError, match=r"batch_size 64 is below the minimum of 80 rows"):
        session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=64), seed=1)


# --- the deployed path: a coordinator and party agents over gRPC with mutual TLS --------------------------
@pytest.mark.slow
def test_deployed_agents_refuse_a_short_tail_and_train_on_an_honest_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _deploy_federation import ThreadFederation

    parties = ["bank", "payments", "delivery"]
    allow = {p: {"partners": [q for q in parties if q != p]} for p in parties}
    fed = ThreadFederation(tmp_path, vertical=True, n=2500, allow=allow)
    try:
        run = {
            "run": {"name": "vlr", "seed": 3},
            "deploy": {
                "workflow": "vertical",
                "dataset": "vertical",
                "parties": ["bank", "payments", "delivery"],
                "label_holder": "bank",
            },
            "vertical": {"epochs": 1, "batch_size": 64},
        }
        honest = fed.wait(fed.submit(run), timeout=120)
        assert honest["status"] == "completed", honest
        monkeypatch.setattr(training, "epoch_batches", _unmerged)  # the coordinator turns malicious
        refused = {}
        for batch_size in (67, 71, 73, 79, 83):  # one of them leaves a short tail of this run's rows
            refused = fed.wait(fed.submit({**run, "vertical": {"epochs": 1, "batch_size": batch_size}}), timeout=120)
            if refused["status"] == "failed":
                break
        assert refused["status"] == "failed"
        error = str(fed.coordinator.store.get_run(refused["run_id"]).error)
        assert "refusing a training batch" in error or "this batch leaves" in error, error
    finally:
        fed.close()
