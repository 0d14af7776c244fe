"""What federated WOE/IV binning reveals to each role (REVEALS, and field by field VIEWS) and the sensitivities
its DP accounts rest on.

Why apart from `sampan.vertical.woe`: the receipt tables and the noise plan read these without the party's
handlers (`sampan.vertical.noise_plan`, `sampan.vertical.workflow`); `sampan.vertical.woe` re-exports them.
"""

from __future__ import annotations

__all__ = ["REVEALS", "VIEWS", "partner_sensitivity2", "label_sensitivity2"]

REVEALS = (
    "Federated WOE/IV: the bank learns event and row counts per fine bin of every feature (partner features "
    "through masked histograms: the partner sees no label); with DP on, each partner adds Gaussian noise to "
    "its counts inside the masked sums, so the bank decodes only noised partner counts (epsilon per partner), "
    "and the bank noises the event counts before deriving the partners' tables (epsilon for the labels); these "
    "epsilons treat the partner's quantile bin edges as fixed (one customer can move an edge: not covered). Each "
    "partner learns the WOE table of its own features. The coordinator (dealer) learns every partner's "
    "binned records in a secret row order and how many features of each partner were selected (of the bank's own "
    "too, without DP only). Every party checks the noise against its own minimum and charges each release to its "
    "own ledger before it leaves; its account adds up over every WOE run of the run."
)

# Every field each role sees, with its protection (vocabulary as in `sampan.vertical.gbdt.VIEWS`);
# "decoded:<p>" is what the bank computes from a partner's sealed sums and the dealer's sums.
VIEWS: tuple[tuple[str, str, str, str], ...] = (
    ("coordinator", "*", "reply:to:*", "sealed: ciphertext it cannot open; its length shows the sizes inside"),
    ("*", "woe.setup", "train_rows", "visible: training positions in the aligned order (the coordinator chose them)"),
    ("*", "woe.setup", "dealer_seed", "public: the party's seed from the dealer"),
    ("*", "woe.setup", "meta:*", "public: run parameters"),
    ("coordinator", "woe.setup", "reply:beta", "visible: the partner's binned records in a secret row order (dealer)"),
    ("coordinator", "woe.setup", "reply:meta:*", "visible: each party's feature names and fine-bin counts"),
    ("*", "woe.mask", "dealer_seed", "public: the bank's seed from the dealer"),
    ("bank", "woe.mask", "from:*/sigma_nonce", "masked: the partner's fresh random nonce for this setup's row order"),
    ("*", "woe.mask", "meta:*", "public: run parameters"),
    ("partner", "woe.sum", "from:*/v", "masked: the bank's (label, 1) per row plus dealer masks"),
    ("*", "woe.sum", "meta:*", "public: run parameters"),
    ("coordinator", "woe.sum", "reply:meta:privacy", "public: the partner's noise and its account"),
    ("bank", "woe.finish", "from:*/s", "masked: the partner's per-bin sums plus its pad"),
    ("bank", "woe.finish", "from:*/sigma", "public: the noise sigma the partner added (the agreed level)"),
    ("bank", "woe.finish", "dealer:*", "masked: the dealer's per-bin mask sums plus the partner's pad"),
    ("bank", "woe.finish", "decoded:*", "dp:{partner}: per-bin event and row counts of partner features, noised by "
                                        "the partner (exact without DP)"),
    ("*", "woe.finish", "meta:*", "visible: partners' feature names and bin counts; run parameters"),
    ("coordinator", "woe.finish", "reply:meta:selected", "visible: how many features of each partner passed the IV "
                                                         "threshold (with DP: from the noised counts; the bank's own "
                                                         "only without DP)"),
    ("coordinator", "woe.finish", "reply:meta:*", "public: the requested epsilon and each party's noise account"),
    ("partner", "woe.apply", "from:*/woe", "dp:{bank}: WOE per coarse bin of the partner's features (label noise)"),
    ("partner", "woe.apply", "from:*/mapping", "dp:{bank}: fine -> coarse bin mapping (from the noised counts)"),
    ("partner", "woe.apply", "from:*/index", "dp:{bank}: which of its features were selected (from the noised counts)"),
    ("partner", "woe.apply", "from:*/n_coarse", "dp:{bank}: coarse bins per selected feature"),
    ("*", "woe.apply", "meta:*", "public: protocol step"),
    ("coordinator", "woe.apply", "reply:meta:*", "visible: how many WOE tables each partner keeps"),
)


def partner_sensitivity2(n_features: int) -> float:
    """A partner's (event, row) counts: one customer's partner record replaced moves 2 bins per feature."""
    return 4.0 * n_features


def label_sensitivity2(n_partner_features: int) -> float:
    """The bank's event counts of partner bins: one customer's label moves one count per partner feature."""
    return float(n_partner_features)
