"""Secure vertical LR, one minibatch: forward, share, poly, trunc (and ztrunc), and the validation waves.

Why apart: these are the per-batch message waves of the protocol (`sampan.vertical.secure_lr`, "one minibatch
costs four message waves"); setup and the shared-weight steps are in `secure_lr_party`.

What each role learns: exactly what `sampan.vertical.secure_lr` states (its module docstring and `reveals`); this
module only implements part of a party's side of that protocol and opens nothing beyond it.
"""

from __future__ import annotations

import numpy as np

from sampan.crypto.ring import TRUNC_OFFSET, decode, encode, poly_shares, to_signed, truncate_shares
from sampan.vertical.secure_lr import (
    FEATURE_BITS,
    POLY,
    RESIDUAL_BITS,
    TRUNC_SHIFT,
    Z_SHIFT,
    _take,
    audit_count,
    receive,
)
from sampan.vertical.secure_lr_base import SecureLRBase
from sampan.vertical.secure_lr_chunks import store_chunks
from sampan.wire import Message


class BatchSteps(SecureLRBase):
    """The per-batch and validation handlers of `SecureLRParty`."""

    # --- one batch -----------------------------------------------------------------------------
    def forward(self, msg: Message) -> Message:
        st = self._training()
        receive(msg, self._channels(), st.inbox)
        if not st.shared:
            self._apply_gradient()
        t, roles = int(msg.meta["t"]), st.roles
        if t <= st.last_t:  # a repeated batch index would repeat every PRG and dealer stream of that batch
            raise ValueError(f"party {self.name!r}: refusing batch index {t} (not after {st.last_t}): "
                             "its masks would repeat")
        st.last_t = t
        st.val = bool(msg.meta.get("validation", False))
        st.rows, st.t = np.asarray(msg.arrays["rows"], dtype=np.int64), t
        if st.val and self.name in roles.holders:
            self._check_val_batch(st.rows)
        if not st.val:
            if self.name in roles.holders:
                self._check_batch(st.rows)
            st.pending = (st.rows, t)  # its gradient pieces arrive with the next request
        if st.shared:
            Z = self._shared_logit(msg)
        else:
            X = st.X_val if st.val else st.X
            z = X[st.rows] @ st.weights
            Z = encode(np.clip(z, -st.logit_clip, st.logit_clip), POLY.in_bits)
        out: dict[str, np.ndarray] = {}
        ch = self._channels()
        label = f"vlr/{st.instance}/z/{t}"
        if self.name in roles.others:
            rho = ch.prg(roles.bank, label, len(Z))
            out[f"to:{roles.helper}"] = ch.seal_arrays(roles.helper, {"z": Z - rho})
            return msg.reply("vlr.forward", out)
        n_dealt = len(Z) + audit_count(len(Z))
        if self.name == roles.bank:
            for other in roles.others:
                Z = Z + ch.prg(other, label, len(Z))
            dealt = {"a": st.dealer.draw_many(f"A/{t}", POLY.degree, n_dealt),
                     "trunc": st.dealer.draw_many(f"T/{t}", 3, n_dealt)}
            if st.shared:
                dealt["ztrunc"] = st.dealer.draw_many(f"TZ/{t}", 3, n_dealt)
        else:
            dealt = {"a": list(msg.arrays["A"].reshape(POLY.degree, -1)), "trunc": list(msg.arrays["T"].reshape(3, -1))}
            if st.shared:
                dealt["ztrunc"] = list(msg.arrays["TZ"].reshape(3, -1))
            if any(len(v) != n_dealt for vs in dealt.values() for v in vs):
                raise ValueError(f"party {self.name!r}: the dealer sent material for the wrong number of rows")
        keep, audit = self._audit_split(n_dealt, t)
        st.dealt = {name: [v[keep] for v in values] for name, values in dealt.items()}
        st.audit = {name: np.stack([v[audit] for v in values]) for name, values in dealt.items()}
        st.share_z = Z
        if self.name == roles.bank or not roles.others:
            return msg.reply("vlr.forward", self._open_first())
        return msg.reply("vlr.forward")

    def _shared_logit(self, msg: Message) -> np.ndarray:
        """Shared weights: this party's additive share of the batch's partial logits, at 2^-(16+24).

        Owner p: X_p w_p^(p) + U (w_p^(h) - b) + D, from the co-holder's masked share (w_p^(h) - b);
        co-holder h, for every owner p it serves: E w_p^(h) + (U b - D), the dealer's half. The sum is
        X_p w_p (E = X_p - U); p never sees b, h never sees U, so neither learns the other's share.
        """
        st, roles = self._st(), self._st().roles
        rows, t = st.rows, st.t
        assert rows is not None and st.w_own is not None
        h = roles.co_holder(self.name)
        wb = _take(st.inbox, self.name, h, "wb")
        if wb.shape != st.w_own.shape:
            raise ValueError(f"party {self.name!r}: the masked weight share from {h!r} has the wrong shape")
        U = st.pad_rows(h, rows, validation=st.val)
        Z = st.fixed_rows(rows, validation=st.val) @ st.w_own + U @ wb + st.dealer.draw(f"D/{h}/{t}", len(rows))
        if st.val:  # the last chunks of Ev arrived after the last `vlr.e_chunk` wave
            store_chunks(self.name, st)
        for p, share in st.co_w.items():
            if st.val and st.ev_next.get(p) != st.Xv_int.shape[0]:
                raise ValueError(f"party {self.name!r}: the masked validation features from {p!r} are incomplete")
            E = (st.E_val if st.val else st.E)[p][rows]
            try:
                B = msg.arrays[f"B:{p}"]
            except KeyError:
                raise ValueError(f"party {self.name!r}: the dealer's logit correction for {p!r} is missing") from None
            if B.shape != (len(rows),):
                raise ValueError(f"party {self.name!r}: the dealer's logit correction for {p!r} has the wrong shape")
            Z = Z + E @ share + B
        return Z

    def _open_first(self) -> dict[str, np.ndarray]:
        """The first opening of a batch: delta (plaintext-gradient mode) or the masked logit to truncate (shared)."""
        st = self._st()
        if not st.shared:
            return self._open_delta()
        offset = TRUNC_OFFSET if self._holder() == 0 else np.uint64(0)  # the truncation's range offset
        assert st.share_z is not None  # set by the batch's first opening
        st.c_half = st.share_z + offset + st.dealt["ztrunc"][0]
        other = self._other_holder()
        return {f"to:{other}": self._channels().seal_arrays(other, {"cz": st.c_half})}

    def ztrunc(self, msg: Message) -> Message:
        """Shared weights: shares of z at 2^-5 from the opened c = z + 2^62 + t, then open delta."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        c = st.c_half + _take(st.inbox, self.name, self._other_holder(), "cz")
        self._refuse_unmasked(to_signed(c - TRUNC_OFFSET), 1 << 50, "c = z + t", per_row=False)
        tz = st.dealt["ztrunc"]
        st.share_z = truncate_shares(c, tz[1], tz[2], Z_SHIFT, holder=self._holder())
        return msg.reply("vlr.ztrunc", self._open_delta())


    def share(self, msg: Message) -> Message:
        """Helper only: add the other feature holders' halves, then open its half of delta."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        for other in st.roles.others:
            st.share_z = st.share_z + _take(st.inbox, self.name, other, "z")
        return msg.reply("vlr.share", self._open_first())

    def _open_delta(self) -> dict[str, np.ndarray]:
        """Open this holder's half of delta; the bank adds its halves of the sacrificed correlations."""
        st = self._st()
        st.delta_half = st.share_z - st.dealt["a"][0]
        other = self._other_holder()
        arrays = {"d": st.delta_half}
        if self.name == st.roles.bank:
            arrays.update({"audit_a": st.audit["a"], "audit_t": st.audit["trunc"]})
            if st.shared:
                arrays["audit_tz"] = st.audit["ztrunc"]
        return {f"to:{other}": self._channels().seal_arrays(other, arrays)}


    def poly(self, msg: Message) -> Message:
        """Shares of sigma~(z) - y at 2^-47, then open c = x + 2^62 + t for truncation."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        delta = st.delta_half + _take(st.inbox, self.name, self._other_holder(), "d")
        if self.name == st.roles.helper:
            self._check_audit(_take(st.inbox, self.name, st.roles.bank, "audit_a"),
                              _take(st.inbox, self.name, st.roles.bank, "audit_t"),
                              _take(st.inbox, self.name, st.roles.bank, "audit_tz") if st.shared else None)
        self._refuse_unmasked(to_signed(delta), 1 << 12, "delta = z - a", per_row=True)
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
        """Shares of the residual at 2^-16; send every other party its Beaver pieces (or start the square)."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        c = st.c_half + _take(st.inbox, self.name, self._other_holder(), "c")
        self._refuse_unmasked(to_signed(c - TRUNC_OFFSET), 1 << 50, "c = x + t", per_row=False)
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
        assert st.rows is not None
        st.local_grad = st.fixed_rows(st.rows).T @ r
        mail: dict[str, dict[str, np.ndarray]] = {p: {} for p in roles.all if p != self.name}
        for p in roles.all:
            if p == self.name:
                continue
            try:
                correction = msg.arrays[f"C:{p}"]
            except KeyError:
                raise ValueError(f"party {self.name!r}: the dealer's correction for {p!r} is missing") from None
            a = st.dealer.draw(f"a/{p}/{t}", len(r))
            q = st.E[p][st.rows].T @ a + correction
            mail[p]["f"] = r - a
            if not st.shared:
                mail[p]["q"] = q
            elif roles.co_holder(p) == self.name:
                st.g_co[p] = q            # this holder's share of p's gradient stays here
            else:
                mail[roles.co_holder(p)][f"gq:{p}"] = q   # to p's co-holder, never to p
        out = {f"to:{p}": ch.seal_arrays(p, arrays) for p, arrays in mail.items() if arrays}
        return msg.reply("vlr.trunc", out)

    def _apply_gradient(self) -> None:
        """Finish the previous batch: X^T r = [X^T r_own] + sum over holders Q of (X^T f_Q + q_Q + C_Q); then a step."""
        st = self._st()
        if st.pending is None:
            return
        rows, t = st.pending
        total = st.local_grad if st.local_grad is not None else np.zeros(st.X_int.shape[1], dtype=np.uint64)
        X = st.fixed_rows(rows)
        for q in st.roles.holders_for(self.name):
            f, piece = _take(st.inbox, self.name, q, "f"), _take(st.inbox, self.name, q, "q")
            if f.shape != (len(rows),) or piece.shape != (X.shape[1],):
                raise ValueError(f"party {self.name!r}: gradient pieces from {q!r} have the wrong shape")
            total = total + X.T @ f + piece + st.dealer.draw(f"C/{q}/{t}", X.shape[1])
        grad = decode(total, FEATURE_BITS + RESIDUAL_BITS) / len(rows)
        st.weights = st.weights - st.lr * (grad + st.l2 * st.l2_mask * st.weights)
        st.pending, st.local_grad = None, None


    # --- validation ----------------------------------------------------------------------------
    def square(self, msg: Message) -> Message:
        """Add this batch's share of the sum of squared residuals; on the epoch's last batch, open the total.

        Only the epoch total leaves, under a pairwise zero-sum pad: the coordinator never sees one
        batch's (or one row's) squared residual.
        """
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        r = st.r_share
        delta = (r - st.dealt["square"][0]) + _take(st.inbox, self.name, self._other_holder(), "sd")
        holder = self._holder()
        a, a2 = st.dealt["square"]
        sq = np.uint64(2) * delta * a + a2 + (delta * delta if holder == 0 else np.uint64(0))
        running = st.val_sum if st.val_sum is not None else np.zeros(1, dtype=np.uint64)
        st.val_sum = running + np.array([sq.sum(dtype=np.uint64)], dtype=np.uint64)
        assert st.val_used is not None
        if not st.val_used.all():  # decided here, not by the coordinator: open only a whole pass
            return msg.reply("vlr.ack")
        pad = self._channels().prg(self._other_holder(), f"vlr/{st.instance}/pad/{st.t}", 1)
        total = st.val_sum + pad if holder == 0 else st.val_sum - pad
        st.val_sum = None
        st.val_used.clear()
        st.opened_at = st.epochs_done
        return msg.reply("vlr.square", {"sum_sq": total})

    def flush(self, msg: Message) -> Message:
        """Apply the last batch's gradient at the end of an epoch."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        if not st.shared:  # shared weights: the pending update runs in the next vlr.wupdate
            self._apply_gradient()
        return msg.reply("vlr.ack")

    def checkpoint(self, msg: Message) -> Message:
        """Remember (or restore) the weights of the best validation epoch — locally, never sent."""
        st = self._training()
        if st.shared:
            assert st.w_own is not None
            if msg.meta.get("restore"):
                if st.best_shared is not None:
                    st.w_own = st.best_shared[0].copy()
                    st.co_w = {p: v.copy() for p, v in st.best_shared[1].items()}
            else:
                if self.name in st.roles.holders:
                    self._require_epoch_boundary("checkpoint the shared weights")
                st.best_shared = (st.w_own.copy(), {p: v.copy() for p, v in st.co_w.items()})
            return msg.reply("vlr.ack")
        if msg.meta.get("restore"):
            if st.best is not None:
                st.weights = st.best.copy()
        else:
            st.best = st.weights.copy()
        return msg.reply("vlr.ack")

