"""Coordinator side of secure vertical logistic regression: batches, waves, relay, dealer, early stop.

The coordinator knows only public things: how many aligned rows there are, the batch schedule, each
party's number of features, and the validation surrogate Brier score it decides early stopping on.
Everything else passes through it as sealed envelopes it cannot open (see `secure_lr`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from sampan.transport import Transport
from sampan.vertical.dealer import Dealer
from sampan.vertical.ring import decode
from sampan.vertical.secure_lr import POLY, RESIDUAL_BITS, TRUNC_SHIFT, Roles
from sampan.wire import Message

__all__ = ["VerticalLRConfig", "VerticalLRResult", "train_secure_lr", "Relay"]


@dataclass(frozen=True)
class VerticalLRConfig:
    """Hyperparameters of secure vertical LR (public: every party sees them)."""

    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 0.2
    l2: float = 1e-4
    patience: int = 5
    min_delta: float = 1e-5
    logit_clip: float | None = None   # per-party partial-logit bound; default 32 / number of parties

    def clip_for(self, n_parties: int) -> float:
        return self.logit_clip if self.logit_clip is not None else POLY.max_abs_logit / n_parties

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"vertical LR: {name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"vertical LR: learning_rate must be > 0, got {self.learning_rate}")
        if self.l2 < 0:
            raise ValueError(f"vertical LR: l2 must be >= 0, got {self.l2}")


@dataclass
class VerticalLRResult:
    epochs_run: int
    best_epoch: int
    val_brier: list[float]
    epoch_seconds: list[float]
    stopped_early: bool
    features: dict[str, int]
    waves_per_batch: int
    history: list[dict[str, float]] = field(default_factory=list)
    dealer_seconds: list[float] = field(default_factory=list)  # offline dealing per epoch (not in epoch_seconds)


class Relay:
    """Holds sealed envelopes between waves and hands each party its mail with its next request."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._mail: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        self.step = 0

    def collect(self, reply: Message) -> None:
        for key, value in reply.arrays.items():
            if key.startswith("to:"):
                box = self._mail[key[3:]]
                box[f"from:{reply.sender}:{len(box)}"] = value

    def request(self, party: str, kind: str, arrays: dict[str, np.ndarray] | None = None,
                meta: dict | None = None) -> Message:
        mail = self._mail.pop(party, {})
        return Message(self.run_id, self.step, "coordinator", party, kind, {**mail, **(arrays or {})}, meta or {})

    def wave(self, transport: Transport, messages: Iterable[Message]) -> list[Message]:
        replies = list(transport.exchange(messages))
        for reply in replies:
            self.collect(reply)
        self.step += 1
        return replies


def train_secure_lr(
    transport: Transport, run_id: str, roles: Roles, train_rows: np.ndarray, val_rows: np.ndarray,
    config: VerticalLRConfig = VerticalLRConfig(), *, seed: int = 0,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> VerticalLRResult:
    """Train; afterwards every party holds its own `LocalLinearPart` (and the coordinator holds nothing)."""
    parties = list(roles.all)
    relay = Relay(run_id)
    dealer = Dealer(parties)
    clip = config.clip_for(len(parties))
    base = {"bank": roles.bank, "helper": roles.helper, "others": list(roles.others),
            "lr": config.learning_rate, "l2": config.l2, "logit_clip": clip}
    setup = relay.wave(transport, (relay.request(p, "vlr.setup", {
        "train_rows": np.asarray(train_rows, dtype=np.int64), "val_rows": np.asarray(val_rows, dtype=np.int64),
        "dealer_seed": np.frombuffer(dealer.seeds[p], dtype=np.uint8)}, base) for p in parties))
    features = {r.sender: int(r.meta["n_features"]) for r in setup}
    n_train = len(train_rows)
    for r in setup:
        dealer.mask_matrix(r.sender, n_train, int(r.meta["n_columns"]))
    relay.wave(transport, (relay.request(p, "vlr.masked_features") for p in parties))

    rng = np.random.default_rng(seed)
    t = 0
    pending: tuple[np.ndarray, int] | None = None
    best, best_epoch, bad, history = np.inf, 0, 0, []
    briers, seconds = [], []
    stopped = False
    dealing: list[float] = []
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(n_train)
        batches = [(order[lo:lo + config.batch_size], t + k) for k, lo in enumerate(range(0, n_train, config.batch_size))]
        # Offline phase: the dealer's material for the whole epoch depends on no data, only on the schedule.
        start = time.perf_counter()
        material = {bt: _deal(dealer, roles, rows, bt) for rows, bt in batches}
        dealing.append(time.perf_counter() - start)
        start = time.perf_counter()
        for rows, bt in batches:
            _batch(transport, relay, dealer, roles, rows, bt, pending, validation=False, material=material)
            pending = (rows, bt)
        t += len(batches)
        relay.wave(transport, (relay.request(p, "vlr.flush", {"correction": material[pending[1]]["correction"][p]}
                                             if pending else {}) for p in parties))
        pending = None
        seconds.append(time.perf_counter() - start)
        sum_sq = 0.0
        for lo in range(0, len(val_rows), config.batch_size):
            rows = np.arange(lo, min(lo + config.batch_size, len(val_rows)))
            sum_sq += _batch(transport, relay, dealer, roles, rows, t, None, validation=True)
            t += 1
        brier = sum_sq / max(len(val_rows), 1)
        briers.append(brier)
        record = {"epoch": epoch, "val_brier": brier, "seconds": seconds[-1], "dealer_seconds": dealing[-1]}
        history.append(record)
        if progress:
            progress(record)
        if brier < best - config.min_delta:
            best, best_epoch, bad = brier, epoch, 0
            relay.wave(transport, (relay.request(p, "vlr.checkpoint") for p in parties))
        else:
            bad += 1
            if bad >= config.patience:
                stopped = True
                break
    relay.wave(transport, (relay.request(p, "vlr.checkpoint", meta={"restore": True}) for p in parties))
    relay.wave(transport, (relay.request(p, "vlr.finish") for p in parties))
    return VerticalLRResult(
        epochs_run=len(briers), best_epoch=best_epoch, val_brier=briers, epoch_seconds=seconds,
        stopped_early=stopped, features=features, waves_per_batch=4 if roles.others else 3, history=history,
        dealer_seconds=dealing)


def _corrections(dealer: Dealer, roles: Roles, party: str,
                 pending: tuple[np.ndarray, int] | None) -> dict[str, np.ndarray]:
    """The dealer's U_p^T a term that completes party p's gradient for the batch in flight."""
    if pending is None:
        return {}
    rows, t = pending
    helper = roles.gradient_helper(party)
    return {"correction": dealer.cross_correction(party, helper, f"a/{party}/{t}", rows)}


def _deal(dealer: Dealer, roles: Roles, rows: np.ndarray, t: int) -> dict[str, object]:
    """Everything the dealer contributes to batch t: the helper's halves of the powers of a and of the
    truncation pair, and each party's gradient correction U_p^T a."""
    n = len(rows)
    return {"A": np.stack(dealer.powers(f"A/{t}", n, POLY.degree, seeded=roles.bank)),
            "T": np.stack(dealer.truncation_pair(f"T/{t}", n, TRUNC_SHIFT, seeded=roles.bank)),
            "correction": {p: dealer.cross_correction(p, roles.gradient_helper(p), f"a/{p}/{t}", rows)
                           for p in roles.all}}


def _batch(transport: Transport, relay: Relay, dealer: Dealer, roles: Roles, rows: np.ndarray, t: int,
           pending: tuple[np.ndarray, int] | None, *, validation: bool,
           material: dict[int, dict[str, object]] | None = None) -> float:
    """Waves 1-4 of one batch (plus the square wave for validation). Returns the opened sum of r^2."""
    n = len(rows)
    holders = [roles.bank, roles.helper]
    meta = {"t": t, "validation": validation}
    mine = material[t] if material is not None and t in material else _deal(dealer, roles, rows, t)

    def forward_request(p: str) -> Message:
        arrays: dict[str, np.ndarray] = {"rows": rows}
        if pending is not None:
            earlier = material[pending[1]] if material is not None and pending[1] in material else None
            arrays["correction"] = (earlier["correction"][p] if earlier is not None  # type: ignore[index]
                                    else _corrections(dealer, roles, p, pending)["correction"])
        if p == roles.helper:
            arrays["A"], arrays["T"] = mine["A"], mine["T"]  # type: ignore[assignment]
        return relay.request(p, "vlr.forward", arrays, meta)

    relay.wave(transport, (forward_request(p) for p in roles.all))
    if roles.others:
        relay.wave(transport, [relay.request(roles.helper, "vlr.share", meta=meta)])
    relay.wave(transport, (relay.request(p, "vlr.poly", meta=meta) for p in holders))

    def trunc_request(p: str) -> Message:
        arrays = {}
        if validation and p == roles.helper:
            arrays["S"] = np.stack(dealer.powers(f"S/{t}", n, 2, seeded=roles.bank))
        return relay.request(p, "vlr.trunc", arrays, meta)

    relay.wave(transport, (trunc_request(p) for p in holders))
    if not validation:
        return 0.0
    replies = relay.wave(transport, (relay.request(p, "vlr.square", meta=meta) for p in holders))
    total = np.concatenate([reply.arrays["sum_sq"] for reply in replies]).sum(dtype=np.uint64)
    return float(decode(np.array([total], dtype=np.uint64), 2 * RESIDUAL_BITS)[0])
