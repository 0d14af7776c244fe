"""Masked histograms: the label holder learns per-bin sums of its private per-row values over a partner's
private bins, the partner learns nothing about the values, and the dealer learns no value at all.

Why not Paillier (SecureBoost's choice): python-paillier manages ~70 encryptions/s at 2048 bits here,
so encrypting every row's gradient each tree is hours per model. Instead, with the coordinator as a
non-colluding dealer and a secret row permutation sigma shared by the bank and the partner:

1. once: the partner gives the dealer its bin indices in sigma order (beta); the dealer cannot tell
   which customer sits at which position (it does not know sigma);
2. per node: the bank sends the partner v_i + A_i for the node's rows i (A: dealer randomness the bank
   derives from its dealer seed, assigned by the rank of sigma(i) among the node's positions; uniform
   in Z_2^64, so the partner sees noise) and tells the dealer the node's positions sigma(R), sorted;
3. the partner returns per-bin sums of what it received plus a pad rho (shared with the dealer only);
   the dealer returns per-bin sums of A over the same positions plus rho;
4. the bank subtracts: (sum(v + A) + rho) - (sum(A) + rho) = sum(v) per bin; each of the two messages
   on its own is uniformly random to it.

What each role learns: the bank learns the per-bin sums (as in SecureBoost) and the partner learns which rows
are in the node (as in SecureBoost); the dealer learns bin *counts* per node in permuted order. A
dealer colluding with the bank (who knows sigma) would learn the partner's bins — hence non-collusion.
Optional DP: the partner adds Gaussian noise to its sums *inside* the masked sum (`partner_sums` /
`partner_level_sums`, `noise=`), so the bank only ever decodes noised sums: this is what protects the
partner's bins from the bank. Noise added by the bank after decoding would protect nothing from the
bank. `histogram_privacy` is the one account of such noise (vertical GBDT and federated WOE both use it).

The dealer, if it misbehaves (threat analysis; issue 11, finding 22). The coordinator deals the bank's
mask seed, the partner's pad seed and returns the per-bin mask sums; it relays only sealed envelopes.

* What it sees even when honest: beta, i.e. every partner row's bin indices (all its features) in the
  secret order sigma — the partner's *binned table* with the customer identities removed (the joint
  distribution of its binned features, exactly); per node, the node's positions in sigma order (node
  sizes, and so which of those unlinked binned records fall on each side of every split, the bank's
  splits included).
* What it cannot learn alone: which customer a binned record belongs to (sigma comes from the bank-
  partner channel key and a fresh nonce the partner draws at each setup and seals to the bank, so
  repeated setups never share an order; each party gives the dealer its binned records for one training
  row set per run, `sampan.vertical.rows.RunRows.bind_train`), the bank's values v (it knows the masks A, but v + A
  travels sealed to the
  partner), and the decoded sums (the partner's reply travels sealed to the bank). This rests on the
  channels' keys being authentic: a coordinator that substitutes the run keys (finding 5) reads v + A and
  subtracts A — the labels — and learns sigma; parties therefore verify signed run keys before any
  channel is derived (`sampan.crypto.identity`), and a substituted key aborts the run.
* What it can corrupt: the per-bin mask sums it returns. The bank decodes sum(v) + noise + Delta for
  any Delta the dealer chooses and cannot tell: a dishonest dealer can steer the histograms, hence the
  splits (GBDT) or the WOE bins. The bank checks what it can (`check_feature_totals`: each partner
  feature's bins must add up to the node's own total, which the bank knows — exactly without noise,
  within 8 standard deviations of the noise the *partner* reports inside its sealed reply, checked
  against the level the job agreed: the coordinator cannot widen the tolerance), so garbage or a shifted
  total aborts the run naming the dealer — the error names feature, partner and node only, since it
  travels through the coordinator; the totals stay in the bank's local log; a corruption that moves mass between bins of
  one feature keeps every total and passes
  undetected. Corruption gains it no party input by itself — the decoded
  histograms stay at the bank, and the dealer already sees every node's positions — but the model is
  only as correct as the dealer is honest. An information-theoretic MAC on the sums (an extra masked
  vector r * v under a key r the dealer never sees) would detect it; until then integrity rests on the
  dealer following the protocol, as the run receipt's threat model states.
* With a colluding party: dealer + bank learn every partner bin of every customer (beta and sigma);
  dealer + partner learn v (the bank's gradients or labels): the non-collusion assumption is essential.

Sums are exact in Z_2^64 (values at 2^-32 fixed point; per-bin sums via float64 bincounts over 32-bit
halves per row block, exact at any size: `sampan.models.gbdt_hist.ring_node_histograms`). Every party keeps
its bins as a uint8 matrix (n x features bytes) and sums block by block, never an n x features int64 index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.crypto.channel import prg_uint64
from sampan.models.gbdt_hist import ring_node_histograms
from sampan.privacy.mechanisms import zcdp_epsilon

log = logging.getLogger(__name__)

__all__ = ["VALUE_BITS", "ring_bincount", "encode_values", "decode_sums", "secret_permutation",
           "node_masks", "partner_sums", "dealer_sums", "tree_masks", "partner_level_sums",
           "dealer_level_sums", "histogram_privacy", "histogram_sigma", "views_receipt", "check_feature_totals",
           "reported_sigma", "HistogramAccount", "sigma_label", "sealed_nonce"]

VALUE_BITS = 32  # = log2(models.gbdt.GRID): ring sums and float sums of grid gradients agree exactly


def encode_values(v: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(v, dtype=np.float64) * float(1 << VALUE_BITS)).astype(np.int64).view(np.uint64)


def decode_sums(s: np.ndarray) -> np.ndarray:
    return np.asarray(s, dtype=np.uint64).view(np.int64).astype(np.float64) / float(1 << VALUE_BITS)


def ring_bincount(index: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """Per-index sums of uint64 values modulo 2^64 (exact: two float64 bincounts of 32-bit halves)."""
    halves = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint32)  # little-endian: lo, hi, lo, hi, ...
    lo = np.bincount(index, weights=halves[0::2], minlength=length)
    hi = np.bincount(index, weights=halves[1::2], minlength=length)
    return lo.astype(np.uint64) + (hi.astype(np.uint64) << np.uint64(32))


def secret_permutation(shared_random: np.ndarray) -> np.ndarray:
    """A permutation of range(n) from n shared random ring elements (sigma[i] = position of row i).

    The argsort of i.i.d. uniform keys is a uniform permutation (ties have probability ~n^2 / 2^65).
    """
    order = np.argsort(shared_random, kind="stable")
    sigma = np.empty_like(order)
    sigma[order] = np.arange(len(order))
    return sigma


def sigma_label(protocol: str, bank: str, partner: str, nonce: bytes) -> str:
    """The PRG label of one setup's secret row order: fresh per setup through the partner's nonce.

    The partner draws the nonce at setup and seals it to the bank; the coordinator never sees it, so two
    setups never share an order (a fixed label gave the same order to every setup of the same length, and
    swapping two training rows between setups showed the coordinator which binned records they were).
    """
    return f"{protocol}-sigma/{bank}/{partner}/{nonce.hex()}"


def sealed_nonce(inbox: dict[tuple[str, str], np.ndarray], partner: str, bank: str, step: str) -> bytes:
    """The bank takes the partner's setup nonce from its sealed envelope (never from the coordinator)."""
    value = inbox.pop((partner, "sigma_nonce"), None)
    if value is None or np.asarray(value).size != 16:
        raise ValueError(f"party {bank!r}: {step}: no sealed row-order nonce from partner {partner!r}")
    return np.ascontiguousarray(value, dtype=np.uint8).tobytes()


def node_masks(seed: bytes, label: str, positions: np.ndarray, n_values: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Dealer randomness for one node: `n_values` mask vectors, one entry per node row.

    The dealer is told the node's permuted positions *sorted* (their order in the bank's row order would
    leak how rows are ordered); the k-th smallest position gets the k-th draw. Returns (sorted positions
    for the dealer, masks aligned with the bank's rows).
    """
    ordered = np.sort(positions)
    draws = prg_uint64(seed, label, n_values * len(ordered)).reshape(n_values, len(ordered))
    ranks = np.searchsorted(ordered, positions)
    return ordered, [draws[k][ranks] for k in range(n_values)]


def partner_sums(bins: np.ndarray, n_bins: list[int], masked: list[np.ndarray], pad: np.ndarray,
                 noise: list[np.ndarray] | None = None) -> np.ndarray:
    """Partner: per-bin sums (over all its features) of each masked vector, plus its pad (and DP noise).

    `bins` is the partner's binned matrix (uint8, rows x features): sums go block by block (`ring_node_histograms`)."""
    total = int(sum(n_bins))
    out = ring_node_histograms(bins, n_bins, [np.arange(len(bins))], np.stack(masked))[0]
    if noise is not None:
        out = out + np.stack(noise)
    return out + pad.reshape(len(masked), total)


def dealer_sums(beta: np.ndarray, n_bins: list[int], seed: bytes, label: str, sorted_positions: np.ndarray,
                n_values: int, pad: np.ndarray) -> np.ndarray:
    """Dealer: per-bin sums of its draws over the node's positions (partner bins in secret order) + pad."""
    total = int(sum(n_bins))
    draws = prg_uint64(seed, label, n_values * len(sorted_positions)).reshape(n_values, len(sorted_positions))
    full = np.zeros((n_values, len(beta)), dtype=np.uint64)
    full[:, sorted_positions] = draws
    out = ring_node_histograms(beta, n_bins, [np.asarray(sorted_positions, dtype=np.int64)], full)[0]
    return out + pad.reshape(n_values, total)


def tree_masks(seed: bytes, label: str, sigma: np.ndarray, n_values: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Dealer randomness for one tree: draws in position space (for the dealer) and read at each row's
    secret position (for the bank). Each row's (g, h) is masked once per tree, so the partner sees one
    uniformly random value per row and tree, whatever nodes the row passes through."""
    draws = prg_uint64(seed, label, n_values * len(sigma)).reshape(n_values, len(sigma))
    return draws, draws[:, sigma]


def partner_level_sums(bins: np.ndarray, n_bins: list[int], masked: np.ndarray, nodes: list[np.ndarray],
                       pads: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """Partner: per-bin sums of the tree's masked values over each node's rows, from its binned (uint8) matrix
    block by block (`ring_node_histograms`). Returns (nodes, values, total) plus the pads (and DP noise, in the
    ring)."""
    out = ring_node_histograms(bins, n_bins, nodes, masked)
    if noise is not None:
        out = out + noise
    return out + pads


def dealer_level_sums(beta: np.ndarray, n_bins: list[int], draws: np.ndarray, positions: list[np.ndarray],
                      pads: np.ndarray) -> np.ndarray:
    """Dealer: per-bin sums of its draws over each node's positions (partner bins in secret order, uint8) + pads."""
    return ring_node_histograms(beta, n_bins, positions, draws) + pads


def histogram_privacy(releases: int, sensitivity2: float, sigma: float, delta: float = 1e-5) -> dict[str, Any]:
    """Account of a partner's noised histogram releases to the bank (Gaussian mechanism, zCDP composition).

    `sensitivity2` is the squared L2 sensitivity of one release (all the partner's features, every value
    vector) under the protocol's neighbouring relation; each release is rho = sens^2 / (2 sigma^2)-zCDP,
    `releases` of them compose by addition, and rho converts to (epsilon, delta)-DP
    (`sampan.privacy.mechanisms.zcdp_epsilon`). The noise multiplier sigma / sens is reported so any
    accountant (dp-accounting's RDP or PLD) can recheck the number.

    Unit, stated in the account: one customer's *binned* partner record, the partner's bin edges held
    fixed. The edges are quantiles of the partner's own training columns, computed and kept at the
    partner (never sent), but one customer can move an edge and with it other customers between adjacent
    bins: that influence is not bounded by `sensitivity2` (measured on an 800-row table with 20 bins: one
    added customer moved the WOE release by up to 2.9x the charged sensitivity). The epsilon is therefore a
    guarantee about binned records under fixed edges, not about raw values; edges from a DP quantile
    mechanism (or public edges) would close the gap and are not implemented.
    """
    if releases < 0 or sensitivity2 <= 0 or sigma <= 0:
        raise ValueError(f"histogram privacy needs releases >= 0, sensitivity^2 > 0 and sigma > 0, got "
                         f"{releases}, {sensitivity2}, {sigma}")
    rho = releases * sensitivity2 / (2.0 * sigma ** 2)
    return {"releases": float(releases), "sigma": float(sigma), "sensitivity": math.sqrt(sensitivity2),
            "noise_multiplier": sigma / math.sqrt(sensitivity2), "rho": rho,
            "epsilon": zcdp_epsilon(rho, delta), "delta": delta,
            "assumes": "the partner's bin edges held fixed: the unit is one customer's binned record (edges are "
                       "quantiles of the partner's own training columns, kept at the partner; one customer moving an "
                       "edge, and so other customers between bins, is not covered)"}


def histogram_sigma(sensitivity2: float, epsilon: float, delta: float, releases: int = 1) -> float:
    """Smallest sigma (to 0.1%) whose `histogram_privacy` account stays within (epsilon, delta)."""
    if not (epsilon > 0 and 0 < delta < 1 and sensitivity2 > 0 and releases >= 1):
        raise ValueError(f"cannot calibrate histogram noise to epsilon={epsilon}, delta={delta}")
    lo, hi = 1e-12, 1.0
    while zcdp_epsilon(hi, delta) < epsilon:  # rho at which the target epsilon is reached
        hi *= 2.0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if zcdp_epsilon(mid, delta) <= epsilon else (lo, mid)
        if hi / lo < 1.0005:
            break
    return math.sqrt(releases * sensitivity2 / (2.0 * lo))


def views_receipt(views: tuple[tuple[str, str, str, str], ...]) -> list[dict[str, str]]:
    """A protocol's VIEWS table (role, message, field, protection) as receipt rows."""
    return [{"role": r, "message": k, "field": f, "protection": p} for r, k, f, p in views]


def check_feature_totals(sums: np.ndarray, n_bins: list[int], expected: np.ndarray, sigma: float, *, bank: str,
                         partner: str, node: Any = 0) -> None:
    """Bank: every partner feature's bins must add up to the node total the bank knows itself.

    `sums` (values, bins over all the partner's features), decoded; `expected` (values,) the bank's own
    totals over the same rows. With noise of standard deviation `sigma` per bin the check allows 8 standard
    deviations of the feature's summed noise; `sigma` must be the noise the partner itself reports inside
    its sealed reply (`reported_sigma`), never a figure from the coordinator. Catches a dealer (or
    partner) returning garbage or shifted sums; a corruption that keeps each feature's total (mass moved
    between bins) passes.

    The error travels to the coordinator (the suspect) as this party's error reply, so it names only the
    feature, partner and node: the totals themselves (the bank's exact label or gradient sums) and the
    decoded sums stay in the bank's local log.
    """
    offsets = np.concatenate([[0], np.cumsum(n_bins)]).astype(np.int64)
    for j in range(len(n_bins)):
        got = sums[:, offsets[j]:offsets[j + 1]].sum(axis=1)
        slack = 1e-6 * (1.0 + np.abs(expected)) + 8.0 * sigma * math.sqrt(n_bins[j])
        if np.any(np.abs(got - expected) > slack):
            log.error("party %s: feature %d of partner %s failed the totals check at node %s: decoded %s, own totals "
                      "%s, slack %s (local log only)", bank, j, partner, node, got.tolist(), expected.tolist(),
                      np.asarray(slack).tolist())
            raise ValueError(f"party {bank!r}: feature {j} of partner {partner!r} failed the totals check at node "
                             f"{node}: its histogram does not add up to the node total; the dealer's sums "
                             "(coordinator) or the partner's reply is wrong; stopping rather than learning from "
                             "corrupted sums (values in this party's local log)")


def reported_sigma(reply: dict[str, np.ndarray], expected: float, *, bank: str, partner: str) -> float:
    """Bank: the noise sigma a partner says (inside its sealed reply) it added, checked against the agreed level.

    The totals check's tolerance comes from this figure only, so a coordinator cannot widen it by telling
    the bank "large noise" while telling the partner none; a partner reporting another sigma than the job
    agreed (`expected`, 0 for exact sums) is refused.
    """
    if "sigma" not in reply:
        raise ValueError(f"party {bank!r}: partner {partner!r}'s sealed reply states no noise level; refusing it")
    got = float(np.asarray(reply["sigma"], dtype=np.float64).reshape(-1)[0])
    if not math.isfinite(got) or abs(got - expected) > 1e-9 * max(1.0, abs(expected)):
        raise ValueError(f"party {bank!r}: partner {partner!r} reports histogram noise sigma={got:.6g} but the job "
                         f"agreed sigma={expected:.6g}; the coordinator told the two parties different noise levels, "
                         "refusing")
    return got


@dataclass
class HistogramAccount:
    """One party's running account of its noised histogram releases in a run (zCDP: rho adds up).

    Every release goes in, so a repeated protocol instance raises the account instead of overwriting it.
    """

    delta: float = 1e-5
    releases: int = 0
    rho: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)

    def add(self, count: int, sensitivity2: float, sigma: float, delta: float) -> dict[str, Any]:
        one = histogram_privacy(1, sensitivity2, sigma, delta)
        self.delta, self.releases, self.rho = delta, self.releases + int(count), self.rho + int(count) * one["rho"]
        self.last = one
        return self.report()

    def report(self) -> dict[str, Any]:
        return {**self.last, "releases": float(self.releases), "rho": self.rho,
                "epsilon": zcdp_epsilon(self.rho, self.delta), "delta": self.delta}
