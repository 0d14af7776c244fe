"""Secure vertical logistic regression: party side.

Setting: a label holder (the bank) and one or more feature holders, aligned by PSI so that row i is
the same customer everywhere. Each party keeps its own columns. Two modes:

* **shared weights** (the default, ``VerticalLRConfig.shared_weights``): each party's weights are
  additive shares between the party and a residual holder (its *co-holder*: the helper for the bank,
  the bank for every other party), the gradient stays shared, and only the final weights are opened,
  each to its owner. No party sees a plaintext gradient.
* **plaintext gradient** (``shared_weights = false``): each party keeps its weights in the clear and
  sees its gradient X_p^T r every batch. Over many epochs a party can solve for the residuals and
  hence the labels (demonstrated once epochs x d_p >~ batch size: AUC 0.9999 at batch 64, 6
  columns, 20 epochs), so the configuration is refused once epochs x d_max >= batch_size unless it
  says ``allow_gradient_label_leakage = true``.

Threat model: semi-honest parties that do not collude with each other or with the coordinator; the
coordinator relays sealed envelopes (keys signed by each organisation, see `vertical.party`) and deals
correlated randomness (`sampan.crypto.dealer`). The combined logit z and the residual
r = sigma~(z) - y exist only as additive shares in Z_2^64 between the bank (holder 0) and one feature
holder (holder 1, "the helper").

What each role learns
---------------------
* **Every party p, shared weights**: its own final weights, opened to it once, at the end, and only
  from a checkpoint taken at an epoch boundary (at least one complete training epoch, no update
  pending: the co-holders refuse anything else, since weights opened after one batch are -lr g / n,
  the plaintext gradient). **Each secure-LR instance opens one more weight vector**, and two
  instances on row sets that differ tell a party how its trained weights differ; so each party joins
  at most ``max_lr_instances`` instances per run (default 2: the LR and the scorecard's LR; counted
  per run, persisted by a deployed party, not per channels). Per batch it learns
  nothing: its weight share, its gradient share (X_p^T f + C_p, uniform because C_p is a
  dealer mask the other side's share cancels), the masked residual f = r_Q - a and the co-holder's
  masked weight share w^(h) - b are all uniform. The co-holder's side of the same products (E, the
  dealer's U b - D and the q pieces) is one-time padded. Stacking its view across epochs tells a
  partner nothing beyond what its final model says (`tests/attacks/test_secure_lr_gradient_stacking.py`).
* **Every party p, plaintext gradient**: its own weights and, per training batch, its gradient X_p^T r:
  that is **d_p linear projections of the batch's residual** (d_p = its number of columns, the bank's
  intercept column included) and nothing else about r; **over many epochs a party can solve for the
  residuals and hence the labels** (the projections of a slowly drifting residual pile up: demonstrated
  once epochs x d_p >~ batch size). Because d_p projections determine r when a
  batch has no more rows than d_p, every training batch has at least ``min_batch_rows`` =
  max(4 d_max, 64) distinct rows, the batches of an epoch partition the training rows (the short tail
  is merged into the previous batch), and the holders refuse a schedule that breaks either rule.
  A feature holder that is neither bank nor helper receives X_p^T r as two pieces X_p^T r_0 and
  X_p^T r_1; each share r_i is uniform, so the pair tells it no more than their sum.
* **The bank and the helper** also see the openings delta = z - a and c = x + 2^62 + t (sealed
  between the two of them), uniform because a and t are dealer masks they do not know; with shared
  weights also the truncation openings of the summed logit and (between each owner and its co-holder)
  of each weight update, masked the same way.
* **The coordinator (relay and dealer)** learns the row count, the batch schedule, every party's
  number of columns and one aggregate per epoch: the validation surrogate Brier score (the mean
  squared residual of the polynomial sigmoid over all validation rows, opened once per epoch under a
  pairwise zero-sum pad). Early in training that score is close to p(1 - p) for the validation
  positive rate p, so it also reveals **the validation positive count, approximately**. The
  residual holders own validation: they refuse validation rows that overlap the training rows,
  repeat, or number fewer than ``min_batch_rows``; validation batches follow the training batches'
  partition rule; the holders decide locally when the pass is complete (every validation row used
  exactly once) and open only then, at most once per complete training epoch and never before the
  first. It sees no opening: every masked value travels sealed.
* Nobody sees a label, a feature, a partial logit or a share of r in clear; no share of r is sent to
  any party except masked by dealer randomness that party does not know.

Shared weights (the default)
----------------------------
Weights live at 2^-24 in Z_2^64 as w_p = w_p^(p) + w_p^(h). Per batch, before the forward wave:

1. ``vlr.wupdate`` applies the previous batch's step on shares: x = (lr/n) G + lr l2 w (at 2^-56,
   L2 not on the intercept) from each side's gradient share G, and opens x + 2^62 + t between owner and
   co-holder for the exact dealer-assisted truncation to 2^-24 (`ring.truncate_shares`); of the d + k
   dealt triples the pair's PRG picks which serve which weight and which k the co-holder audits.
2. ``vlr.wshare`` finishes the truncation; the co-holder sends the owner w^(h) - b (b fresh per batch,
   from its dealer stream).
3. ``vlr.forward``: the owner's share of X_p w_p is X_p w^(p) + U (w^(h) - b) + D and the co-holder's
   is E w^(h) + (U b - D) from the dealer (E = X_p - U, the pads sealed at setup; a second pad covers
   the validation rows). Shares of z at 2^-40 reach the two holders as before, who open z + 2^62 + t
   and (``vlr.ztrunc``) truncate it to the polynomial's 2^-5 before opening delta; the dealt logit
   truncation triples are audited with the others.
4. The gradient is the Beaver product below with the output left shared: the owner keeps
   X_p^T f + C_p (+ its own X^T r_own), the holder's q = E^T a + C_Q goes to the owner's co-holder
   instead of to the owner.

At the end (``vlr.wopen``) each co-holder sends its shares of the checkpointed weights to their
owners, once; checkpoints are taken only at an epoch boundary (after at least one complete training
epoch, no update pending) and the instance then refuses every further step, so a coordinator cannot
open weights between steps (which would give plaintext gradients back).

Range: partial logits are not clipped (they are shares). What keeps the sigmoid polynomial in range is
that every party's standardised features are clipped to +-8 (`model.FEATURE_CLIP`, public), each step
moves a weight by at most lr (8 max|r| + l2 |w|), and L2 pulls weights back; this bounds growth per
step but does not prove |z| <= 8 (the fit range) for every row. A summed logit beyond the ring's
capacity (|z| ~ 60) makes residuals wrap; beyond the fit range the polynomial leaves [0, 1]. Either
drives the opened validation score outside [0, 1] (a wrapped sum decodes negative), which no
probability score reaches: training then stops with an error (lower learning_rate or raise l2)
instead of keeping a wrapped epoch as the best. The parties cannot range-check z themselves (they
see it only masked); this is an integrity check, not a privacy one.
learning_rate <= 2 and lr x l2 <= 1/64 keep the update
itself inside the truncation's exact range. Three extra waves per batch (six, or seven with other
feature holders); measured on Taiwan default (2 parties, batch 512): 1.9-2.4x the epoch time of the
plaintext-gradient mode, AUC within 0.003 of pooled plaintext LR.

The gradient step (a matrix Beaver product with re-shared output)
----------------------------------------------------------------
For every party p and every holder Q != p (the bank for the helper, the helper for the bank, both for
any other feature holder) p wants X_p^T r_Q. At setup p seals E = X_p - U to Q, where U is a pad only
p and the dealer know (drawn from p's dealer stream, one per Q). Per batch, Q draws a fresh mask a
(from its dealer stream), sends f = r_Q - a and q = E^T a + C_Q, where the dealer gave Q
C_Q = U^T a - C_p and p draws C_p itself. Then X_p^T f + q + C_p = X_p^T (r_Q - a) + X_p^T a =
X_p^T r_Q. p never holds U^T a (only the uniform C_p), so it cannot project r on its pad; Q holds E
(one-time padded) and a, and C_Q, uniform because C_p is.

What a malicious dealer can do (the coordinator, if it deviates)
-----------------------------------------------------------------
* **Corrupt**: every dealt value that travels is arbitrary (the helper's halves of the powers of a, of
  the truncation triples and of the square pairs; every gradient correction C_Q; with shared weights
  the co-holders' halves of the weight-update triples and the logit corrections U b - D), so it can
  bias any party's gradient and falsify the validation score: training integrity rests on the
  dealer. Errors in powers and in every truncation triple (residual, logit and weight update) are
  caught by the audits below; errors in C_Q (a party's gradient), in U b - D and in the square pair's
  offset (the reported score) are not detectable without a second dealer.
* **Learn alone**: it sees no opening (all are sealed between parties under signed run keys, finding
  5). Its one output is the opened validation aggregate, and inconsistent powers or truncation triples
  would turn it into a readout of chosen rows (adding e to one row's truncation share makes the sum
  move by -2 e r_k: that row's residual, label and score). **Checked**: every batch is dealt
  audit_count(n) ~ n/8 extra tuples; the holders pick which to sacrifice from their pairwise PRG (the
  dealer cannot compute it), the bank sends its halves of those to the helper, and the helper checks
  a^k and (t, t >> s, msb t) and aborts on any mismatch. Which dealt tuple serves which row is drawn
  from the same PRG, and validation rows are processed in a secret order, so a corrupted tuple never
  lands on a row the dealer can name. Each corrupted tuple is caught with probability ~1/9 (escapes
  with ~8/9; m of them with ~(8/9)^m); an escaped one can shift the epoch's one opened score by the
  residual of an unnamed row. **A failed audit is sticky**: the auditing holder records it (persisted
  by a deployed party, logged) and refuses every later secure-LR instance of the run, so a dealer
  gets about 8 corrupted tuples through on average in the whole run, not per instance. The square
  pair needs no audit: its result is sum r^2 + (B - A^2), an offset independent of the data.
  Gradient corrections C_Q feed only a party's own weights, hence the score only as an aggregate.
* **Weight-update truncations (shared weights), checked**: a lying msb in the triple of one weight
  turns its truncation into a comparison of the secret update (for the bank's intercept: the
  batch's residual sum) that shows in the score. So every owner and batch is dealt d + k triples
  (k = audit_count(d)); the owner and its co-holder assign them to weights and pick the k to
  sacrifice from their pairwise PRG (the dealer can aim at no weight, the intercept included), and
  the co-holder checks the owner's and its own halves of the sacrificed ones before any truncation
  is used; a failure is sticky as above.
* **Shared weights add one dealt value that is not audited**: the co-holder's logit correction
  U b - D (per row). A wrong correction shifts one row's logit; at a validation position that would
  read a label through the score, so validation rows are
  processed in a secret order (`validation_order`, derived from the instance nonce with the holders'
  sealed contributions): the dealer can shift position k but cannot name the row there, so what it
  reads is the label of an unknown row (`tests/attacks/test_secure_lr_shared_dealer.py`). A zero (or
  known) mask in a weight-update truncation shows the co-holder that party's update (its gradient),
  and a zero mask b shows the owner the co-holder's weight share: gifts to a holder that the dealer
  itself learns only by colluding with it.
* **Learn with a party**: the dealer knows every pad U and mask a, so a dealer colluding with a data
  party opens what that party holds masked (E -> X_p; delta -> z; c -> the residual). Non-collusion is
  load-bearing and cannot be checked.
* **Also checked by the parties**: a dealer seed or a coordinator instance nonce used twice in a run is
  refused (per run, whatever the channels; persisted by a deployed party), a second ``vertical.hello``
  in a run is refused (`vertical.party`), every party mixes its own fresh nonce into its dealer seed
  (its streams use H(seed | party nonce), the nonce returned at setup for the dealer to bind), so
  no seeded pad or mask repeats even under a repeated seed, and the instance nonce includes each
  residual holder's own fresh randomness, so pairwise PRG streams never repeat.
  This does **not** stop a malicious dealer from dealing the same
  mask values again under fresh seeds (it chooses the non-seeded halves freely): the two holders would
  then see differences of masked values (e.g. z_1 - z_2 from two deltas). The dealer itself learns them
  only by colluding with a holder, which already opens everything that holder sees masked. A degenerate
  mask (an opened delta, or every opened c of a batch, inside the small range an unmasked value
  occupies) is refused; batches below
  ``min_batch_rows``, repeated rows and batches that re-use rows within an epoch are refused.

Protocol instances: every training (the main LR, the scorecard's LR, every resume) gets a fresh
``instance`` nonce, H(coordinator nonce | bank nonce | helper nonce), where each residual holder draws
its own contribution at setup and seals it to every other party; the instance is part of every
pairwise PRG label (``vlr/<instance>/z/<t>``, ``vlr/<instance>/pad``, ``vlr/<instance>/audit``,
``vlr/<instance>/waudit``), so a repeated stream needs a holder's cooperation. Every training also
gets fresh dealer seeds, each bound to the party's own fresh nonce; a party refuses a coordinator
nonce or seed it has seen in the run (`sampan.vertical.lr_runs`: per run id, not per channels;
persisted by a deployed party), instances beyond its cap, every instance after a failed audit, and
a batch index that does not increase within an instance. `vertical.peers` is one-shot per
`vertical.hello` (the private key is dropped once channels are derived), so a replayed key exchange
cannot rebuild channels with the same PRG keys.

In plaintext-gradient mode one minibatch costs four message waves (three with one feature holder);
shared weights add ``vlr.wupdate`` and ``vlr.wshare`` before and ``vlr.ztrunc`` after the forward wave:

1. ``vlr.forward`` every party computes its clipped partial logit on the batch rows. Other feature
   holders split theirs (bank's half from the pairwise PRG, helper's half in an envelope); the bank
   opens its half of delta = z - a to the helper. Pending gradient pieces of the previous batch are
   applied first.
2. ``vlr.share`` (only with two or more feature holders) the helper adds the envelopes and opens its
   half of delta to the bank.
3. ``vlr.poly`` both holders expand shares of z^1..z^5 from delta (`ring.power_shares`), evaluate the
   sigmoid polynomial, subtract y (bank), and open c = x + 2^62 + t for exact truncation.
4. ``vlr.trunc`` both get shares of r at 2^-16 and send every other party its Beaver pieces (f, q).

Validation (early stopping) runs waves 1-4 without a gradient, then squares r with a dealer square
pair; each holder accumulates its share of the sum of squares over the validation pass and opens the
total (to the coordinator, under a pairwise zero-sum pad) only when the pass is complete.

`PlainVerticalLR` (insecure: partial logits and the residual travel in clear) exists only as the
benchmark baseline for the cost of the cryptography.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sampan.crypto.channel import SealedChannels, prg_uint64
from sampan.crypto.dealer import DealerStream, bind_seed
from sampan.errors import PartyError
from sampan.vertical.lr_runs import LRRuns
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.crypto.ring import (
    SIGMOID_POLY, TRUNC_OFFSET, decode, encode, poly_shares, to_signed, truncate_shares,
)
from sampan.vertical.rows import check_splits
from sampan.wire import Message

__all__ = ["SecureLRParty", "FEATURE_BITS", "RESIDUAL_BITS", "WEIGHT_BITS", "Roles", "min_batch_rows", "audit_count",
           "BatchRuleError", "REVEALS", "reveals", "weight_triples"]

def reveals(shared_weights: bool) -> str:
    """The receipt text for secure vertical LR in the given mode (what each role learns)."""
    mode = (
        "Weights are kept secret-shared (shared_weights): no party sees a plaintext gradient or its weights during "
        "training; each party learns only its own final weights, opened to it at the end from a checkpoint taken "
        "after a complete training epoch (never mid-epoch). Each secure-LR instance opens one more weight vector "
        "to each party, so each party joins at most 2 instances per run by default (the LR and the scorecard's "
        "LR). "
        if shared_weights else
        "Plaintext-gradient mode (shared_weights = false): each party sees its plaintext gradient; over many epochs "
        "a party can solve for the residuals and hence the labels (demonstrated once epochs x d_p >~ batch size); "
        "use shared_weights when labels must stay private. Per training batch the gradient X_p^T r is d_p linear "
        "projections of that batch's residual (d_p = the party's number of columns, the bank's intercept "
        "included); each party learns its own weights. ")
    return _REVEALS_HEAD + mode + _REVEALS_TAIL + (_REVEALS_SHARED_DEALER if shared_weights else "") + _REVEALS_END


_REVEALS_HEAD = (
    "Secure vertical LR (semi-honest parties; the coordinator relays envelopes sealed under signed run keys "
    "and deals correlated randomness, and colludes with no data party): the label and every party's features, "
    "partial logits and residual shares stay private. ")
_REVEALS_TAIL = (
    "Every batch has at least max(4 x widest party's columns, 64) distinct rows and an epoch's batches partition "
    "the training rows, which the residual holders enforce. The coordinator learns the row count, the batch "
    "schedule, each party's column count and "
    "one aggregate per epoch: the validation surrogate Brier score (mean squared residual of the polynomial "
    "sigmoid over all validation rows, opened by the residual holders only after a complete training epoch and "
    "a complete pass over validation rows disjoint from the training rows), which decides early stopping and "
    "also reveals the validation positive count approximately. A malicious dealer can bias gradients "
    "and the reported score; a dealer that corrupts the tuples behind the opened score (to read chosen rows) "
    "is caught by the holders' audit of 1/8 sacrificed tuples per batch with probability ~1/9 per corrupted "
    "tuple, and a failed audit ends secure LR for the rest of the run (every later instance is refused); reused "
    "dealer seeds or protocol nonces within a run and unmasked openings are refused, and each party mixes its own "
    "fresh nonce into its dealer seed, so no seeded pad repeats (a malicious dealer can still "
    "deal the same mask values under fresh seeds, which shows the two residual holders differences of masked values; "
    "it learns them itself only by colluding with a holder). Validation rows are processed in a per-instance order "
    "the coordinator cannot compute, so a corrupted dealt value at a validation position hits a row it cannot name")
_REVEALS_SHARED_DEALER = (
    " (with shared weights the weight-update truncations are audited the same way, assigned to weights by each "
    "owner and co-holder so the dealer cannot aim at one; the per-row logit corrections are not audited: a "
    "malicious dealer can bias training and the score through them at validation positions it cannot link to a "
    "row)")
_REVEALS_END = (
    ". Evaluation on held-out rows reveals the final scores of those rows to the bank, exactly as scoring them would.")
REVEALS = reveals(True)  # the default mode

FEATURE_BITS = 16
RESIDUAL_BITS = 16
POLY = SIGMOID_POLY
TRUNC_SHIFT = POLY.out_bits - RESIDUAL_BITS
MIN_BATCH_ROWS = 64
ROWS_PER_COLUMN = 4
AUDIT_FRACTION = 0.125   # dealt tuples opened and checked, per batch
# shared weights: weights at 2^-24; shared partial logits X w at 2^-40, truncated to the polynomial's 2^-5;
# the update M g + L w at 2^-56 (M = lr/n at 2^-24, L = lr l2 at 2^-32), truncated to 2^-24
WEIGHT_BITS = 24
Z_SHIFT = FEATURE_BITS + WEIGHT_BITS - POLY.in_bits
STEP_BITS = 24
DECAY_BITS = 32
W_SHIFT = FEATURE_BITS + RESIDUAL_BITS + STEP_BITS - WEIGHT_BITS


def audit_count(n: int) -> int:
    """Extra dealt tuples per batch of n rows that the holders sacrifice to check the dealer (at least 2)."""
    return max(2, int(np.ceil(AUDIT_FRACTION * n)))


def weight_triples(d: int) -> int:
    """Weight-update truncation triples dealt per owner and batch: one per weight plus audit_count(d) to sacrifice."""
    return d + audit_count(d)



def min_batch_rows(max_columns: int) -> int:
    """The fewest rows a training batch may have when the widest party has `max_columns` columns.

    Why: a party's gradient X_p^T r is d_p linear projections of the batch's residual; with no more
    rows than d_p it solves for r (and the labels). Four rows per column leaves r underdetermined.
    """
    return max(ROWS_PER_COLUMN * int(max_columns), MIN_BATCH_ROWS)


class BatchRuleError(PartyError, ValueError):
    """A holder refuses a training batch that would let a party solve its gradient for the residual."""


@dataclass(frozen=True)
class Roles:
    """Who is who in one secure LR run (public to all parties)."""

    bank: str
    helper: str
    others: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return (self.bank, self.helper, *self.others)

    @property
    def holders(self) -> tuple[str, str]:
        return (self.bank, self.helper)

    def co_holder(self, party: str) -> str:
        """Shared weights: the residual holder that holds the other share of `party`'s weights."""
        return self.helper if party == self.bank else self.bank

    def holders_for(self, party: str) -> list[str]:
        """The residual holders that send `party` Beaver pieces of X_p^T r_Q (every holder but itself)."""
        return [q for q in self.holders if q != party]

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
    instance: str                     # this protocol instance's nonce: part of every pairwise PRG label
    run_id: str = field(default="", init=False)
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
    E: dict[str, np.ndarray] = field(default_factory=dict)  # masked matrices of the parties I serve
    min_rows: int = MIN_BATCH_ROWS
    used: np.ndarray | None = None    # holders: training rows already in a batch this epoch
    val_used: np.ndarray | None = None  # holders: validation rows already in this validation pass
    epochs_done: int = 0              # holders: completed training epochs (partitions of the training rows)
    opened_at: int = 0                # holders: epochs_done when the validation score was last opened
    nonce: bytes = b""                # holders: this holder's own contribution to the instance nonce
    shared: bool = False              # weights kept as additive shares (nobody sees a plaintext gradient)
    X_val_fixed: np.ndarray | None = None
    w_own: np.ndarray | None = None   # shared weights: this party's share of its own weights, at 2^-WEIGHT_BITS
    co_w: dict[str, np.ndarray] = field(default_factory=dict)     # co-holder: its share of each owner's weights
    E_val: dict[str, np.ndarray] = field(default_factory=dict)    # co-holder: masked validation features of owners
    g_co: dict[str, np.ndarray] = field(default_factory=dict)     # co-holder: its gradient share per owner
    w_trunc: dict[str, tuple[np.ndarray, list[np.ndarray], int]] = field(default_factory=dict)
    w_audit: dict[str, np.ndarray] = field(default_factory=dict)  # co-holder: its halves of owners' sacrificed triples
    best_shared: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
    weights_opened: bool = False      # shared weights: the final weights went to their owners; no more training
    rows: np.ndarray | None = None    # current batch rows
    t: int = 0
    last_t: int = -1                  # batch indices strictly increase within an instance
    val: bool = False
    share_z: np.ndarray | None = None
    delta_half: np.ndarray | None = None
    c_half: np.ndarray | None = None
    r_share: np.ndarray | None = None
    val_sum: np.ndarray | None = None  # holders: running share of the epoch's validation sum of squares
    pending: tuple[np.ndarray, int] | None = None   # (rows, t) of a batch whose gradient is in flight
    local_grad: np.ndarray | None = None
    best: np.ndarray | None = None
    dealt: dict[str, list[np.ndarray]] = field(default_factory=dict)
    audit: dict[str, np.ndarray] = field(default_factory=dict)   # this holder's halves of the sacrificed tuples
    inbox: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    pads: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)  # owner: U per co-holder, drawn once

    def pad(self, holder: str, *, validation: bool = False) -> np.ndarray:
        """U: this party's one-time pad over X_fixed (or X_val_fixed) for `holder` (the dealer knows it too)."""
        key = (holder, validation)
        if key not in self.pads:  # one PRG draw per instance, not per batch (the same stream every time)
            X = self.X_val_fixed if validation else self.X_fixed
            assert X is not None
            self.pads[key] = self.dealer.draw(f"{'Uv' if validation else 'U'}/{holder}", X.size).reshape(X.shape)
        return self.pads[key]


class SecureLRParty:
    """Party-side handlers of secure vertical LR. `aligned` gives this party's rows in agreed order."""

    def __init__(self, name: str, X_aligned: Callable[[], np.ndarray], y_aligned: Callable[[], np.ndarray | None],
                 feature_names: list[str], channels: Callable[[], SealedChannels], runs: LRRuns | None = None) -> None:
        self.name = name
        self._X_aligned, self._y_aligned = X_aligned, y_aligned
        self.feature_names = feature_names
        self._channels = channels
        self.state: _TrainState | None = None
        self.part: LocalLinearPart | None = None
        self.scaler: LocalScaler | None = None
        # per run: instances joined (capped), nonces and seeds seen, a failed audit (sticky); persisted if deployed
        self.runs = runs or LRRuns(name)

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {
            "vlr.setup": self.setup, "vlr.masked_features": self.masked_features,
            "vlr.forward": self.forward, "vlr.share": self.share, "vlr.poly": self.poly,
            "vlr.trunc": self.trunc, "vlr.square": self.square, "vlr.flush": self.flush,
            "vlr.checkpoint": self.checkpoint, "vlr.wupdate": self.wupdate, "vlr.wshare": self.wshare,
            "vlr.ztrunc": self.ztrunc, "vlr.wopen": self.wopen,
        }

    # --- setup ---------------------------------------------------------------------------------
    def setup(self, msg: Message) -> Message:
        """Split the aligned rows, standardise locally, seal E = X - U to every residual holder."""
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
        st = _TrainState(
            roles=roles, instance=instance, dealer=DealerStream(bind_seed(seed, dealer_nonce)), X=X,
            X_fixed=encode(X, FEATURE_BITS),
            X_val=X_val, y=y, y_val=y_all[val_rows].astype(np.float64) if y is not None and y_all is not None else None,
            weights=weights, l2_mask=_l2_mask(len(weights), y is not None), lr=float(meta["lr"]), l2=float(meta["l2"]),
            logit_clip=float(meta["logit_clip"]),
        )
        if st.y is not None and st.y_val is not None:
            st.y_fixed, st.y_val_fixed = encode(st.y, POLY.out_bits), encode(st.y_val, POLY.out_bits)
        st.shared = bool(meta.get("shared_weights", False))
        st.run_id = msg.run_id
        if st.shared:
            st.X_val_fixed = encode(X_val, FEATURE_BITS)
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
            sealed = {"E": st.X_fixed - st.pad(q)}
            if self.name in roles.holders:
                sealed["nonce"] = np.frombuffer(st.nonce, dtype=np.uint8)
            out[f"to:{q}"] = ch.seal_arrays(q, sealed)
        out["dealer_nonce"] = np.frombuffer(dealer_nonce, dtype=np.uint8)  # the dealer binds this party's seed to it
        return msg.reply("vlr.setup", out, {"n_features": len(self.feature_names), "n_columns": int(st.X_fixed.shape[1]),
                                            "n_train": int(st.X_fixed.shape[0])})

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
        for (sender, name) in [k for k in st.inbox if k[1] == "E"]:
            st.E[sender] = st.inbox.pop((sender, name))
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
        order = validation_order(st.instance, st.X_val.shape[0])
        st.X_val = st.X_val[order]
        if st.y_val is not None and st.y_val_fixed is not None:
            st.y_val, st.y_val_fixed = st.y_val[order], st.y_val_fixed[order]
        out: dict[str, np.ndarray] = {}
        if st.shared:
            assert st.X_val_fixed is not None
            st.X_val_fixed = st.X_val_fixed[order]
            h = st.roles.co_holder(self.name)  # the validation pad, in position order as the dealer deals it
            out[f"to:{h}"] = self._channels().seal_arrays(h, {"Ev": st.X_val_fixed - st.pad(h, validation=True)})
        if self.name in st.roles.holders:
            missing = [p for p in st.roles.all if p != self.name and p not in st.E]
            if missing:
                raise ValueError(f"party {self.name!r}: no masked features from {missing}")
            widest = max([st.X_fixed.shape[1], *(e.shape[1] for e in st.E.values())])
            st.min_rows = min_batch_rows(widest)
            st.used = np.zeros(st.X_fixed.shape[0], dtype=bool)
            st.val_used = np.zeros(st.X_val.shape[0], dtype=bool)
            if st.X_fixed.shape[0] < st.min_rows:
                raise BatchRuleError(f"party {self.name!r}: {st.X_fixed.shape[0]} training rows are fewer than the "
                                     f"{st.min_rows} one batch needs (max(4 x {widest} columns, 64))")
            if st.X_val.shape[0] < st.min_rows:
                raise BatchRuleError(f"party {self.name!r}: {st.X_val.shape[0]} validation rows are fewer than the "
                                     f"{st.min_rows} one validation batch needs (max(4 x {widest} columns, 64))")
        return msg.reply("vlr.masked_features", out, meta={"min_batch_rows": st.min_rows})

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
        X = st.X_val_fixed if st.val else st.X_fixed
        assert X is not None
        h = roles.co_holder(self.name)
        wb = _take(st.inbox, self.name, h, "wb")
        if wb.shape != st.w_own.shape:
            raise ValueError(f"party {self.name!r}: the masked weight share from {h!r} has the wrong shape")
        U = st.pad(h, validation=st.val)[rows]
        Z = X[rows] @ st.w_own + U @ wb + st.dealer.draw(f"D/{h}/{t}", len(rows))
        for p, share in st.co_w.items():
            if st.val and p not in st.E_val:
                st.E_val[p] = _take(st.inbox, self.name, p, "Ev")
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

    def _check_batch(self, rows: np.ndarray) -> None:
        """Holders: a training batch has enough distinct rows and the batches of an epoch partition the rows."""
        st = self._st()
        assert st.used is not None and st.val_used is not None
        if st.val_used.any():
            raise BatchRuleError(f"party {self.name!r}: refusing a training batch in the middle of a validation pass")
        if _take_partition(self.name, "training", st.used, rows, st.min_rows):
            st.epochs_done += 1

    def _check_val_batch(self, rows: np.ndarray) -> None:
        """Holders: validation batches follow the training batches' rules and one pass follows each epoch.

        A pass starts only after a complete training epoch that followed the last opened score, so the
        coordinator gets at most one validation score per training epoch and none before the first.
        """
        st = self._st()
        assert st.used is not None and st.val_used is not None
        if not st.val_used.any() and (st.used.any() or st.epochs_done <= st.opened_at):
            raise BatchRuleError(f"party {self.name!r}: refusing a validation pass that does not follow a complete "
                                 "training epoch (one validation score per training epoch, none before the first)")
        _take_partition(self.name, "validation", st.val_used, rows, st.min_rows)

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

    def _audit_split(self, n_dealt: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Which dealt rows this batch uses and which it sacrifices, from the holders' pairwise PRG.

        The dealer deals before it could know the choice (it cannot draw the holders' pairwise stream), so
        a tuple it corrupts is opened and checked with probability audit_count(n) / n_dealt.
        """
        st = self._st()
        draw = self._channels().prg(self._other_holder(), f"vlr/{st.instance}/audit/{t}", n_dealt)
        order = np.argsort(draw, kind="stable")
        n_audit = n_dealt - len(st.rows)  # type: ignore[arg-type]
        return np.sort(order[n_audit:]), np.sort(order[:n_audit])

    def _check_audit(self, bank_a: np.ndarray, bank_t: np.ndarray, bank_tz: np.ndarray | None = None) -> None:
        """Helper: the sacrificed tuples must be powers a, a^2, ..., a^5 and truncation triples (t, t >> s, msb t)."""
        st = self._st()
        a = st.audit["a"] + bank_a
        tr = st.audit["trunc"] + bank_t
        power, ok = a[0].copy(), True
        for k in range(1, POLY.degree):
            power = power * a[0]
            ok &= bool(np.array_equal(a[k], power))
        ok &= bool(np.array_equal(tr[1], tr[0] >> np.uint64(TRUNC_SHIFT)))
        ok &= bool(np.array_equal(tr[2], tr[0] >> np.uint64(63)))
        if st.shared:
            assert bank_tz is not None
            tz = st.audit["ztrunc"] + bank_tz
            ok &= bool(np.array_equal(tz[1], tz[0] >> np.uint64(Z_SHIFT)))
            ok &= bool(np.array_equal(tz[2], tz[0] >> np.uint64(63)))
        if not ok:
            self._audit_failed(f"the dealer's correlated randomness for batch {st.t} failed the audit of sacrificed "
                               "tuples (inconsistent powers or truncation pairs)")

    def _audit_failed(self, why: str) -> None:
        """A failed audit is sticky: recorded (persisted when deployed) and logged, and every later secure-LR
        step or instance of the run is refused by this party."""
        st = self._st()
        self.runs.fail(st.run_id, why)
        self.state = None
        raise ValueError(f"party {self.name!r}: {why}: refusing to continue (and every later secure LR of this run)")

    def _weight_audit_split(self, owner: str, t: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Which of the d + k dealt update triples of `owner` serves which weight and which k are sacrificed.

        Drawn from the pairwise PRG of the owner and its co-holder, which the dealer cannot compute: it can
        neither aim a corrupted triple at one weight (the intercept) nor know which triples are checked.
        """
        st = self._st()
        partner = st.roles.co_holder(owner) if owner == self.name else owner
        n = weight_triples(d)
        order = np.argsort(self._channels().prg(partner, f"vlr/{st.instance}/waudit/{owner}/{t}", n), kind="stable")
        return order[n - d:], np.sort(order[:n - d])

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

    def _refuse_unmasked(self, opened: np.ndarray, bound: int, what: str, *, per_row: bool) -> None:
        """A dealer mask of zero would open the value itself: refuse openings that small.

        per_row: any one opening inside +-bound is refused (for delta, bound 2^12, a uniform mask lands
        there with probability 2^-51); otherwise only a batch of 4+ rows all inside it (for c, whose
        band is wider: 2^-13 per row).
        """
        small = np.abs(opened.astype(np.float64)) < bound
        if (per_row and bool(small.any())) or (len(opened) >= 4 and bool(small.all())):
            raise ValueError(f"party {self.name!r}: the opened {what} is not masked (degenerate dealer randomness)")

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
        st.local_grad = st.X_fixed[st.rows].T @ r
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
        total = st.local_grad if st.local_grad is not None else np.zeros(st.X.shape[1], dtype=np.uint64)
        X = st.X_fixed[rows]
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
        st.val_used[:] = False
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
        X = st.X_fixed[rows]
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
                st.w_own = st.w_own - u  # type: ignore[operator]
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

    def _require_epoch_boundary(self, what: str) -> None:
        """Holders, shared weights: at least one complete training epoch, none half done, no update pending."""
        st = self._st()
        assert st.used is not None and st.val_used is not None
        if st.epochs_done < 1 or st.used.any() or st.val_used.any() or st.pending is not None or st.w_trunc:
            raise ValueError(f"party {self.name!r}: refusing to {what} before a complete training epoch or with an "
                             "update pending (weights between steps give a party its plaintext gradient)")

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
            st.weights = decode(own + other, WEIGHT_BITS)  # type: ignore[operator]
            logit_clip = POLY.ring_capacity()  # trained unclipped: the clip at scoring only bounds the ring
        self.part = LocalLinearPart(
            party=self.name, feature_names=list(self.feature_names), scaler=self.scaler,
            weights=st.weights[:-1].copy() if is_bank else st.weights.copy(),
            intercept=float(st.weights[-1]) if is_bank else 0.0, logit_clip=logit_clip)
        self.state = None
        return msg.reply("vlr.finish", meta={"n_weights": int(len(self.part.weights))})

    # --- helpers -------------------------------------------------------------------------------
    def _st(self) -> _TrainState:
        if self.state is None:
            raise ValueError(f"party {self.name!r}: secure LR is not set up (vlr.setup first)")
        return self.state

    def _training(self) -> _TrainState:
        """The state, for a step that moves or uses the weights: refused once the shared weights were opened."""
        st = self._st()
        if st.weights_opened:
            raise ValueError(f"party {self.name!r}: the shared weights were opened to their owners; this secure LR "
                             "instance takes no further steps")
        return st

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


def validation_order(instance: str, n: int) -> np.ndarray:
    """The secret order of the validation rows for one instance (position -> row), the same at every party."""
    key = hashlib.sha256(f"sampan/vlr/val-order|{instance}".encode()).digest()
    return np.argsort(prg_uint64(key, "order", n), kind="stable")


def _take_partition(me: str, what: str, used: np.ndarray, rows: np.ndarray, min_rows: int) -> bool:
    """Mark `rows` used in a pass over `used`; refuse small, unknown, repeated or re-used rows and a tail
    shorter than `min_rows`. Returns True when the batch completes the pass (and starts a new one)."""
    n = len(used)
    if len(rows) < min_rows:
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch of {len(rows)} rows (at least "
                             f"{min_rows}: fewer rows let a party solve for the residual)")
    if rows.min() < 0 or rows.max() >= n:
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch with unknown rows")
    if used[rows].any():
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch that re-uses rows of this pass")
    before = int(np.count_nonzero(used))
    used[rows] = True
    if int(np.count_nonzero(used)) - before != len(rows):
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch with repeated rows")
    if used.all():
        if what == "training":
            used[:] = False
        return True
    if n - int(used.sum()) < min_rows:
        raise BatchRuleError(f"party {me!r}: this batch leaves {n - int(used.sum())} rows of the {what} pass, "
                             f"fewer than {min_rows} (merge the tail into the last batch)")
    return False


def _with_ones(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _l2_mask(n: int, has_intercept: bool) -> np.ndarray:
    mask = np.ones(n)
    if has_intercept:
        mask[-1] = 0.0
    return mask
