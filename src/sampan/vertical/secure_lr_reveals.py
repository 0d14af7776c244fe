"""Secure vertical LR, its receipt text: what each role learns, in the words the run receipt and report show.

Why apart: the protocol's statement (`sampan.vertical.secure_lr`, module docstring) is the reference; this is
its short form, one text per mode (shared weights, plaintext gradient), which the workflow puts in the run
receipt. Nothing in the protocol's constants or steps depends on it.

What each role learns: exactly what `reveals` says (it is the receipt's ``reveals`` entry for secure LR); this
module computes nothing.
"""

from __future__ import annotations

__all__ = ["REVEALS", "reveals"]


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
