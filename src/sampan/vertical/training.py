"""Coordinator side of secure vertical logistic regression: batches, waves, relay, dealer, early stop.

The coordinator knows only public things: how many aligned rows there are, the batch schedule, each
party's number of features, and the validation surrogate Brier score it decides early stopping on.
Everything else passes through it as sealed envelopes it cannot open (see `secure_lr`).
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sampan.core.relay import Relay
from sampan.core.transport import Transport
from sampan.crypto.dealer import Dealer
from sampan.crypto.ring import decode
from sampan.vertical.model import FEATURE_CLIP
from sampan.vertical.secure_lr import (
    FEATURE_BITS,
    MIN_BATCH_ROWS,
    POLY,
    RESIDUAL_BITS,
    TRUNC_SHIFT,
    W_SHIFT,
    Z_SHIFT,
    Roles,
    audit_count,
    min_batch_rows,
    weight_triples,
)
from sampan.vertical.secure_lr_encode import E_CHUNK_ROWS
from sampan.vertical.secure_lr_range import check_fixed_point
from sampan.wire import Message

__all__ = ["VerticalLRConfig", "VerticalLRResult", "train_secure_lr", "Relay", "epoch_batches", "bind_dealer"]


@dataclass(frozen=True)
class VerticalLRConfig:
    """Hyperparameters of secure vertical LR (public: every party sees them)."""

    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 0.2
    l2: float = 1e-4
    patience: int = 5
    min_delta: float = 1e-5
    logit_clip: float | None = None   # per-party partial-logit bound; default: the sigmoid fit range / parties
    # Weights kept as additive shares (the default): no party sees its plaintext gradient, which over many
    # epochs gives a party the residuals and the labels. Partial logits are then not clipped (see secure_lr).
    shared_weights: bool = True
    # plaintext-gradient mode only: accept epochs x widest party's columns >= batch_size (labels leak)
    allow_gradient_label_leakage: bool = False

    def clip_for(self, n_parties: int) -> float:
        clip = self.logit_clip if self.logit_clip is not None else POLY.fit_bound / n_parties
        self.check_capacity(n_parties, clip)
        return clip

    def check_capacity(self, n_parties: int, clip: float | None = None) -> None:
        """Refuse a logit_clip whose summed partial logits leave the polynomial's fit range or wrap the ring.

        Each party rounds its clipped partial logit to 2^-in_bits, so |z| <= parties x (clip + half a unit).
        Beyond the fit range the polynomial sigmoid is unbounded (sigma~(32) = 1272): residuals explode and
        training diverges (validation "Brier" in the millions); beyond `ring_capacity` they wrap silently.
        """
        clip = clip if clip is not None else (self.logit_clip if self.logit_clip is not None
                                              else POLY.fit_bound / n_parties)
        half_unit = 0.5 / (1 << POLY.in_bits)
        total = n_parties * (clip + half_unit)
        capacity = POLY.ring_capacity()
        if total > capacity:
            raise ValueError(f"vertical LR: logit_clip {clip:g} x {n_parties} parties can reach |z| = {total:g}, "
                             f"beyond the fixed-point ring's capacity {capacity:g} (Z_2^64, {POLY.in_bits} input bits, "
                             f"{POLY.out_bits} output bits): residuals would wrap; use at most "
                             f"{POLY.fit_bound / n_parties:g}")
        if total > POLY.fit_bound + n_parties * half_unit:
            raise ValueError(f"vertical LR: logit_clip {clip:g} x {n_parties} parties can reach |z| = {total:g}, "
                             f"beyond the sigmoid polynomial's fit range +-{POLY.fit_bound:g} where it leaves [0, 1] "
                             f"and training can diverge; use at most {POLY.fit_bound / n_parties:g}")

    def check_batches(self, max_columns: int, n_train: int | None = None) -> int:
        """The minimum batch rows for parties whose widest has `max_columns` columns; refuse a smaller batch_size."""
        need = min_batch_rows(max_columns)
        if self.batch_size < need:
            raise ValueError(f"vertical LR: batch_size {self.batch_size} is below the minimum of {need} rows "
                             f"(max(4 x {max_columns} columns of the widest party, 64)): a party's gradient is one "
                             "linear projection of the batch's residual per column, and too few rows let it solve "
                             "for the residual and the labels")
        if n_train is not None and n_train < need:
            raise ValueError(f"vertical LR: {n_train} training rows are fewer than one batch of {need} rows")
        if not self.shared_weights and not self.allow_gradient_label_leakage \
                and self.epochs * max_columns >= self.batch_size:
            raise ValueError(f"vertical LR: shared_weights = false with epochs {self.epochs} x {max_columns} "
                             f"columns of the widest party >= batch_size {self.batch_size}: each party sees its "
                             "plaintext gradient, and over that many epochs a party can solve for the residuals and "
                             "hence the labels; use "
                             "shared_weights = true, or set allow_gradient_label_leakage = true to accept the leak")
        return need

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"vertical LR: {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < MIN_BATCH_ROWS:
            raise ValueError(f"vertical LR: batch_size must be >= {MIN_BATCH_ROWS}, got {self.batch_size} (small "
                             "batches let a party solve its gradient for the residual and the labels)")
        if not self.learning_rate > 0:
            raise ValueError(f"vertical LR: learning_rate must be > 0, got {self.learning_rate}")
        if self.l2 < 0:
            raise ValueError(f"vertical LR: l2 must be >= 0, got {self.l2}")
        if self.logit_clip is not None and not self.logit_clip > 0:
            raise ValueError(f"vertical LR: logit_clip must be > 0, got {self.logit_clip}")
        if self.shared_weights and self.learning_rate > 2.0:
            raise ValueError(f"vertical LR: learning_rate {self.learning_rate} is above 2, the most shared_weights' "
                             "fixed-point update (lr/n x gradient at 2^-56) holds without wrapping")
        if self.shared_weights and self.learning_rate * self.l2 > 1 / 64:
            raise ValueError(f"vertical LR: l2 {self.l2} x learning_rate {self.learning_rate} is above 1/64, the most "
                             "shared_weights' fixed-point weight decay holds without wrapping")


def check_validation_score(epoch: int, brier: float, shared: bool) -> None:
    """Stop when the opened validation score leaves [0, 1] (the coordinator's own integrity check).

    A sum that wrapped the ring decodes negative: it must never become the "best" epoch (restored and opened).
    The clipped plaintext-gradient mode stays in the fit range, where the polynomial is within 0.1 of [0, 1].
    """
    if not brier >= 0.0 or not brier <= (1.0 if shared else 1.1):
        raise ValueError(f"vertical LR: the validation score of epoch {epoch} is {brier:.4g}, "
                         f"{'below 0' if brier < 0 else 'above 1'}, which a probability score cannot reach: the "
                         "logits left the sigmoid polynomial's range (or wrapped the ring) and training diverged; "
                         "lower learning_rate or raise l2")


def epoch_batches(order: np.ndarray, batch_size: int, min_rows: int) -> list[np.ndarray]:
    """Consecutive batches of `batch_size` rows; a tail shorter than `min_rows` is merged into the last batch."""
    batches = [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < min_rows:
        tail = batches.pop()
        batches[-1] = np.concatenate([batches[-1], tail])
    return batches


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


def train_secure_lr(
    transport: Transport, run_id: str, roles: Roles, train_rows: np.ndarray, val_rows: np.ndarray,
    config: VerticalLRConfig = VerticalLRConfig(), *, seed: int = 0,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> VerticalLRResult:
    """Train; afterwards every party holds its own `LocalLinearPart` (and the coordinator holds nothing).

    Every call is a fresh protocol instance: a new nonce in every pairwise PRG label and new dealer
    seeds, so two trainings on the same channels (the LR and the scorecard, a resume) share no stream.
    """
    parties = list(roles.all)
    relay = Relay(run_id)
    dealer = Dealer(parties)
    clip = config.clip_for(len(parties))
    shared = config.shared_weights
    base = {"bank": roles.bank, "helper": roles.helper, "others": list(roles.others),
            "lr": config.learning_rate, "l2": config.l2, "logit_clip": clip, "instance": secrets.token_hex(16),
            "shared_weights": shared}
    setup = relay.wave(transport, (relay.request(p, "vlr.setup", {
        "train_rows": np.asarray(train_rows, dtype=np.int64), "val_rows": np.asarray(val_rows, dtype=np.int64),
        "dealer_seed": np.frombuffer(dealer.seeds[p], dtype=np.uint8)}, base) for p in parties))
    features = {r.sender: int(r.meta["n_features"]) for r in setup}
    columns = bind_dealer(dealer, setup)
    n_train = len(train_rows)
    min_rows = config.check_batches(max(columns.values()), n_train)
    check_fixed_point(config.batch_size, clip=FEATURE_CLIP, feature_bits=FEATURE_BITS, residual_bits=RESIDUAL_BITS)
    for p in parties:
        for q in roles.holders_for(p):
            dealer.mask_matrix(p, q, n_train, columns[p])
        if shared:
            dealer.mask_matrix(p, roles.co_holder(p), len(val_rows), columns[p], label="Uv")
    for lo in range(E_CHUNK_ROWS, n_train, E_CHUNK_ROWS):  # E = X - U streams in chunks (the first came at setup)
        relay.wave(transport, (relay.request(p, "vlr.e_chunk", meta={"lo": lo}) for p in parties))
    relay.wave(transport, (relay.request(p, "vlr.masked_features") for p in parties))
    for lo in range(E_CHUNK_ROWS, len(val_rows) if shared else 0, E_CHUNK_ROWS):  # Ev = Xv - Uv streams the same way
        relay.wave(transport, (relay.request(p, "vlr.e_chunk", meta={"lo": lo, "part": "val"}) for p in parties))
    pending: dict[str, int | None] = {"t": None}  # shared weights: the training batch whose update is pending
    batch = functools.partial(_batch, transport, relay, dealer, roles, shared=shared, pending=pending,
                              columns=columns)

    rng = np.random.default_rng(seed)
    t = 0
    best, best_epoch, bad, history = np.inf, 0, 0, []
    briers, seconds = [], []
    stopped = False
    dealing: list[float] = []
    if len(val_rows) < min_rows:
        raise ValueError(f"vertical LR: {len(val_rows)} validation rows are fewer than one batch of {min_rows} rows")
    # The residual holders own validation: batches follow the training rule and they open the score only
    # once every validation row has been used exactly once, once per training epoch.
    val_batches = epoch_batches(np.arange(len(val_rows)), config.batch_size, min_rows)
    for epoch in range(1, config.epochs + 1):
        batches = [(rows, t + k) for k, rows in enumerate(epoch_batches(rng.permutation(n_train), config.batch_size,
                                                                       min_rows))]
        # The dealer's material depends on no data, only on the schedule; it is dealt batch by batch (memory of
        # one batch, not of an epoch) and its time is kept apart from the epoch's.
        deal_seconds, start = 0.0, time.perf_counter()
        for rows, bt in batches:
            tick = time.perf_counter()
            material = _deal(dealer, roles, rows, bt, shared)
            deal_seconds += time.perf_counter() - tick
            batch(rows, bt, validation=False, material=material)
        dealing.append(deal_seconds)
        t += len(batches)
        if not shared:  # shared weights: the last update runs before the first validation batch
            relay.wave(transport, (relay.request(p, "vlr.flush") for p in parties))
        seconds.append(time.perf_counter() - start - deal_seconds)
        sum_sq = 0.0
        for rows in val_batches:
            sum_sq += batch(rows, t, validation=True)
            t += 1
        brier = sum_sq / max(len(val_rows), 1)
        check_validation_score(epoch, brier, shared)
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
    if shared:  # only the final weights are opened, each to its owner
        relay.wave(transport, (relay.request(p, "vlr.wopen") for p in parties))
    relay.wave(transport, (relay.request(p, "vlr.finish") for p in parties))
    return VerticalLRResult(
        epochs_run=len(briers), best_epoch=best_epoch, val_brier=briers, epoch_seconds=seconds,
        stopped_early=stopped, features=features,
        waves_per_batch=(4 if roles.others else 3) + (3 if shared else 0), history=history,
        dealer_seconds=dealing)


def bind_dealer(dealer: Dealer, setup: list[Message]) -> dict[str, int]:
    """Bind each party's dealer stream to the nonce it returned at setup; returns each party's column count.

    Every party mixes its own fresh nonce into its seed, so even a repeated seed gives fresh pads and masks.
    """
    for reply in setup:
        nonce = reply.arrays.get("dealer_nonce")
        if nonce is None or len(nonce) != 16:
            raise ValueError(f"vertical LR: party {reply.sender!r} returned no 16-byte dealer nonce at setup")
        dealer.bind(reply.sender, np.ascontiguousarray(nonce, dtype=np.uint8).tobytes())
    return {r.sender: int(r.meta["n_columns"]) for r in setup}


def _deal(dealer: Dealer, roles: Roles, rows: np.ndarray, t: int, shared: bool = False,
          validation: bool = False) -> dict[str, object]:
    """Everything the dealer contributes to batch t: the helper's halves of the powers of a and of the
    truncation triple, each holder's halves C_Q of every other party's gradient product (training) and,
    with shared weights, the logit truncation triple and each co-holder's half of X_p w_p^(h)."""
    n = len(rows) + audit_count(len(rows))  # the holders sacrifice the extra tuples to check them
    out: dict[str, object] = {
        "A": np.stack(dealer.powers(f"A/{t}", n, POLY.degree, seeded=roles.bank)),
        "T": np.stack(dealer.truncation_pair(f"T/{t}", n, TRUNC_SHIFT, seeded=roles.bank))}
    if not validation:
        out["C"] = {q: {p: dealer.cross_correction(p, q, t, rows) for p in roles.all if p != q} for q in roles.holders}
    if shared:
        out["TZ"] = np.stack(dealer.truncation_pair(f"TZ/{t}", n, Z_SHIFT, seeded=roles.bank))
        out["B"] = {p: dealer.logit_correction(p, roles.co_holder(p), t, rows, validation=validation)
                    for p in roles.all}
    return out


def _batch(transport: Transport, relay: Relay, dealer: Dealer, roles: Roles, rows: np.ndarray, t: int, *,
           validation: bool, material: dict[str, object] | None = None, shared: bool = False,
           pending: dict[str, int | None] | None = None, columns: dict[str, int] | None = None) -> float:
    """Waves 1-4 of one batch (plus the square wave for validation). Returns the opened sum of r^2
    (validation: only when the holders open it, after the pass's last batch; otherwise 0)."""
    n = len(rows)
    holders = [roles.bank, roles.helper]
    meta = {"t": t, "validation": validation}
    if validation:
        mine: dict[str, object] = _deal(dealer, roles, rows, t, shared, validation=True)
    else:
        assert material is not None
        mine = material
    if shared:
        assert pending is not None and columns is not None
        tp = pending["t"]

        def update_request(p: str) -> Message:
            arrays: dict[str, np.ndarray] = {}
            if tp is not None:  # the co-holder's halves of the owners' update truncation triples
                arrays = {f"W:{o}": np.stack(dealer.truncation_pair(f"W/{o}/{tp}", weight_triples(columns[o]), W_SHIFT,
                                                                     seeded=o))
                          for o in roles.all if o != p and roles.co_holder(o) == p}
            return relay.request(p, "vlr.wupdate", arrays, meta)

        relay.wave(transport, (update_request(p) for p in roles.all))
        relay.wave(transport, (relay.request(p, "vlr.wshare", meta=meta) for p in roles.all))
        pending["t"] = None if validation else t

    def forward_request(p: str) -> Message:
        arrays: dict[str, np.ndarray] = {"rows": rows}
        if p == roles.helper:
            arrays["A"], arrays["T"] = mine["A"], mine["T"]  # type: ignore[assignment]
            if shared:
                arrays["TZ"] = mine["TZ"]  # type: ignore[assignment]
        if shared:
            corrections: dict[str, np.ndarray] = mine["B"]  # type: ignore[assignment]
            arrays.update({f"B:{o}": b for o, b in corrections.items() if roles.co_holder(o) == p})
        return relay.request(p, "vlr.forward", arrays, meta)

    relay.wave(transport, (forward_request(p) for p in roles.all))
    if roles.others:
        relay.wave(transport, [relay.request(roles.helper, "vlr.share", meta=meta)])
    if shared:
        relay.wave(transport, (relay.request(p, "vlr.ztrunc", meta=meta) for p in holders))
    relay.wave(transport, (relay.request(p, "vlr.poly", meta=meta) for p in holders))

    def trunc_request(p: str) -> Message:
        arrays: dict[str, np.ndarray] = {}
        if validation and p == roles.helper:
            arrays["S"] = np.stack(dealer.powers(f"S/{t}", n, 2, seeded=roles.bank))
        if not validation:
            arrays.update({f"C:{other}": c for other, c in mine["C"][p].items()})  # type: ignore[index]
        return relay.request(p, "vlr.trunc", arrays, meta)

    relay.wave(transport, (trunc_request(p) for p in holders))
    if not validation:
        return 0.0
    replies = relay.wave(transport, (relay.request(p, "vlr.square", meta=meta) for p in holders))
    if not all("sum_sq" in reply.arrays for reply in replies):
        return 0.0
    total = np.concatenate([reply.arrays["sum_sq"] for reply in replies]).sum(dtype=np.uint64)
    return float(decode(np.array([total], dtype=np.uint64), 2 * RESIDUAL_BITS)[0])
