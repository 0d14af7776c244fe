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

Memory (issue 15): nobody stores a pad. U is a random-access stream (AES-256 in counter mode under a key
from p's bound dealer seed, `crypto.dealer.row_prg`), so p and the dealer regenerate the rows of each
batch; E streams to Q in sealed chunks of `secure_lr_encode.E_CHUNK_ROWS` rows (`vlr.e_chunk`, in order,
each row once; Q keeps one ring copy), and so does the masked validation Ev (shared weights, after the
validation order exists); each chunk is bound to its instance inside the seal, so a chunk the coordinator
kept from an earlier training of the run is refused by name (`secure_lr_chunks`); a party holds its
standardised features once, as int32 at 2^-FEATURE_BITS, widened to ring elements per batch; the dealer
deals batch by batch. The values computed
are the same as before (same encodings; only the pad's PRG changed, still keyed by p's bound seed).

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

import numpy as np

from sampan.crypto.ring import SIGMOID_POLY
from sampan.errors import PartyError
from sampan.vertical.sealed_inbox import _take as _take
from sampan.vertical.sealed_inbox import receive
from sampan.vertical.secure_lr_reveals import REVEALS, reveals
from sampan.vertical.secure_lr_roles import Roles

# The party's handlers: `sampan.vertical.secure_lr_party.SecureLRParty` (steps in secure_lr_batch, state and
# checks in secure_lr_base). This module keeps the protocol's statement, its public constants and batch rules; the
# receipt text (`secure_lr_reveals`), the roles (`secure_lr_roles`) and the envelope inbox (`sealed_inbox`) live
# beside it and are re-exported here, so their old import path keeps working.
__all__ = ["FEATURE_BITS", "RESIDUAL_BITS", "WEIGHT_BITS", "Roles", "min_batch_rows", "audit_count",
           "BatchRuleError", "REVEALS", "reveals", "weight_triples", "receive"]


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
