"""Secure vertical logistic regression: party side.

Setting: a label holder (the bank) and one or more feature holders, aligned by PSI so that row i is
the same customer everywhere. Each party keeps its own columns and its own weights in the clear.

Threat model: semi-honest parties; the coordinator relays sealed envelopes and deals correlated
randomness (`sampan.vertical.dealer`) and does not collude with any data party. Under it:

* the label never leaves the bank, and no party's features or partial logits leave it in clear;
* the combined logit z and the residual r = sigma~(z) - y exist only as additive shares in Z_2^64
  between the bank (holder 0) and one feature holder (holder 1, "the helper");
* each party learns exactly its own gradient X_p^T r (and its weights), nothing else; the helper's
  share of r is uniformly random, so sending it to other feature holders reveals nothing;
* what is opened is always a value masked by dealer randomness (delta = z - a, c = x + r) and is
  opened only to the two holders, inside sealed envelopes; the dealer never sees an opening.

One minibatch costs four message waves (three with one feature holder):

1. ``vlr.forward`` every party computes its clipped partial logit on the batch rows. Other feature
   holders split theirs (bank's half from the pairwise PRG, helper's half in an envelope); the bank
   opens its half of delta = z - a to the helper. Pending gradient pieces of the previous batch are
   applied first.
2. ``vlr.share`` (only with two or more feature holders) the helper adds the envelopes and opens its
   half of delta to the bank.
3. ``vlr.poly`` both holders expand shares of z^1..z^5 from delta (`ring.power_shares`), evaluate the
   sigmoid polynomial, subtract y (bank), and open c = x + 2^62 + r for exact truncation.
4. ``vlr.trunc`` both get shares of r at 2^-16 and start the gradient: for every party p its gradient
   helper Q (the bank, or the helper for the bank itself) sends f = r_Q - a and E_p^T r_Q, where
   E_p = X_p - U_p was sent to Q once at setup (U_p a one-time pad known to p and the dealer); the
   dealer later adds U_p^T a. The helper sends its share of r to the other feature holders.

Validation (early stopping) runs waves 1-4 without a gradient, then squares r with a dealer square
pair and opens only the sum of squared residuals (a surrogate Brier score) to the coordinator, under a
pairwise zero-sum mask.

`PlainVerticalLR` (insecure: partial logits and the residual travel in clear) exists only as the
benchmark baseline for the cost of the cryptography.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sampan.vertical.channel import SealedChannels
from sampan.vertical.dealer import DealerStream
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.ring import SIGMOID_POLY, TRUNC_OFFSET, decode, encode, poly_shares, truncate_shares
from sampan.wire import Message

__all__ = ["SecureLRParty", "FEATURE_BITS", "RESIDUAL_BITS", "Roles"]

FEATURE_BITS = 16
RESIDUAL_BITS = 16
POLY = SIGMOID_POLY
TRUNC_SHIFT = POLY.out_bits - RESIDUAL_BITS


@dataclass(frozen=True)
class Roles:
    """Who is who in one secure LR run (public to all parties)."""

    bank: str
    helper: str
    others: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return (self.bank, self.helper, *self.others)

    def gradient_helper(self, party: str) -> str:
        return self.helper if party == self.bank else self.bank

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Roles":
        return cls(meta["bank"], meta["helper"], tuple(meta["others"]))


def receive(msg: Message, channels: SealedChannels, inbox: dict[tuple[str, str], np.ndarray]) -> None:
    """Open the envelopes the coordinator relayed (arrays named 'from:<sender>:<n>') into `inbox`.

    Keyed by (sender, array name); a protocol step pops what it needs, so an envelope may arrive a
    wave earlier than the step that uses it.
    """
    for key, value in msg.arrays.items():
        if key.startswith("from:"):
            sender = key.split(":")[1]
            for name, array in channels.open_arrays(sender, value).items():
                inbox[(sender, name)] = array


def _take(inbox: dict[tuple[str, str], np.ndarray], me: str, sender: str, name: str) -> np.ndarray:
    try:
        return inbox.pop((sender, name))
    except KeyError:
        raise ValueError(f"party {me!r}: expected {name!r} from {sender!r} has not arrived") from None


@dataclass
class _TrainState:
    roles: Roles
    dealer: DealerStream
    X: np.ndarray                     # standardised training rows (aligned order)
    X_fixed: np.ndarray               # the same at 2^-16, as ring elements
    X_val: np.ndarray
    y: np.ndarray | None              # bank only
    y_val: np.ndarray | None
    weights: np.ndarray               # the bank's last weight is its intercept
    l2_mask: np.ndarray               # no L2 penalty on the intercept
    lr: float
    l2: float
    logit_clip: float
    y_fixed: np.ndarray | None = None     # the label at 2^-47, as subtracted from sigma~(z)
    y_val_fixed: np.ndarray | None = None
    U: np.ndarray | None = None       # this party's one-time pad over X_fixed
    E: dict[str, np.ndarray] = field(default_factory=dict)  # masked matrices of the parties I help
    rows: np.ndarray | None = None    # current batch rows
    val: bool = False
    share_z: np.ndarray | None = None
    delta_half: np.ndarray | None = None
    c_half: np.ndarray | None = None
    r_share: np.ndarray | None = None
    pending: tuple[np.ndarray, int] | None = None   # (rows, t) of a batch whose gradient is in flight
    local_grad: np.ndarray | None = None
    best: np.ndarray | None = None
    dealt: dict[str, list[np.ndarray]] = field(default_factory=dict)
    inbox: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


class SecureLRParty:
    """Party-side handlers of secure vertical LR. `aligned` gives this party's rows in agreed order."""

    def __init__(self, name: str, X_aligned: Callable[[], np.ndarray], y_aligned: Callable[[], np.ndarray | None],
                 feature_names: list[str], channels: Callable[[], SealedChannels]) -> None:
        self.name = name
        self._X_aligned, self._y_aligned = X_aligned, y_aligned
        self.feature_names = feature_names
        self._channels = channels
        self.state: _TrainState | None = None
        self.part: LocalLinearPart | None = None
        self.scaler: LocalScaler | None = None

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {
            "vlr.setup": self.setup, "vlr.masked_features": self.masked_features,
            "vlr.forward": self.forward, "vlr.share": self.share, "vlr.poly": self.poly,
            "vlr.trunc": self.trunc, "vlr.square": self.square, "vlr.flush": self.flush,
            "vlr.checkpoint": self.checkpoint,
        }

    # --- setup ---------------------------------------------------------------------------------
    def setup(self, msg: Message) -> Message:
        """Split the aligned rows, standardise locally, draw the one-time pad, seal E = X - U."""
        meta = msg.meta
        roles = Roles.from_meta(meta)
        train_rows, val_rows = msg.arrays["train_rows"], msg.arrays["val_rows"]
        X_all = self._X_aligned()
        self.scaler = LocalScaler.fit(X_all[train_rows])
        X, X_val = self.scaler.transform(X_all[train_rows]), self.scaler.transform(X_all[val_rows])
        y_all = self._y_aligned()
        is_bank = self.name == roles.bank
        if is_bank and y_all is None:
            raise ValueError(f"party {self.name!r} is the label holder but has no label column")
        y = y_all[train_rows].astype(np.float64) if is_bank and y_all is not None else None
        weights = np.zeros(X.shape[1])
        if y is not None:
            # The bank's intercept is the weight of a ones column: its gradient then flows through
            # the same protocol as every other weight. It starts at the base-rate log-odds.
            X, X_val = _with_ones(X), _with_ones(X_val)
            rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
            weights = np.append(weights, np.log(rate / (1 - rate)))
        seed = bytes(msg.arrays["dealer_seed"])
        st = _TrainState(
            roles=roles, dealer=DealerStream(seed), X=X, X_fixed=encode(X, FEATURE_BITS), X_val=X_val,
            y=y, y_val=y_all[val_rows].astype(np.float64) if y is not None and y_all is not None else None,
            weights=weights, l2_mask=_l2_mask(len(weights), y is not None), lr=float(meta["lr"]), l2=float(meta["l2"]),
            logit_clip=float(meta["logit_clip"]),
        )
        st.U = st.dealer.draw("U", st.X_fixed.size).reshape(st.X_fixed.shape)
        if st.y is not None and st.y_val is not None:
            st.y_fixed, st.y_val_fixed = encode(st.y, POLY.out_bits), encode(st.y_val, POLY.out_bits)
        self.state = st
        helper = roles.gradient_helper(self.name)
        envelope = self._channels().seal_arrays(helper, {"E": st.X_fixed - st.U})
        return msg.reply("vlr.setup", {f"to:{helper}": envelope},
                         {"n_features": len(self.feature_names), "n_columns": int(st.X_fixed.shape[1]),
                          "n_train": int(st.X_fixed.shape[0])})

    def masked_features(self, msg: Message) -> Message:
        """Keep E_p for every party p this party is the gradient helper of."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        for (sender, name) in [k for k in st.inbox if k[1] == "E"]:
            st.E[sender] = st.inbox.pop((sender, name))
        return msg.reply("vlr.ack")

    # --- one batch -----------------------------------------------------------------------------
    def forward(self, msg: Message) -> Message:
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        self._apply_gradient(msg.arrays.get("correction"))
        t, roles = int(msg.meta["t"]), st.roles
        st.val = bool(msg.meta.get("validation", False))
        st.rows = msg.arrays["rows"]
        if not st.val:
            st.pending = (st.rows, t)  # its gradient pieces arrive with the next request
        X = st.X_val if st.val else st.X
        z = X[st.rows] @ st.weights
        Z = encode(np.clip(z, -st.logit_clip, st.logit_clip), POLY.in_bits)
        out: dict[str, np.ndarray] = {}
        ch = self._channels()
        if self.name in roles.others:
            rho = ch.prg(roles.bank, f"z/{t}", len(Z))
            out[f"to:{roles.helper}"] = ch.seal_arrays(roles.helper, {"z": Z - rho})
            return msg.reply("vlr.forward", out)
        if self.name == roles.bank:
            for other in roles.others:
                Z = Z + ch.prg(other, f"z/{t}", len(Z))
            st.dealt = {"a": st.dealer.draw_many(f"A/{t}", POLY.degree, len(Z)),
                        "trunc": st.dealer.draw_many(f"T/{t}", 3, len(Z))}
        else:
            k = POLY.degree
            st.dealt = {"a": list(msg.arrays["A"].reshape(k, -1)), "trunc": list(msg.arrays["T"].reshape(3, -1))}
        st.share_z = Z
        if self.name == roles.bank or not roles.others:
            return msg.reply("vlr.forward", self._open_delta(msg))
        return msg.reply("vlr.forward")

    def share(self, msg: Message) -> Message:
        """Helper only: add the other feature holders' halves, then open its half of delta."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        for other in st.roles.others:
            st.share_z = st.share_z + _take(st.inbox, self.name, other, "z")
        return msg.reply("vlr.share", self._open_delta(msg))

    def _open_delta(self, msg: Message) -> dict[str, np.ndarray]:
        st = self._st()
        st.delta_half = st.share_z - st.dealt["a"][0]
        other = self._other_holder()
        return {f"to:{other}": self._channels().seal_arrays(other, {"d": st.delta_half})}

    def poly(self, msg: Message) -> Message:
        """Shares of sigma~(z) - y at 2^-47, then open c = x + 2^62 + r for truncation."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        delta = st.delta_half + _take(st.inbox, self.name, self._other_holder(), "d")
        holder = self._holder()
        x = poly_shares(delta, st.dealt["a"], POLY.fixed_multipliers, holder=holder)
        if holder == 0:
            y = st.y_val_fixed if st.val else st.y_fixed
            assert y is not None
            x = x - y[st.rows] + TRUNC_OFFSET
        st.c_half = x + st.dealt["trunc"][0]
        other = self._other_holder()
        return msg.reply("vlr.poly", {f"to:{other}": self._channels().seal_arrays(other, {"c": st.c_half})})

    def trunc(self, msg: Message) -> Message:
        """Shares of the residual at 2^-16; start every party's gradient (or the validation square)."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        c = st.c_half + _take(st.inbox, self.name, self._other_holder(), "c")
        r = truncate_shares(c, st.dealt["trunc"][1], st.dealt["trunc"][2], TRUNC_SHIFT, holder=self._holder())
        st.r_share = r
        t, roles, ch = int(msg.meta["t"]), st.roles, self._channels()
        out: dict[str, np.ndarray] = {}
        if st.val:
            sq = msg.arrays["S"].reshape(2, -1) if "S" in msg.arrays else st.dealer.draw_many(f"S/{t}", 2, len(r))
            st.dealt["square"] = list(sq)
            other = self._other_holder()
            out[f"to:{other}"] = ch.seal_arrays(other, {"sd": r - sq[0]})
            return msg.reply("vlr.trunc", out)
        st.local_grad = st.X_fixed[st.rows].T @ r
        helped = [p for p in roles.all if p != self.name and roles.gradient_helper(p) == self.name]
        for p in helped:
            a = st.dealer.draw(f"a/{p}/{t}", len(r))
            out[f"to:{p}"] = ch.seal_arrays(p, {"f": r - a, "q": st.E[p][st.rows].T @ r})
        if self.name == roles.helper:
            for p in roles.others:
                out[f"to:{p}"] = ch.seal_arrays(p, {"r": r})
        return msg.reply("vlr.trunc", out)

    def _apply_gradient(self, correction: np.ndarray | None) -> None:
        """Finish the previous batch: X^T r = X^T r_own + E^T r_Q + U^T f + U^T a; then a step."""
        st = self._st()
        if st.pending is None:
            return
        rows, _ = st.pending
        roles = st.roles
        total = st.local_grad if st.local_grad is not None else np.zeros(st.X.shape[1], dtype=np.uint64)
        helper = roles.gradient_helper(self.name)
        if correction is None:
            raise ValueError(f"party {self.name!r}: the dealer's correction for the last batch is missing")
        q, f = _take(st.inbox, self.name, helper, "q"), _take(st.inbox, self.name, helper, "f")
        total = total + q + st.U[rows].T @ f + correction
        if self.name in roles.others:
            total = total + st.X_fixed[rows].T @ _take(st.inbox, self.name, roles.helper, "r")
        grad = decode(total, FEATURE_BITS + RESIDUAL_BITS) / len(rows)
        st.weights = st.weights - st.lr * (grad + st.l2 * st.l2_mask * st.weights)
        st.pending, st.local_grad = None, None

    # --- validation ----------------------------------------------------------------------------
    def square(self, msg: Message) -> Message:
        """Sum of squared residual shares, masked by a pairwise zero-sum pad, for the coordinator."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        r = st.r_share
        delta = (r - st.dealt["square"][0]) + _take(st.inbox, self.name, self._other_holder(), "sd")
        holder = self._holder()
        a, a2 = st.dealt["square"]
        sq = np.uint64(2) * delta * a + a2 + (delta * delta if holder == 0 else np.uint64(0))
        total = np.array([sq.sum(dtype=np.uint64)], dtype=np.uint64)
        pad = self._channels().prg(self._other_holder(), f"pad/{msg.meta['t']}", 1)
        total = total + pad if holder == 0 else total - pad
        return msg.reply("vlr.square", {"sum_sq": total})

    def flush(self, msg: Message) -> Message:
        """Apply the last batch's gradient at the end of an epoch."""
        receive(msg, self._channels(), self._st().inbox)
        self._apply_gradient(msg.arrays.get("correction"))
        return msg.reply("vlr.ack")

    def checkpoint(self, msg: Message) -> Message:
        """Remember (or restore) the weights of the best validation epoch — locally, never sent."""
        st = self._st()
        if msg.meta.get("restore"):
            if st.best is not None:
                st.weights = st.best.copy()
        else:
            st.best = st.weights.copy()
        return msg.reply("vlr.ack")

    def finish(self, msg: Message) -> Message:
        """Freeze this party's model part; only its size is reported."""
        st = self._st()
        assert self.scaler is not None
        is_bank = self.name == st.roles.bank
        self.part = LocalLinearPart(
            party=self.name, feature_names=list(self.feature_names), scaler=self.scaler,
            weights=st.weights[:-1].copy() if is_bank else st.weights.copy(),
            intercept=float(st.weights[-1]) if is_bank else 0.0, logit_clip=st.logit_clip)
        self.state = None
        return msg.reply("vlr.finish", meta={"n_weights": int(len(self.part.weights))})

    # --- helpers -------------------------------------------------------------------------------
    def _st(self) -> _TrainState:
        if self.state is None:
            raise ValueError(f"party {self.name!r}: secure LR is not set up (vlr.setup first)")
        return self.state

    def _holder(self) -> int:
        roles = self._st().roles
        if self.name == roles.bank:
            return 0
        if self.name == roles.helper:
            return 1
        raise ValueError(f"party {self.name!r} holds no share of the residual")

    def _other_holder(self) -> str:
        roles = self._st().roles
        return roles.helper if self.name == roles.bank else roles.bank


def _with_ones(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _l2_mask(n: int, has_intercept: bool) -> np.ndarray:
    mask = np.ones(n)
    if has_intercept:
        mask[-1] = 0.0
    return mask
