"""Secure vertical LR, a party's handlers: setup, masked features, the shared-weight steps and finish.

Why apart: this is the class a party app registers (`SecureLRParty.handlers`); the per-batch waves are in
`secure_lr_batch`, the state and checks in `secure_lr_base`, the protocol's statement in `secure_lr`.

What each role learns: exactly what `sampan.vertical.secure_lr` states (its module docstring and `reveals`); this
module only implements part of a party's side of that protocol and opens nothing beyond it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import numpy as np

from sampan.crypto.dealer import DealerStream, bind_seed
from sampan.crypto.ring import TRUNC_OFFSET, decode, encode, truncate_shares
from sampan.vertical.model import FEATURE_CLIP, LocalLinearPart
from sampan.vertical.rows import check_splits
from sampan.vertical.secure_lr import (
    DECAY_BITS,
    FEATURE_BITS,
    POLY,
    STEP_BITS,
    W_SHIFT,
    WEIGHT_BITS,
    BatchRuleError,
    Roles,
    _take,
    min_batch_rows,
    receive,
    weight_triples,
)
from sampan.vertical.secure_lr_base import RowPass, _l2_mask, _TrainState, _with_ones, validation_order
from sampan.vertical.secure_lr_batch import BatchSteps
from sampan.vertical.secure_lr_chunks import chunk_binding, chunk_row, store_chunks
from sampan.vertical.secure_lr_encode import E_CHUNK_ROWS, encode_rows, fit_scaler
from sampan.vertical.secure_lr_range import check_feature_range
from sampan.wire import Message


class SecureLRParty(BatchSteps):
    """Party-side handlers of secure vertical LR. `aligned` gives this party's rows in agreed order."""

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {
            "vlr.setup": self.setup, "vlr.e_chunk": self.e_chunk, "vlr.masked_features": self.masked_features,
            "vlr.forward": self.forward, "vlr.share": self.share, "vlr.poly": self.poly,
            "vlr.trunc": self.trunc, "vlr.square": self.square, "vlr.flush": self.flush,
            "vlr.checkpoint": self.checkpoint, "vlr.wupdate": self.wupdate, "vlr.wshare": self.wshare,
            "vlr.ztrunc": self.ztrunc, "vlr.wopen": self.wopen,
        }

    # --- setup ---------------------------------------------------------------------------------
    def setup(self, msg: Message) -> Message:
        """Split the aligned rows, standardise and encode locally (int32, over row blocks), seal the first chunk
        of E = X - U to every residual holder (the rest follow in `vlr.e_chunk` waves)."""
        meta = msg.meta
        roles = Roles.from_meta(meta)
        self._channels().require_role(roles.bank, "label_holder", "vlr.setup")  # not the coordinator's word
        instance = str(meta.get("instance") or "")
        seed = bytes(msg.arrays["dealer_seed"])
        if len(instance) < 16:
            raise ValueError(f"party {self.name!r}: secure LR setup without a fresh instance nonce (got {instance!r})")
        if len(seed) != 32:
            raise ValueError(f"party {self.name!r}: the dealer seed must be 32 bytes, got {len(seed)}")
        self.runs.check_open(msg.run_id)
        X_all = self._X_aligned()
        train_rows, val_rows = self._check_splits(msg.arrays["train_rows"], msg.arrays["val_rows"], len(X_all))
        self._fresh(msg.run_id, instance, seed)
        # This party's own nonce, mixed into its dealer seed: a repeated seed still gives fresh pads and masks.
        dealer_nonce = os.urandom(16)
        check_feature_range(self.name, list(self.feature_names), X_all, rows=np.concatenate([train_rows, val_rows]),
                            clip=FEATURE_CLIP, frac_bits=FEATURE_BITS)  # before any share: overflow names columns
        self.scaler = fit_scaler(X_all, train_rows)  # over row blocks: no float copy of the training rows
        y_all = self._y_aligned()
        is_bank = self.name == roles.bank
        if is_bank and y_all is None:
            raise ValueError(f"party {self.name!r} is the label holder but has no label column")
        y = y_all[train_rows].astype(np.float64) if is_bank and y_all is not None else None
        shared = bool(meta.get("shared_weights", False))
        # Held once, compact: int32 at 2^-FEATURE_BITS, encoded over fixed row blocks (`sampan.compute`)
        X_int = encode_rows(X_all, train_rows, self.scaler, with_ones=y is not None)
        Xv_int = encode_rows(X_all, val_rows, self.scaler, with_ones=y is not None)
        X_float = Xv_float = None
        if not shared:  # plaintext-gradient mode computes its clipped partial logit in float, as before
            X_float, Xv_float = self.scaler.transform(X_all[train_rows]), self.scaler.transform(X_all[val_rows])
            if y is not None:
                X_float, Xv_float = _with_ones(X_float), _with_ones(Xv_float)
        del X_all
        weights = np.zeros(X_int.shape[1] - (1 if y is not None else 0))
        if y is not None:
            # The bank's intercept is the weight of a ones column: its gradient then flows through
            # the same protocol as every other weight. It starts at the base-rate log-odds.
            rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
            weights = np.append(weights, np.log(rate / (1 - rate)))
        st = _TrainState(
            roles=roles, instance=instance, dealer=DealerStream(bind_seed(seed, dealer_nonce)), X_int=X_int,
            Xv_int=Xv_int, y=y,
            y_val=y_all[val_rows].astype(np.float64) if y is not None and y_all is not None else None,
            weights=weights, l2_mask=_l2_mask(len(weights), y is not None), lr=float(meta["lr"]), l2=float(meta["l2"]),
            logit_clip=float(meta["logit_clip"]), X_float=X_float, Xv_float=Xv_float,
        )
        if st.y is not None and st.y_val is not None:
            st.y_fixed, st.y_val_fixed = encode(st.y, POLY.out_bits), encode(st.y_val, POLY.out_bits)
        st.shared = shared
        st.run_id = msg.run_id
        st.setup_instance = instance  # E chunks carry a binding to it (`secure_lr_chunks`)
        if st.shared:
            st.w_own = encode(weights, WEIGHT_BITS)  # the co-holder's share starts at 0
        self.state = st
        ch = self._channels()
        out: dict[str, np.ndarray] = {}
        if self.name in roles.holders:
            # This holder's own share of the instance nonce: every pairwise PRG label of the instance depends on
            # it, so no schedule of coordinator nonces can make this holder's streams repeat.
            st.nonce = os.urandom(16)
            for p in roles.all:
                if p != self.name:
                    out[f"to:{p}"] = ch.seal_arrays(p, {"nonce": np.frombuffer(st.nonce, dtype=np.uint8)})
        for q in roles.holders_for(self.name):
            sealed = self._e_chunk(q, 0)  # E = X - U streams in chunks of E_CHUNK_ROWS (`vlr.e_chunk`)
            if self.name in roles.holders:
                sealed["nonce"] = np.frombuffer(st.nonce, dtype=np.uint8)
            out[f"to:{q}"] = ch.seal_arrays(q, sealed)
        out["dealer_nonce"] = np.frombuffer(dealer_nonce, dtype=np.uint8)  # the dealer binds this party's seed to it
        return msg.reply("vlr.setup", out, {"n_features": len(self.feature_names),
                                            "n_columns": int(st.X_int.shape[1]),
                                            "n_train": int(st.X_int.shape[0])})

    def _e_chunk(self, holder: str, lo: int, *, validation: bool = False) -> dict[str, np.ndarray]:
        """Rows [lo, lo + E_CHUNK_ROWS) of E = X - U (or, validation, of Ev = Xv - Uv in position order) for
        `holder`, bound to this instance (`secure_lr_chunks`): one message each, never the table at once."""
        st = self._st()
        part = "Ev" if validation else "E"
        rows = np.arange(lo, min(lo + E_CHUNK_ROWS, (st.Xv_int if validation else st.X_int).shape[0]))
        return {part: st.fixed_rows(rows, validation=validation) - st.pad_rows(holder, rows, validation=validation),
                f"{part}_lo": np.array([lo], dtype=np.int64),
                f"{part}_bind": chunk_binding(st.instance if validation else st.setup_instance, part)}

    def e_chunk(self, msg: Message) -> Message:
        """Store the chunks that arrived; send my chunk starting at row meta['lo']: of E to every holder I serve,
        or (meta['part'] = 'val', shared weights, after `vlr.masked_features`) of Ev to my co-holder."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        self._store_e_chunks()
        ch = self._channels()
        if msg.meta.get("part", "train") == "val":
            if not (st.shared and st.val_ordered):
                raise ValueError(f"party {self.name!r}: refusing a masked validation chunk before the validation "
                                 "order exists or in a run without shared weights")
            lo = chunk_row(self.name, msg.meta, st.Xv_int.shape[0], E_CHUNK_ROWS, "validation")
            h = st.roles.co_holder(self.name)
            return msg.reply("vlr.e_chunk", {f"to:{h}": ch.seal_arrays(h, self._e_chunk(h, lo, validation=True))})
        if msg.meta.get("part", "train") != "train" or st.val_ordered:
            raise ValueError(f"party {self.name!r}: refusing a masked-feature chunk request for part "
                             f"{msg.meta.get('part')!r} (field 'part': 'train' before vlr.masked_features, "
                             "'val' after)")
        lo = chunk_row(self.name, msg.meta, st.X_int.shape[0], E_CHUNK_ROWS, "training")
        out = {f"to:{q}": ch.seal_arrays(q, self._e_chunk(q, lo)) for q in st.roles.holders_for(self.name)}
        return msg.reply("vlr.e_chunk", out)

    def _store_e_chunks(self) -> None:
        """Holders: place each arrived, instance-bound chunk of E (or Ev) in order (`secure_lr_chunks`)."""
        store_chunks(self.name, self._st())

    def _check_splits(self, train_rows: np.ndarray, val_rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Distinct aligned rows, validation disjoint from training (`sampan.vertical.rows.check_splits`)."""
        return check_splits(self.name, train_rows, val_rows, n, BatchRuleError)

    def _fresh(self, run_id: str, instance: str, seed: bytes) -> None:
        """Admit a new instance of the run: refuse a reused nonce or seed and instances beyond this party's cap.

        Keyed on the run id, not on channels (a new `vertical.hello` must not reset it), and persisted by a
        deployed party (`LRRuns`) before any material leaves.
        """
        self.runs.admit(run_id, instance, seed)

    def masked_features(self, msg: Message) -> Message:
        """Holders keep E_p for every party p they serve; they now know every party's column count."""
        st = self._st()
        receive(msg, self._channels(), st.inbox)
        self._store_e_chunks()
        incomplete = [p for p in st.E if st.e_next[p] != st.X_int.shape[0]]
        if incomplete:
            raise ValueError(f"party {self.name!r}: the masked features from {incomplete} are incomplete")
        if st.shared:
            owners = [p for p in st.roles.all if p != self.name and st.roles.co_holder(p) == self.name]
            missing = [p for p in owners if p not in st.E]
            if missing:
                raise ValueError(f"party {self.name!r}: no masked features from {missing} for their shared weights")
            st.co_w = {p: np.zeros(st.E[p].shape[1], dtype=np.uint64) for p in owners}
        # The instance nonce: the coordinator's, the bank's and the helper's, each holder's own taken locally
        # (a repeat needs a holder's cooperation; the coordinator cannot alter a sealed contribution).
        parts = []
        for holder in st.roles.holders:
            nonce = st.nonce if holder == self.name else bytes(_take(st.inbox, self.name, holder, "nonce"))
            if len(nonce) != 16:
                raise ValueError(f"party {self.name!r}: the instance nonce from {holder!r} is not 16 bytes")
            parts.append(nonce)
        st.instance = hashlib.sha256(b"sampan/vlr/instance|" + st.instance.encode() + b"|"
                                     + b"|".join(parts)).hexdigest()
        # Validation positions are a permutation of the validation rows that every party derives from the
        # instance and the coordinator (which never sees the holders' nonces) cannot: a dealt value it corrupts
        # at a validation position hits a row it cannot name.
        order = validation_order(st.instance, st.Xv_int.shape[0])
        st.Xv_int = st.Xv_int[order]
        if st.Xv_float is not None:
            st.Xv_float = st.Xv_float[order]
        if st.y_val is not None and st.y_val_fixed is not None:
            st.y_val, st.y_val_fixed = st.y_val[order], st.y_val_fixed[order]
        st.val_ordered = True
        out: dict[str, np.ndarray] = {}
        if st.shared:  # the first chunk of Ev = Xv - Uv (the validation pad, in position order as the dealer deals
            h = st.roles.co_holder(self.name)  # it); the rest follow in `vlr.e_chunk` waves with part 'val'
            out[f"to:{h}"] = self._channels().seal_arrays(h, self._e_chunk(h, 0, validation=True))
        if self.name in st.roles.holders:
            missing = [p for p in st.roles.all if p != self.name and p not in st.E]
            if missing:
                raise ValueError(f"party {self.name!r}: no masked features from {missing}")
            widest = max([st.X_int.shape[1], *(e.shape[1] for e in st.E.values())])
            st.min_rows = min_batch_rows(widest)
            st.used = RowPass(st.X_int.shape[0])
            st.val_used = RowPass(st.Xv_int.shape[0])
            if st.X_int.shape[0] < st.min_rows:
                raise BatchRuleError(f"party {self.name!r}: {st.X_int.shape[0]} training rows are fewer than the "
                                     f"{st.min_rows} one batch needs (max(4 x {widest} columns, 64))")
            if st.Xv_int.shape[0] < st.min_rows:
                raise BatchRuleError(f"party {self.name!r}: {st.Xv_int.shape[0]} validation rows are fewer than the "
                                     f"{st.min_rows} one validation batch needs (max(4 x {widest} columns, 64))")
        return msg.reply("vlr.masked_features", out, meta={"min_batch_rows": st.min_rows})

    # --- shared weights ------------------------------------------------------------------------
    def wupdate(self, msg: Message) -> Message:
        """Shared weights: start w <- w - (lr/n) g - lr l2 w on shares; open c = x + 2^62 + t to the partner.

        The owner's gradient share is X^T r_own + sum_Q (X^T f_Q + C_p); the co-holder's is the sum of the
        q pieces (E^T a + C_Q). Neither share is the gradient: the owner never sees its plaintext gradient.
        """
        st = self._training()
        receive(msg, self._channels(), st.inbox)
        if not st.shared:
            raise ValueError(f"party {self.name!r}: vlr.wupdate in a run without shared weights")
        if st.pending is None:
            return msg.reply("vlr.ack")
        rows, tp = st.pending
        n, roles, me = len(rows), st.roles, self.name
        step = np.uint64(int(round(st.lr / n * (1 << STEP_BITS))))
        decay = np.uint64(int(round(st.lr * st.l2 * (1 << DECAY_BITS))))
        mail: dict[str, dict[str, np.ndarray]] = {}
        X = st.fixed_rows(rows)
        grad = st.local_grad if st.local_grad is not None else np.zeros(X.shape[1], dtype=np.uint64)
        for q in roles.holders_for(me):
            f = _take(st.inbox, me, q, "f")
            if f.shape != (n,):
                raise ValueError(f"party {me!r}: gradient pieces from {q!r} have the wrong shape")
            grad = grad + X.T @ f + st.dealer.draw(f"C/{q}/{tp}", X.shape[1])
        assert st.w_own is not None
        dealt = st.dealer.draw_many(f"W/{me}/{tp}", 3, weight_triples(len(st.w_own)))
        use, audit = self._weight_audit_split(me, tp, len(st.w_own))
        triple = [v[use] for v in dealt]
        x = step * grad + decay * (_l2_mask(len(st.w_own), me == roles.bank).astype(np.uint64) * st.w_own)
        x = x + TRUNC_OFFSET + triple[0]
        st.w_trunc[me] = (x, triple, 0)
        # this owner's halves of the sacrificed triples: the co-holder checks them before any truncation is used
        mail.setdefault(roles.co_holder(me), {}).update({f"wc:{me}": x,
                                                          f"wa:{me}": np.stack([v[audit] for v in dealt])})
        for p, share in st.co_w.items():
            g = st.g_co.pop(p)
            if p in roles.others:
                g = g + _take(st.inbox, me, roles.helper, f"gq:{p}")
            W = msg.arrays.get(f"W:{p}")
            if W is None or W.shape != (3, weight_triples(len(share))):
                raise ValueError(f"party {me!r}: the dealer's update truncation for {p!r} is missing or malformed")
            use, audit = self._weight_audit_split(p, tp, len(share))
            triple = [v[use] for v in W]
            st.w_audit[p] = W[:, audit]
            x = step * g + decay * (_l2_mask(len(share), p == roles.bank).astype(np.uint64) * share) + triple[0]
            st.w_trunc[p] = (x, triple, 1)
            mail.setdefault(p, {})[f"wc:{p}"] = x
        st.pending, st.local_grad = None, None
        ch = self._channels()
        return msg.reply("vlr.wupdate", {f"to:{q}": ch.seal_arrays(q, arrays) for q, arrays in mail.items()})

    def wshare(self, msg: Message) -> Message:
        """Shared weights: finish pending updates, then send every owner I co-hold for its masked share w - b."""
        st = self._training()
        receive(msg, self._channels(), st.inbox)
        roles, me = st.roles, self.name
        for owner, mine in list(st.w_audit.items()):  # co-holder: audit the owner's sacrificed triples first
            tr = mine + _take(st.inbox, me, owner, f"wa:{owner}")
            ok = bool(np.array_equal(tr[1], tr[0] >> np.uint64(W_SHIFT))) and \
                bool(np.array_equal(tr[2], tr[0] >> np.uint64(63)))
            if not ok:
                self._audit_failed(f"the weight-update truncation triples of {owner!r} after batch "
                                   f"{st.pending[1] if st.pending else st.t} failed the audit of sacrificed triples")
        st.w_audit.clear()
        for owner, (x, triple, holder) in list(st.w_trunc.items()):
            partner = roles.co_holder(me) if owner == me else owner
            c = x + _take(st.inbox, me, partner, f"wc:{owner}")
            u = truncate_shares(c, triple[1], triple[2], W_SHIFT, holder=holder)
            if owner == me:
                st.w_own = st.w_own - u
            else:
                st.co_w[owner] = st.co_w[owner] - u
        st.w_trunc.clear()
        t = int(msg.meta["t"])
        ch = self._channels()
        out = {f"to:{p}": ch.seal_arrays(p, {"wb": share - st.dealer.draw(f"b/{p}/{t}", len(share))})
               for p, share in st.co_w.items()}
        return msg.reply("vlr.wshare", out)

    def wopen(self, msg: Message) -> Message:
        """Shared weights, at the end only: each co-holder sends its share of an owner's checkpointed weights.

        Only weights of an epoch-boundary checkpoint open (after at least one complete training epoch, no update
        pending), once: weights opened after one batch would be -lr g / n, the owner's plaintext gradient.
        """
        st = self._st()
        if st.weights_opened:
            raise ValueError(f"party {self.name!r}: refusing to open the shared weights a second time")
        if self.name in st.roles.holders:
            self._require_epoch_boundary("open the shared weights")
            if st.best_shared is None:
                raise ValueError(f"party {self.name!r}: refusing to open the shared weights: no checkpoint was taken "
                                 "at the end of a complete training epoch")
        st.weights_opened = True  # once opened, this instance trains no further (else weights per step = gradients)
        shares = st.best_shared[1] if st.best_shared is not None else st.co_w
        ch = self._channels()
        out = {f"to:{p}": ch.seal_arrays(p, {"wfinal": share}) for p, share in shares.items()}
        return msg.reply("vlr.wopen", out)


    def finish(self, msg: Message) -> Message:
        """Freeze this party's model part; only its size is reported."""
        st = self._st()
        assert self.scaler is not None
        is_bank = self.name == st.roles.bank
        logit_clip = st.logit_clip
        if st.shared:
            receive(msg, self._channels(), st.inbox)
            other = _take(st.inbox, self.name, st.roles.co_holder(self.name), "wfinal")
            own = st.best_shared[0] if st.best_shared is not None else st.w_own  # the co-holder opens the checkpoint
            st.weights = decode(own + other, WEIGHT_BITS)
            logit_clip = POLY.ring_capacity()  # trained unclipped: the clip at scoring only bounds the ring
        self.part = LocalLinearPart(
            party=self.name, feature_names=list(self.feature_names), scaler=self.scaler,
            weights=st.weights[:-1].copy() if is_bank else st.weights.copy(),
            intercept=float(st.weights[-1]) if is_bank else 0.0, logit_clip=logit_clip)
        self.state = None
        return msg.reply("vlr.finish", meta={"n_weights": int(len(self.part.weights))})

