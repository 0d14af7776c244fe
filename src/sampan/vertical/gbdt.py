"""Vertical gradient-boosted trees (SecureBoost class) with dealer-masked histograms.

The label holder (bank) runs the learner of `sampan.models.gbdt`; every request it makes of partners
travels in sealed envelopes and is answered by the partners and the dealer (the coordinator):

* gradients and hessians never leave the bank in clear: partners see them masked by dealer randomness
  and return per-bin sums (`sampan.vertical.histograms`);
* a partner keeps the threshold of every split on its features (the bank knows only "node n belongs
  to payments"); it returns the left/right partition of the node's rows;
* prediction asks each partner for its directions at its nodes; scoring a new application sends the
  registration number (sealed) and gets back one bit per partner node.

What each role learns (also in the run receipt: REVEALS, and field by field VIEWS, in `gbdt_views`):

* the bank (label holder): per-bin gradient/hessian sums of partner features at each requested node —
  exact, or with `hist_noise` Gaussian noise the *partner* adds inside the masked sum (so the bank never
  decodes an exact partner sum; charged per partner by `gbdt_histogram_privacy`, replace-one-customer
  sensitivity^2 = 2 d (1 + 1/16)); and, outside any DP mechanism, the exact left/right partition of the
  node's rows at every split on a partner feature, the partner's routing bit for every validation and
  scored row, hence the trees and leaf values it computes;
* a partner: the row sets of the nodes (to bin them), the split (feature, bin) the bank chose on its own
  features, and the thresholds it keeps; its masked (g, h) are uniformly random to it;
* the coordinator (dealer): the partner's binned records in a secret row order (fresh per setup from a
  nonce the partner seals to the bank; one training row set per run, no repeated rows:
  `sampan.vertical.rows`), each node's positions in that order (node sizes), which partners are involved in each step,
  and the training and validation
  log-loss after each tree (the early-stopping signal); it cannot link a record to a customer. A
  malicious dealer can corrupt the histograms, not read them; the bank's totals check catches part of
  it (see `sampan.vertical.histograms`).

The reported epsilon therefore covers the noised histograms only, for one customer's binned record with
the partner's quantile bin edges held fixed (one customer can move an edge: not covered); the
partitions and routing bits are exact functions of partner data that the bank sees, and no DP claim is
made about them: across trees they let the bank recover most training rows' partner bins (a review
measured 59-92% with 40 trees, depth 3, 8 bins), so the epsilon is conditional on the partitions.

Privacy policy (each party's own, `sampan.privacy.party_policy`): a partner checks `hist_noise` at
`vgb.setup` (noise multiplier sigma / sensitivity against its minimum; refused without noise when its
policy requires DP on GBDT) and charges every histogram reply in `vgb.serve` to its own ledger before
the reply leaves; each setup draws a fresh instance nonce at the partner, and the request label is the
bank's counter inside its sealed body (a clear label that differs is refused, a replayed one too).
The histogram epsilon assumes the bank follows the protocol: a malicious bank choosing arbitrary node
row sets or split queries reads partner bins exactly. Held-out evaluation (`vgb.score_start` with
aligned rows) follows `sampan.vertical.rows`: the dataset's fixed test rows, each model once. The per-tree training and
validation log-loss the coordinator sees are over the dataset's pinned training and validation customers (one set each,
across runs: review R12-1). The partner states its sigma inside the sealed reply; the bank checks it against the agreed
`hist_noise` and takes the totals-check tolerance from it alone. Each partner reports its own account
(`VerticalGBDTResult.privacy`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.crypto.channel import SealedChannels
from sampan.crypto.dealer import DealerStream
from sampan.models.gbdt import (
    FeatureSlot,
    GBDTModel,
    GBDTParams,
    HistRequest,
    RouteRequest,
    SplitRequest,
    bin_matrix,
    boost,
    gain_importance,
    make_slots,
    named_importance,
    quantile_bin_edges,
)
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.privacy.randomness import secure_generator
from sampan.vertical.gbdt_bank import BankState, collect_answers
from sampan.vertical.gbdt_coordinator import (
    COVERS,
    NOT_COVERED,
    VerticalGBDTResult,
    gbdt_histogram_privacy,
    histogram_sensitivity2,
    score_vertical_gbdt,
    train_vertical_gbdt,
)
from sampan.vertical.gbdt_scoring import GBDTScoring, split_directions
from sampan.vertical.gbdt_views import REVEALS, VIEWS
from sampan.vertical.histograms import (
    HistogramAccount,
    encode_values,
    partner_level_sums,
    sealed_nonce,
    secret_permutation,
    sigma_label,
    tree_masks,
)
from sampan.vertical.rows import MIN_EVALUATION_ROWS, RunRows, check_splits, per_run
from sampan.vertical.secure_lr import receive
from sampan.wire import Message

log = logging.getLogger(__name__)

__all__ = ["VerticalGBDTParty", "train_vertical_gbdt", "COVERS", "NOT_COVERED", "VerticalGBDTResult", "REVEALS",
           "VIEWS", "score_vertical_gbdt", "gbdt_histogram_privacy", "histogram_sensitivity2"]


def _perm_label(bank: str, partner: str, nonce: bytes) -> str:
    return sigma_label("gbdt", bank, partner, nonce)


@dataclass
class _PartnerState:
    bins: np.ndarray      # uint8 (training rows x features), column-major: the only copy of the partner's rows
    bins_val: np.ndarray
    edges: list[np.ndarray]
    n_bins: list[int]
    total: int
    dealer: DealerStream
    thresholds: dict[tuple[int, int], tuple[int, int, bool]] = field(default_factory=dict)
    hist_noise: float = 0.0
    masked: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), dtype=np.uint64))
    instance: str = ""  # the partner's own nonce for this protocol instance (drawn at vgb.setup)
    delta: float = 1e-5


class VerticalGBDTParty(GBDTScoring):
    """Handlers for both roles; `aligned` gives the party's aligned rows (after PSI)."""

    def __init__(self, name: str, X_aligned: Callable[[], np.ndarray], y_aligned: Callable[[], np.ndarray | None],
                 feature_names: list[str], channels: Callable[[], SealedChannels], *,
                 ids: np.ndarray | None = None, X_full: np.ndarray | None = None,
                 aligned_rows: Callable[[], np.ndarray | None] | None = None, y_full: np.ndarray | None = None,
                 policy: PartyPrivacyPolicy | None = None, run_rows: Callable[[str], RunRows] | None = None) -> None:
        self.name = name
        self._run_rows = run_rows or per_run(name)  # the run's row rules, shared with the party's other protocols
        self.policy = policy or PartyPrivacyPolicy()  # min noise, DP required or not, this party's own ledger
        self._account = HistogramAccount()          # partner: its noised histogram releases over the run
        self.privacy: dict[str, Any] = {}
        self._ids, self._X_full, self._aligned_rows, self._y_full = ids, X_full, aligned_rows, y_full
        self._index: dict[str, int] | None = None
        self.results: dict[str, list[dict[str, Any]]] = {}
        self._scoring: dict[str, tuple[np.ndarray, list[str], float, np.ndarray]] = {}
        self._X, self._y, self.feature_names, self._channels = X_aligned, y_aligned, feature_names, channels
        self.bank: BankState | None = None
        self.partner: _PartnerState | None = None
        self.model: GBDTModel | None = None       # bank: trees, owners, leaves
        self.importance: dict[str, float] = {}    # bank: gain importance, "party: feature" (saved with its part)
        self.thresholds: dict[tuple[int, int], tuple[int, int, bool]] = {}  # own splits: (feature, bin, missing left)
        self.edges: list[np.ndarray] = []
        self._bank_prep: tuple[np.ndarray, np.ndarray, list[FeatureSlot], np.ndarray, np.ndarray] | None = None
        self._hist_noise = 0.0

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {"vgb.setup": self.setup, "vgb.start": self.start, "vgb.step": self.step, "vgb.serve": self.serve,
                "vgb.score_start": self.score_start, "vgb.score_partial": self.score_partial,
                "vgb.score_finish": self.score_finish}

    # --- setup ----------------------------------------------------------------------------------------
    def setup(self, msg: Message) -> Message:
        """Bin own columns on own training rows; a partner gives the dealer its bins in secret order."""
        n_bins = int(msg.meta["n_bins"])
        X, at = self._table()
        train, val = check_splits(self.name, msg.arrays["train_rows"], msg.arrays["val_rows"], len(at) if at is not None
                                  else len(X))
        t_rows, v_rows = (train, val) if at is None else (at[train], at[val])  # rows of X itself
        bank = self._channels().require_role(str(msg.meta["bank"]), "label_holder", "vgb.setup")
        # beta once per run, for one row set; training and validation customers (whose per-tree log-loss the
        # coordinator sees) pinned per dataset (review R12-1)
        self._run_rows(msg.run_id).bind_splits("vgb.setup", train, val)
        self.edges = [quantile_bin_edges(X[t_rows, j], n_bins) for j in range(X.shape[1])]
        # every feature gets a missing bin (NaN), used or not: its presence reveals nothing about the data; binned
        # block by block into uint8 (n x features bytes), never a float copy of the training rows (issue 15)
        bins = bin_matrix(X, self.edges, missing=True, rows=t_rows)
        bins_val = bin_matrix(X, self.edges, missing=True, rows=v_rows)
        slots = make_slots(self.name, self.feature_names, self.edges, missing=True)
        meta = {"n_bins": [s.n_bins for s in slots], "names": list(self.feature_names), "missing_bin": True}
        if self.name == bank:
            self._bank_prep = (bins, bins_val, slots, train, val)
            self._hist_noise = float(msg.meta.get("hist_noise", 0.0))
            return msg.reply("vgb.setup", meta=meta)
        total = int(sum(s.n_bins for s in slots))
        hist_noise = float(msg.meta.get("hist_noise", 0.0))
        instance = secrets.token_hex(16)  # this party's nonce: releases of this instance are answered once
        # the policy at setup (a refusal before the dealer gets beta; count=0: nothing charged yet), and again,
        # charged, for every release in vgb.serve
        self.policy.admit_histograms(self.name, "gbdt", instance=instance, release="setup", sigma=hist_noise,
                                     sensitivity2=histogram_sensitivity2(len(slots)), count=0)
        self.partner = _PartnerState(bins, bins_val, self.edges, [s.n_bins for s in slots], total,
                                     DealerStream(bytes(msg.arrays["dealer_seed"])),
                                     hist_noise=hist_noise, instance=instance,
                                     delta=float(msg.meta.get("dp_delta", 1e-5)))
        # a fresh secret row order per setup (this partner's nonce, sealed to the bank, is in the PRG label)
        nonce = secrets.token_bytes(16)
        sigma = secret_permutation(self._channels().prg(bank, _perm_label(bank, self.name, nonce), len(train)))
        beta = np.empty(bins.shape, dtype=bins.dtype, order="F")
        beta[sigma] = bins
        sealed = self._channels().seal_arrays(bank, {"sigma_nonce": np.frombuffer(nonce, dtype=np.uint8)})
        return msg.reply("vgb.setup", {"beta": beta, f"to:{bank}": sealed}, meta)

    def _table(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The party's table and its aligned rows, so binning reads the table in place (no aligned float copy);
        the aligned view itself where the party gave no full table."""
        aligned = self._aligned_rows() if self._aligned_rows is not None else None
        if self._X_full is not None and aligned is not None:
            return self._X_full, np.asarray(aligned, dtype=np.int64)
        return self._X(), None

    def start(self, msg: Message) -> Message:
        """Bank: learn the partners' feature slots, start the learner."""
        if self._bank_prep is None:
            raise ValueError(f"party {self.name!r}: vgb.setup must come before vgb.start")
        bins, bins_val, own_slots, setup_train, setup_val = self._bank_prep
        partners = list(msg.meta["partners"])
        slots = {self.name: own_slots}
        for p in partners:
            names, nb = msg.meta["slots"][p]["names"], msg.meta["slots"][p]["n_bins"]
            missing = bool(msg.meta["slots"][p].get("missing_bin", False))
            offs = np.concatenate([[0], np.cumsum(nb)[:-1]]).astype(int)
            slots[p] = [FeatureSlot(p, j, names[j], int(nb[j]), int(offs[j]), missing) for j in range(len(nb))]
        y = self._y()
        if y is None:
            raise ValueError(f"party {self.name!r} has no labels: only the label holder runs the learner")
        train, val = msg.arrays["train_rows"], msg.arrays["val_rows"]
        if not (np.array_equal(train, setup_train) and np.array_equal(val, setup_val)):
            raise ValueError(f"party {self.name!r}: vgb.start names other training or validation rows than vgb.setup")
        if 0 < len(val) < MIN_EVALUATION_ROWS:  # the coordinator sees the validation log-loss after every tree
            raise ValueError(f"party {self.name!r}: refusing {len(val)} validation rows; the per-tree validation loss "
                             f"the coordinator sees needs at least {MIN_EVALUATION_ROWS} rows (or none)")
        params = GBDTParams(**msg.meta["params"])
        gen = boost(params, y[train].astype(float), slots, y_val=y[val].astype(float) if len(val) else None)
        ch = self._channels()
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, ch, inbox)
        sigma = {p: secret_permutation(
                     ch.prg(p, _perm_label(self.name, p, sealed_nonce(inbox, p, self.name, "vgb.start")), len(train)))
                 for p in partners}
        self.bank = BankState(gen, None, bins, bins_val, self.edges, slots, partners,
                               bytes(msg.arrays["dealer_seed"]), sigma, len(train), hist_noise=self._hist_noise)
        return msg.reply("vgb.started", meta={"features": {o: len(s) for o, s in slots.items()}})

    # --- the bank's loop ------------------------------------------------------------------------------
    def step(self, msg: Message) -> Message:
        """Bank: fold in the answers to the last request, run the learner to its next request."""
        st = self._bank()
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        answer = None if st.request is None else collect_answers(self.name, st, inbox, msg.arrays)
        try:
            st.request = st.gen.send(answer)
        except StopIteration as stop:
            st.model, self.model, self.thresholds = stop.value, stop.value, st.thresholds
            names = {o: [s.name for s in slots] for o, slots in st.slots.items()}
            self.importance = named_importance(gain_importance(stop.value.trees), names)
            return msg.reply("vgb.done", meta={"trees": len(stop.value.trees),
                                               "best_iteration": stop.value.best_iteration,
                                               "history": stop.value.history, "importance": self.importance})
        st.counter += 1
        return self._dispatch(st, msg)

    def _dispatch(self, st: BankState, msg: Message) -> Message:
        ch, req, label = self._channels(), st.request, f"{st.counter}"
        out: dict[str, np.ndarray] = {}
        involved: list[str] = []
        if isinstance(req, HistRequest):
            new_tree = st.masked_tree != req.tree_index
            if new_tree:
                g, h = encode_values(req.g), encode_values(req.h)
            for p in st.partners:
                body: dict[str, np.ndarray] = {"label": np.array([st.counter], dtype=np.int64),
                                               "nodes": np.array([n for n, _ in req.nodes], dtype=np.int64),
                                               "sizes": np.array([len(r) for _, r in req.nodes], dtype=np.int64),
                                               "rows": np.concatenate([r for _, r in req.nodes]).astype(np.int64)}
                if new_tree:  # (g, h) of every row, masked once for the whole tree
                    _, a = tree_masks(st.dealer_seed, f"gbh/{p}/{req.tree_index}", st.sigma[p])
                    body["v"] = np.stack([g + a[0], h + a[1]])
                # the dealer gets each node's positions, sorted (not sealed: it is meant for the dealer)
                out[f"dealer:{p}"] = np.concatenate([np.sort(st.sigma[p][r]) for _, r in req.nodes]).astype(np.int64)
                out[f"dealer_sizes:{p}"] = body["sizes"]
                out[f"to:{p}"] = ch.seal_arrays(p, body)
                involved.append(p)
            st.masked_tree = req.tree_index
        elif isinstance(req, SplitRequest):
            for p in st.partners:
                mine = [(node, rows, f, b) for node, rows, owner, f, b in req.splits if owner == p]
                if mine:
                    body = {"label": np.array([st.counter], dtype=np.int64),
                            "split": np.array([[node, f, b, int(req.missing_left.get(node, False))]
                                               for node, _, f, b in mine], dtype=np.int64),
                            "tree": np.array([req.tree_index], dtype=np.int64)}
                    for node, rows, _, _ in mine:
                        body[f"rows:{node}"] = rows.astype(np.int64)
                    out[f"to:{p}"] = ch.seal_arrays(p, body)
                    involved.append(p)
        elif isinstance(req, RouteRequest):
            for p in st.partners:
                nodes = req.tree.owned_by(p)
                if nodes:
                    out[f"to:{p}"] = ch.seal_arrays(p, {
                        "label": np.array([st.counter], dtype=np.int64), "route": np.array(nodes, dtype=np.int64),
                        "tree": np.array([req.tree_index], dtype=np.int64),
                        "val": np.array([int(req.validation)], dtype=np.int64), "rows": req.rows.astype(np.int64)})
                    involved.append(p)
        return msg.reply("vgb.request", out, {"kind": type(req).__name__, "partners": involved, "label": label,
                                              "tree": getattr(req, "tree_index", None)})

    # --- partners -------------------------------------------------------------------------------------
    def serve(self, msg: Message) -> Message:
        """Partner: answer the bank's sealed request (histogram sums, partitions or directions)."""
        st = self._partner()
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        bank = self._channels().require_role(str(msg.meta["bank"]), "label_holder", "vgb.serve")
        body = {name: v for (sender, name), v in inbox.items() if sender == bank}
        label = self._sealed_label(st, body, msg)
        out: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        if "nodes" in body:
            if "v" in body:
                st.masked = body["v"]  # this tree's masked (g, h) of every row
            nodes = np.split(body["rows"], np.cumsum(body["sizes"])[:-1])
            sens2 = histogram_sensitivity2(len(st.n_bins))
            # checked and charged (write-ahead) before the sums exist; a replayed label is refused
            self.policy.admit_histograms(self.name, "gbdt", instance=st.instance, release=label, sigma=st.hist_noise,
                                         sensitivity2=sens2, count=len(nodes))
            pads = st.dealer.draw(f"gbr/{label}", 2 * st.total * len(nodes)).reshape(len(nodes), 2, st.total)
            noise = None
            if st.hist_noise > 0:
                noise = encode_values(secure_generator().normal(0.0, st.hist_noise, (len(nodes), 2, st.total)))
                self.privacy = {**self._account.add(len(nodes), sens2, st.hist_noise, st.delta),
                                "ledger": self.policy.account(self.name)}
                meta = {"privacy": self.privacy}
            out["s"] = partner_level_sums(st.bins, st.n_bins, st.masked, nodes, pads, noise)
            out["sigma"] = np.array([st.hist_noise])  # sealed: the bank's check tolerance comes from this alone
        elif "split" in body:
            tree = int(body["tree"][0])
            for node, f, b, missing_left in body["split"]:
                key = (tree, int(node))
                self.thresholds[key] = (int(f), int(b), bool(missing_left))
                left = split_directions(st.bins, self.thresholds, st.edges, [key], rows=body[f"rows:{int(node)}"])
                out[f"left:{int(node)}"] = left[:, 0].astype(np.uint8)
        elif "route" in body:
            tree = int(body["tree"][0])
            bins = st.bins_val if int(body["val"][0]) else st.bins
            keys = [(tree, int(n)) for n in body["route"]]
            out["route"] = split_directions(bins, self.thresholds, st.edges, keys, rows=body["rows"]).astype(np.uint8)
        return msg.reply("vgb.served", {f"to:{bank}": self._channels().seal_arrays(bank, out)}, meta)

    def _sealed_label(self, st: _PartnerState, body: dict[str, np.ndarray], msg: Message) -> str:
        """The request's label from the bank's sealed body (a counter it increments), never the coordinator's.

        The replay refusal and the dealer pad are keyed on it: a sealed request re-sent under another clear
        label is refused here, a replayed one by the policy."""
        if "label" not in body or np.asarray(body["label"]).size != 1:
            raise ValueError(f"party {self.name!r}: vgb.serve without the bank's sealed request label")
        counter = int(np.asarray(body["label"]).ravel()[0])
        if str(counter) != str(msg.meta.get("label")):
            raise ValueError(f"party {self.name!r}: vgb.serve: the clear label {msg.meta.get('label')!r} is not the "
                             f"bank's sealed label {counter}")
        return str(counter)  # a replayed counter is refused by the policy (`admit_histograms`, per release)

    # --- persistence: each party stores only its own part ---------------------------------------------
    def _bank(self) -> BankState:
        if self.bank is None:
            raise ValueError(f"party {self.name!r}: vertical GBDT not started (vgb.setup/vgb.start first)")
        return self.bank

    def _partner(self) -> _PartnerState:
        if self.partner is None:
            raise ValueError(f"party {self.name!r}: vertical GBDT not set up as a partner (vgb.setup first)")
        return self.partner
