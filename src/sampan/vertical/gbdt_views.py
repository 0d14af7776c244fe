"""What vertical GBDT reveals, for the run receipt: `REVEALS` (one paragraph) and `VIEWS` (field by field).

The protocol itself is in `sampan.vertical.gbdt` (the party learner) and `sampan.vertical.gbdt_coordinator`;
this module only states, in the receipt's words, what each role sees — so the text can be read and checked
(tests/attacks/test_neighbouring_vertical.py) apart from the code that produces the views.

What each role learns: the bank, per-bin gradient/hessian sums of partner features at each requested node
(noised by the partner when `hist_noise` is set) and, exactly, the partitions at splits on partner features
and the partners' routing bits; a partner, the row sets of nodes and the thresholds of its own splits, with
(g, h) masked; the coordinator (dealer), the partner's binned records in a secret row order, node positions
and sizes, the per-tree training and validation log-loss, and the model's gain importance per feature.
`VIEWS` lists every field with its protection.

Missing values (issue 13): every feature has a missing bin (NaN), present whether or not the column has
missing values, so its existence says nothing; its per-node sums are one more bin of the same histogram
(noised like the others; one customer still sits in one bin per feature, so the charged sensitivity is
unchanged), and a split names the side its feature's missing values go to — the partner routes them. So the bank learns,
exactly, which rows miss a partner value on the split's side: a split "all values left, missing right" reveals the
exact set of the node's customers missing that value (declared in REVEALS and VIEWS; no DP covers it).
"""

from __future__ import annotations

__all__ = ["REVEALS", "VIEWS"]

REVEALS = (
    "Vertical GBDT: gradients, hessians and labels never leave the bank in clear (partners see them masked "
    "by dealer randomness). The bank learns per-bin gradient and hessian sums of partner features at each "
    "node (noised by the partner when hist_noise is set: the reported epsilon covers these sums only, with the "
    "partner's quantile bin edges held fixed), and, "
    "exactly and outside any DP guarantee, the left/right partition of the node's rows at each split on a "
    "partner feature and each partner's routing bit for every validation and scored row (so the trees and "
    "leaf values); across trees these partitions let the bank recover most training rows' partner bins, so the "
    "epsilon is conditional on them. Every feature has a missing-value bin (present whatever the data): its sums are "
    "part of the same histograms, and each split the bank chooses names the side missing values go to, so the bank "
    "also sees, exactly, which side a row with a missing partner value takes: a split 'all values left, missing "
    "right' (the last value bin) reveals the exact set of the node's customers missing that partner value. Each "
    "partner checks the noise "
    "against its own minimum and charges every "
    "noised histogram to its own ledger before it leaves. A partner learns the row sets of nodes and holds the "
    "thresholds of splits on its own "
    "features. The coordinator (dealer) learns the partner's binned records in a secret row order, every "
    "node's positions in that order, and the training and validation log-loss after each tree. At the end the bank "
    "reports the model's gain importance (each feature's share of the total split gain, partner features under "
    "their names) for the report: computed by the bank from the histograms it decoded (noised when hist_noise is "
    "set: post-processing of the charged releases for partner records) and its own labels, which vertical GBDT "
    "never protected from the coordinator (it sees the per-tree log-loss)."
)

# Every field each role sees, with its protection; the coordinator's fields are what it receives in replies
# ("reply:..."), a party's what it receives in requests, sealed envelopes opened. Protections: "masked" (one-time padded
# by dealer or pairwise
# randomness: uniform whatever the data), "dp:<party>" (output of a Gaussian mechanism charged to <party>'s
# account), "visible" (an exact function of data, declared above), "public" (run parameters). A field
# pattern ending in "*" matches any suffix; "decoded:<p>" is what the bank computes from a partner's
# sealed sums and the dealer's sums. Checked by tests/attacks/test_neighbouring_vertical.py.
VIEWS: tuple[tuple[str, str, str, str], ...] = (
    ("coordinator", "*", "reply:to:*", "sealed: ciphertext it cannot open; its length shows the sizes inside"),
    ("*", "vgb.setup", "train_rows", "visible: training positions in the aligned order (the coordinator chose them)"),
    ("*", "vgb.setup", "val_rows", "visible: validation positions in the aligned order"),
    ("*", "vgb.setup", "dealer_seed", "public: the party's seed from the dealer"),
    ("*", "vgb.setup", "meta:*", "public: run parameters"),
    ("coordinator", "vgb.setup", "reply:beta", "visible: the partner's binned records in a secret row order (dealer)"),
    ("coordinator", "vgb.setup", "reply:meta:*",
     "visible: each party's feature names and bin counts (every feature's last bin is its missing bin)"),
    ("bank", "vgb.start", "*", "visible: training positions, partners' feature names and bin counts, parameters"),
    ("coordinator", "vgb.start", "reply:meta:*", "visible: feature counts per party"),
    ("coordinator", "vgb.step", "reply:dealer:*",
     "visible: each node's positions in a secret row order, sorted (dealer)"),
    ("coordinator", "vgb.step", "reply:dealer_sizes:*", "visible: node sizes (dealer)"),
    ("coordinator", "vgb.step", "reply:meta:*",
     "visible: request kind, partners involved, tree index, and at the end the "
     "number of trees, the training and validation log-loss after each tree and the gain importance per feature"),
    ("bank", "vgb.step", "dealer:*", "masked: the dealer's per-bin mask sums plus the partner's pad"),
    ("bank", "vgb.step", "from:*/s", "masked: the partner's per-bin sums plus its pad"),
    ("bank", "vgb.step", "decoded:*", "dp:{partner}: per-bin gradient/hessian sums of partner features, noised by "
                                      "the partner (exact when hist_noise = 0)"),
    ("bank", "vgb.step", "from:*/sigma", "public: the noise sigma the partner added (the agreed hist_noise)"),
    ("coordinator", "vgb.serve", "reply:meta:privacy", "public: the partner's noise and its own account"),
    ("bank", "vgb.step", "from:*/left:*", "visible: the partition of a node's rows at a split on a partner feature "
                                         "(rows missing that feature on the split's missing side: an 'all values "
                                         "left, missing right' split reveals the exact set of customers missing "
                                         "that value)"),
    ("bank", "vgb.step", "from:*/route", "visible: the partner's direction at its nodes for validation rows"),
    ("bank", "vgb.step", "meta:*", "public: protocol step"),
    ("partner", "vgb.serve", "from:*/v", "masked: the bank's (g, h) of every row plus dealer masks"),
    ("partner", "vgb.serve", "from:*/label", "public: the bank's request counter (protocol step)"),
    ("partner", "vgb.serve", "from:*/nodes", "visible: node numbers of the request"),
    ("partner", "vgb.serve", "from:*/sizes", "visible: node sizes"),
    ("partner", "vgb.serve", "from:*/rows", "visible: the row sets of nodes (and of validation rows to route)"),
    ("partner", "vgb.serve", "from:*/rows:*", "visible: the rows of a node split on the partner's feature"),
    ("partner", "vgb.serve", "from:*/split",
     "visible: the bank's chosen split (node, feature, bin, missing-value direction) on the partner's feature"),
    ("partner", "vgb.serve", "from:*/tree", "visible: tree index"),
    ("partner", "vgb.serve", "from:*/route", "visible: which of the partner's nodes to route"),
    ("partner", "vgb.serve", "from:*/val", "public: validation flag"),
    ("partner", "vgb.serve", "meta:*", "public: protocol step"),
)
